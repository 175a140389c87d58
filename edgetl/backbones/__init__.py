"""Backbone registry.

Every entry builds a `Backbone`: a feature extractor (images -> N×D features), its
feature size D, its ordered stages (input to output, for unfreezing), and the
preprocessing its weights were trained with. A classification head for the user's
classes goes on top (edgetl.finetune.model). One contract test covers every family.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from edgetl.errors import BackboneError, ConfigError, WeightsUnavailable

WEIGHTS_HELP = "--weights default|none|PATH"


@dataclasses.dataclass
class Backbone:
    name: str
    features: "torch.nn.Module"  # noqa: F821  (N,3,H,W) -> (N, feature_dim)
    feature_dim: int
    stages: list  # list[torch.nn.Module], input -> output, disjoint, covering all parameters
    preprocessing: "ImagePreprocessing"  # noqa: F821
    weights: str  # what was loaded: "default" source, "none" or a path
    modality: str = "image"
    fixed_input_size: bool = False  # e.g. ViT: --input-size cannot change it


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    name: str
    modality: str
    family: str
    description: str
    params: int | None
    feature_dim: int | None
    input_size: int | None
    offline_weights: bool


@dataclasses.dataclass(frozen=True)
class Family:
    """A set of backbones sharing one builder (e.g. every torchvision classifier)."""

    name: str
    modality: str
    names: Callable[[], list[str]]  # the listed names, as users type them
    build: Callable[[str, str], Backbone]  # (name, weights) -> Backbone
    info: Callable[[str], BackboneInfo]
    accepts: Callable[[str], bool]  # whether this family builds `name`


_FAMILIES: list[Family] = []


def register_family(family: Family) -> Family:
    _FAMILIES.append(family)
    return family


def _families() -> list[Family]:
    if not _FAMILIES:
        from edgetl.backbones import vision  # noqa: F401  (registers on import)
    return _FAMILIES


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
    if weights not in ("default", "none"):
        if not Path(weights).is_file():
            raise WeightsUnavailable(f"weights file {weights} does not exist", hint=WEIGHTS_HELP)
    return family.build(name, weights)


def list_backbones(modality: str | None = None) -> list[BackboneInfo]:
    if modality not in (None, "image", "audio"):
        raise ConfigError(f"unknown modality {modality!r}", hint="use image or audio")
    return [family.info(n) for family in _families() if modality in (None, family.modality) for n in family.names()]


def offline() -> bool:
    """True when edgetl must not try to download anything (tests, air-gapped sites)."""
    return any(os.environ.get(v, "") not in ("", "0") for v in ("EDGETL_OFFLINE", "HF_HUB_OFFLINE"))


__all__ = ["Backbone", "BackboneInfo", "Family", "build_backbone", "find_family", "list_backbones",
           "register_family", "offline"]
