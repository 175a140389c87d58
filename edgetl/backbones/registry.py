"""What the backbone registry holds: a built `Backbone`, the `BackboneInfo` a listing
shows, the `Family` that builds a set of them, the table families register into, and
where default weights are found without a network. The family modules (vision.py,
speech.py) build on this module alone; `edgetl.backbones` looks backbones up by name."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

WEIGHTS_HELP = "--weights default|none|PATH"


@dataclasses.dataclass
class Backbone:
    name: str
    features: torch.nn.Module  # noqa: F821  (N,3,H,W) -> (N, feature_dim)
    feature_dim: int
    stages: list  # list[torch.nn.Module], input -> output, disjoint, covering all parameters
    preprocessing: Preprocessing  # noqa: F821  (edgetl.modality: the input it was trained with)
    weights: str  # what was loaded: "default" source, "none" or a path
    fixed_input_size: bool = False  # e.g. ViT: --input-size cannot change it
    # audio: the streaming detector's settings this model is best run with (the card's
    # `streaming` section starts from them), e.g. a hop that lets overlapping windows share work
    streaming: dict = dataclasses.field(default_factory=dict)
    # audio: the front-end's floor and frame geometry, and a module that embeds windows of
    # its frames (the card's `parts`): what lets a stream compute each frame and window once
    parts: dict = dataclasses.field(default_factory=dict)

    @property
    def modality(self) -> str:
        """What the backbone takes, as its preprocessing says."""
        return self.preprocessing.kind


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    name: str
    modality: str
    family: str
    description: str
    params: int | None
    feature_dim: int | None
    input_size: int | None
    weights: str | None  # where --weights default comes from: torch-hub:FILE, hf:REPO or file:PATH
    offline_weights: bool = False  # whether they are on this machine now (see weights_on_disk)


@dataclasses.dataclass(frozen=True)
class Family:
    """A set of backbones sharing one builder (e.g. every torchvision classifier)."""

    name: str
    modality: str
    names: Callable[[], list[str]]  # the listed names, as users type them
    build: Callable[[str, str], Backbone]  # (name, weights) -> Backbone
    info: Callable[[str], BackboneInfo]
    accepts: Callable[[str], bool]  # whether this family builds `name`


FAMILIES: list[Family] = []


def register_family(family: Family) -> Family:
    FAMILIES.append(family)
    return family


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub"


def weights_on_disk(ref: str | None) -> bool:
    """Whether the default weights named by `ref` are on this machine (no network)."""
    if not ref:
        return False
    kind, _, where = ref.partition(":")
    if kind == "torch-hub":
        return (torch_hub_dir() / "checkpoints" / where).is_file()
    if kind == "file":
        return Path(where).is_file()
    if kind == "hf":
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False
        return any(isinstance(try_to_load_from_cache(where, f), str)
                   for f in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"))
    return False


def offline() -> bool:
    """True when edgetl must not try to download anything (tests, air-gapped sites)."""
    return any(os.environ.get(v, "") not in ("", "0") for v in ("EDGETL_OFFLINE", "HF_HUB_OFFLINE"))
