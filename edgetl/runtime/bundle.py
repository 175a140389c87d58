"""Deployment bundles: one folder (or .zip) that proves on the device that it computes
what was trained. Torch-free.

```
BUNDLE/
  bundle.json      manifest: schema, edgetl version, targets, SHA-256 of every other file
  edgetl.json      the model card (labels, preprocessing, streaming settings)
  labels.txt
  README.md        install line, predict line, figures measured when it was packaged
  models/          one model per target (+ build-engine.sh for TensorRT)
  reference/       raw input files from the run's data, and expected.json: each
                   target's answer for each of them when packaged (a classifier's
                   top-1 label and scores, a detector's objects); a detector's
                   truths.json: each file's true objects
```

This module reads the format (manifest, checksums); which target runs here is
runtime/targets.py; `open_runner` (runtime/backends.py) opens a bundle's model, and `verify` (runtime/verify.py)
runs the reference files from their raw bytes through the runtime's own preprocessing
and a target's model, and compares with what the model answered when it was packaged.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from edgetl.core.card import CARD_FILENAME, ModelCard
from edgetl.core.errors import ArtifactError

MANIFEST = "bundle.json"
TRUTHS = "truths.json"  # in reference/: a detector's true objects of each reference file
SCHEMA = 1
# Fastest first: what `auto` picks among the targets this machine can run.
# How far a score may move on another machine, by the precision the model computes in.
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}
_REPACKAGE = "copy the bundle again from where it was packaged, or package the run again (edgetl package)"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_bundle(path: Path) -> bool:
    """A bundle folder, or a .zip that holds one (read without extracting it)."""
    if path.is_dir():
        return (path / MANIFEST).is_file()
    if path.suffix.lower() == ".zip" and path.is_file():
        try:
            with zipfile.ZipFile(path) as z:
                return MANIFEST in z.namelist()
        except (zipfile.BadZipFile, OSError):
            return False
    return False


def _unzipped(path: Path) -> Path:
    """A zipped bundle, extracted once per process into a temporary folder."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if any(n.startswith("/") or ".." in Path(n).parts for n in names):
                raise ArtifactError(f"{path} holds paths outside the bundle", hint=_REPACKAGE)
            folder = Path(tempfile.mkdtemp(prefix="edgetl-bundle-"))
            atexit.register(shutil.rmtree, folder, True)
            z.extractall(folder)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtifactError(f"cannot read the bundle {path}: {exc}", hint=_REPACKAGE) from None
    return folder


@dataclasses.dataclass
class TargetEntry:
    """One target's model in a bundle, as the manifest lists it."""

    model: str  # its path in the bundle
    precision: str  # fp32 | fp16 | int8
    accuracy: float | None = None  # as measured when it was made
    p50_ms_batch1: float | None = None  # on the packaging machine; None where it only emulates the target
    build: str | None = None  # tensorrt: the command that builds the engine on the device
    engine: str | None = None  # tensorrt: an engine built beforehand, if any

    def files(self) -> list[str]:
        """Its files in the bundle (an IR's .bin with its .xml)."""
        files = [self.model] + ([self.engine] if self.engine else [])
        return [*files, *(str(Path(f).with_suffix(".bin")) for f in files if f.endswith(".xml"))]


@dataclasses.dataclass
class Manifest:
    """bundle.json: written by `edgetl package`, read here; one definition of both."""

    edgetl: str  # the version that packaged it
    run: str
    labels: list[str]
    modality: str
    targets: dict[str, TargetEntry]
    references: int
    files: dict[str, str]  # path in the bundle -> SHA-256
    schema: int = SCHEMA
    kind: str = "edgetl bundle"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"

    @classmethod
    def read(cls, path: Path, where: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            schema = data.get("schema")
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise ArtifactError(f"the manifest of {where} cannot be read ({exc})", hint=_REPACKAGE) from None
        if not isinstance(schema, int) or schema > SCHEMA:
            raise ArtifactError(f"{where} is a bundle of schema {schema}, written by edgetl "
                                f"{data.get('edgetl', '(newer)')}; this edgetl reads up to schema {SCHEMA}",
                                hint="upgrade edgetl on this device (pip install -U edgetl)")
        try:
            entry_fields = {f.name for f in dataclasses.fields(TargetEntry)}
            targets = {t: TargetEntry(**{k: v for k, v in e.items() if k in entry_fields})
                       for t, e in data["targets"].items()}
            fields = {f.name for f in dataclasses.fields(cls)}
            return cls(**{**{k: v for k, v in data.items() if k in fields}, "targets": targets})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"the manifest of {where} lacks {exc}", hint=_REPACKAGE) from None


@dataclasses.dataclass
class Bundle:
    path: Path  # as given (folder or .zip)
    root: Path  # the folder its files are in
    manifest: Manifest

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"{path} does not exist", hint="check the path of the bundle (edgetl package --out)")
        if path.is_dir() and not (path / MANIFEST).is_file():
            what = "a run directory" if (path / CARD_FILENAME).is_file() and (path / "model.pt").is_file() else \
                "not a bundle (it has no manifest)"
            raise ArtifactError(f"{path} is {what}", hint=f"make a bundle with `edgetl package {path} --out BUNDLE`, "
                                "or check a run with `edgetl evaluate RUN --data DIR`" if what.startswith("a run")
                                else "pass the folder `edgetl package --out` wrote, or its .zip")
        root = _unzipped(path) if path.is_file() else path
        return cls(path, root, Manifest.read(root / MANIFEST, path))

    @property
    def card(self) -> ModelCard:
        return ModelCard.load(self.root)

    @property
    def targets(self) -> dict[str, TargetEntry]:
        return self.manifest.targets

    def check_checksums(self, files: list[str] | None = None) -> None:
        """Every file listed (or those of `files`) is present and unchanged, and nothing
        is listed that the manifest does not know; one error names every file that differs."""
        listed = self.manifest.files
        wanted = listed if files is None else {f: listed[f] for f in files if f in listed}
        unknown = [f for f in (files or []) if f not in listed]
        missing = [f for f in wanted if not (self.root / f).is_file()]
        changed = [f for f in wanted if f not in missing and sha256(self.root / f) != wanted[f]]
        problems = [f"{f} (not listed)" for f in unknown] + [f"{f} (missing)" for f in missing] + \
                   [f"{f} (checksum mismatch)" for f in changed]
        if problems:
            raise ArtifactError(f"the bundle {self.path} was changed or damaged: {', '.join(problems)}",
                                hint=_REPACKAGE)

    def model_files(self, target: str) -> list[str]:
        return self.targets[target].files()

    def expected(self, target: str) -> dict[str, Any]:
        """A target's packaged answers (labels, precision, answers) from reference/expected.json."""
        try:
            expected = json.loads((self.root / "reference" / "expected.json").read_text())[target]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"the bundle {self.path} holds no packaged answers of {target} ({exc})",
                                hint=_REPACKAGE) from None
        if not (isinstance(expected, dict) and isinstance(expected.get("answers"), list)
                and isinstance(expected.get("labels"), list)):
            raise ArtifactError(f"the packaged answers of {target} in {self.path} are damaged", hint=_REPACKAGE)
        return expected


__all__ = ["MANIFEST", "SCHEMA", "TRUTHS", "TOLERANCE", "Bundle", "Manifest", "TargetEntry", "is_bundle",
           "sha256"]
