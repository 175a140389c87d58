"""Which stages train, and at which learning rate.

- linear-probe: the backbone is frozen; only the head trains (on cached features).
- full: everything trains.
- partial: the last N stages and the head train.
- gradual: the head first, then one more stage (from the top) per epoch or per
  plateau, with layer-wise decayed learning rates (deeper = closer to the input =
  smaller).
Frozen stages stay in eval mode, so their BatchNorm statistics and dropout are fixed.
"""
from __future__ import annotations

from edgetl.core.errors import ConfigError

STRATEGIES = ("linear-probe", "full", "partial", "gradual")
# Domain adaptation methods (finetune/adaptation.py), named here for the torch-free CLI;
# auto tries those that apply and keeps the one the label-free criterion prefers.
ADAPTATIONS = ("adabn", "coral", "dann", "auto")


def check_strategy(strategy: str, unfreeze: int | None, n_stages: int) -> int:
    """Validate and return how many stages (from the top) may train at most."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}", hint=f"use one of {', '.join(STRATEGIES)}")
    if unfreeze is not None and unfreeze < 1:
        raise ConfigError(f"--unfreeze must be at least 1, got {unfreeze}", hint="the number of stages that train")
    if strategy == "partial" and unfreeze is None:
        raise ConfigError("--strategy partial needs --unfreeze N (how many of the last stages train)",
                          hint=f"this backbone has {n_stages} stages")
    if unfreeze is not None and unfreeze > n_stages:
        raise ConfigError(f"--unfreeze {unfreeze} is more than this backbone's {n_stages} stages",
                          hint=f"use --unfreeze 1 to {n_stages}, or --strategy full")
    if strategy == "linear-probe":
        return 0
    if strategy == "full":
        return n_stages
    return unfreeze if unfreeze is not None else n_stages


def trainable_count(strategy: str, limit: int, unfrozen: int) -> int:
    """Stages that train now; `unfrozen` is gradual's counter."""
    return min(unfrozen, limit) if strategy == "gradual" else limit


def stage_lr_scales(n_stages: int, backbone_scale: float, layer_decay: float) -> list[float]:
    """Learning-rate multipliers per stage (index 0 = input side), the head being 1."""
    return [backbone_scale * layer_decay ** (n_stages - 1 - i) for i in range(n_stages)]
