"""Ordered stages of a feature extractor, and weights-file loading shared by families."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from edgetl.core.errors import WeightsUnavailable


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclasses.dataclass
class Stage:
    """A group of modules unfrozen together. `extra_params` holds parameters that sit
    directly on a parent module (ViT's class token, position embedding)."""

    name: str
    modules: list[nn.Module]
    extra_params: list[nn.Parameter] = dataclasses.field(default_factory=list)

    def parameters(self):
        for m in self.modules:
            yield from m.parameters()
        yield from self.extra_params

    def train(self, mode: bool = True) -> None:
        for m in self.modules:
            m.train(mode)

    def requires_grad_(self, flag: bool) -> None:
        for p in self.parameters():
            p.requires_grad_(flag)


def split_stages(model: nn.Module, expand_share: float = 0.5, merge_share: float = 0.005) -> list[Stage]:
    """Split a feature extractor into ordered stages, input to output.

    Start from the top-level children; expand any container that holds more than
    `expand_share` of all parameters and has at least three parameterised children
    (a `features` Sequential) or one dominant child (a ViT encoder), then fold stages smaller than
    `merge_share` (a stem BatchNorm, a final LayerNorm) into their neighbour.
    """
    total = max(_count(model), 1)
    names = {id(m): n for n, m in model.named_modules()}
    stages = [c for c in model.children() if _count(c) > 0]
    expanded = True
    while expanded:
        expanded = False
        for i, s in enumerate(stages):
            kids = [c for c in s.children() if _count(c) > 0]
            dominant = any(_count(k) > expand_share * total for k in kids)
            if _count(s) > expand_share * total and (len(kids) >= 3 or dominant):
                stages[i:i + 1] = kids
                expanded = True
                break
    groups = [[s] for s in stages]
    i = 0
    while len(groups) > 1 and i < len(groups):
        if sum(_count(m) for m in groups[i]) < merge_share * total:
            if i + 1 < len(groups):
                groups[i + 1] = groups[i] + groups[i + 1]
            else:
                groups[i - 1] = groups[i - 1] + groups[i]
            del groups[i]
        else:
            i += 1
    result = [Stage("+".join(names[id(m)] for m in g), g) for g in groups]
    covered = {id(p) for s in result for p in s.parameters()}
    leftovers = [p for p in model.parameters() if id(p) not in covered]
    if result:
        result[0].extra_params.extend(leftovers)
    return result


def hub_cache_file(url: str) -> Path:
    """Where torch.hub keeps a checkpoint downloaded from `url` (TORCH_HOME)."""
    from urllib.parse import urlparse

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def hub_state_dict(name: str, url: str, download) -> dict[str, torch.Tensor]:
    """Pretrained weights through torch.hub's checkpoint cache: the cached file when it is
    there (loaded safely), else `download()`, which only runs when edgetl is not offline."""
    from edgetl.backbones.registry import offline

    file = hub_cache_file(url)
    hint = f"copy {url} to {file}, or pass --weights PATH (a state dict) or --weights none"
    if file.is_file():
        return read_state_dict(file)
    if offline():
        raise WeightsUnavailable(f"pretrained weights for {name} are not cached at {file} and edgetl is offline",
                                 hint=hint)
    try:
        return download()
    except Exception as exc:  # URLError, SSL errors, hash mismatch
        raise WeightsUnavailable(f"cannot download weights for {name}: {exc}", hint=hint) from None


def safe_load(path: str | Path):
    """torch.load with weights_only=True. Raises ValueError with what is wrong with the
    file in words a user can act on (torch's own message suggests turning the safe
    loader off, which would execute whatever code the file holds)."""
    import warnings
    import zipfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notes from the safe unpickler
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"  # torch.save's format since 1.6
        if zipped and "Weights only load failed" in str(exc) and zipfile.is_zipfile(path):
            reason = "it holds Python objects besides tensors, which edgetl does not execute"
        elif zipped:
            lines = str(exc).strip().splitlines() or [""]
            reason = f"it is damaged or truncated ({type(exc).__name__}: {lines[0][:120]})"
        else:
            reason = "it is not a PyTorch checkpoint that loads safely (another format, random bytes, or an old pickle)"
        raise ValueError(reason) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a file, loaded safely; unwraps {'state_dict': ...} / {'model': ...}
    and DistributedDataParallel's 'module.' prefix."""
    try:
        state = safe_load(path)
    except ValueError as exc:
        raise WeightsUnavailable(f"cannot load weights from {path}: {exc}",
                                 hint="pass a state dict saved with torch.save(model.state_dict(), PATH)") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{path} does not hold a state dict of tensors",
                                 hint="save it with torch.save(model.state_dict(), PATH)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into a feature extractor; every backbone tensor must be present with
    its shape. Extra keys (the original classifier head, auxiliary heads) are ignored."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        detail = f"{len(missing)} tensors missing (e.g. {missing[0]})" if missing else (
            f"{len(wrong)} tensors of another shape (e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} "
            f"vs {tuple(own[wrong[0]].shape)})")
        raise WeightsUnavailable(f"weights from {source} do not fit this backbone: {detail}",
                                 hint="check that the file was saved from the same architecture")
    model.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
