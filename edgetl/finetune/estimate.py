"""How long fine-tuning will take here, said before it starts, for the strategy asked and
its alternatives, so that a first try can fit the machine (a full fine-tune at 224 px is
hours on a 2-core CPU; a linear probe of the same data, minutes).

A few batches of the real data on a copy of the model (the run's own weights and random
state untouched) give two per-sample times on this machine: a training step with every
stage trainable (augmentation, forward and backward) and an inference forward pass.
Each strategy's time follows from them: a linear probe is one forward pass over train and
val (its features are then fitted by logistic regression, seconds); a stage that trains
costs its share of the backward pass, the frozen ones a forward pass only; every epoch
also scores val. The estimate is an upper bound in epochs (early stopping can end
sooner) and ignores caches that a rerun finds.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

from edgetl.finetune.strategies import STRATEGIES, check_strategy, trainable_count

TIMING_BATCH = 8  # samples per timed step: per-sample times hold, and the estimate costs seconds
WORTH_IT = 3000  # sample passes (train samples x epochs) below which training is quick anyway: no estimate


def time_per_sample(calls: dict[str, Callable[[], None]], n: int, device: torch.device,
                    repeats: int = 2) -> dict[str, float]:
    """Seconds per sample of each call (each works on `n` samples), after one untimed call
    of each (allocation, kernel choice). The global random state is put back: dropout and
    augmentation draw from it, and the run must stay as it would have been."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    out = {}
    with torch.random.fork_rng(devices=cuda):
        for name, call in calls.items():
            call()
            start = time.perf_counter()
            for _ in range(repeats):
                call()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            out[name] = (time.perf_counter() - start) / repeats / n
    return out


def per_sample_seconds(trainer, x_train: torch.Tensor) -> tuple[float, float]:
    """(training step with every stage trainable, inference forward) seconds per sample of
    a classifier, measured on a copy of the trainer's model with a generator of its own."""
    model = copy.deepcopy(trainer.model).to(trainer.device)
    gen = torch.Generator(device=trainer.device).manual_seed(0)
    xb = x_train[:TIMING_BATCH].to(trainer.device)

    def train_step() -> None:
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)
        with trainer._autocast():
            logits = model(trainer._layout(trainer.inputs.augmented(xb, gen)))
        logits.float().sum().backward()
        model.zero_grad(set_to_none=True)

    def forward() -> None:
        model.eval()
        with torch.no_grad(), trainer._autocast():
            model(trainer._layout(trainer.inputs.model_input(xb)))

    found = time_per_sample({"step": train_step, "forward": forward}, len(xb), trainer.device)
    return found["step"], found["forward"]


def strategy_seconds(strategy: str, epochs: int, n_train: int, n_val: int, n_stages: int, unfreeze: int | None,
                     step: float, forward: float, head_step: float | None = None, features_once: bool = True) -> float:
    """Seconds of fine-tuning with `strategy` from per-sample times: `step` with every stage
    trainable, `head_step` with the backbone frozen (what trains on top of it: a
    classifier's linear head costs nothing beside the forward pass, a detector's neck and
    head do), `forward` for inference. `features_once`: a linear probe computes the
    backbone's features once (a classifier's); else it trains epochs like the others."""
    head = forward if head_step is None else head_step
    if strategy == "linear-probe" and features_once:
        return (n_train + n_val) * forward
    limit = check_strategy(strategy, unfreeze if strategy == "partial" else None, n_stages)
    total = 0.0
    for epoch in range(epochs):
        share = trainable_count(strategy, limit, epoch) / max(1, n_stages)  # gradual: one more stage per epoch
        total += n_train * (head + (step - head) * share) + n_val * forward
    return total


def all_strategies(chosen: str, epochs: int, n_train: int, n_val: int, n_stages: int, unfreeze: int | None,
                   **times: float | bool) -> dict[str, float]:
    """Seconds per strategy: the one chosen and the alternatives (partial only when asked
    for: it needs an --unfreeze of its own)."""
    return {s: strategy_seconds(s, epochs, n_train, n_val, n_stages, unfreeze, **times)  # type: ignore[arg-type]
            for s in STRATEGIES if s != "partial" or chosen == "partial"}


def said(chosen: str, epochs: int, n_train: int, found: dict[str, float]) -> str:
    """The line that says it: `estimated here: full (10 epochs, 3068 samples) about 2.1 h;
    linear-probe 4 min, gradual 1.2 h`; `epochs` 0 where the chosen one has none (a
    classifier's probe)."""
    others = ", ".join(f"{s} {format_seconds(t)}" for s, t in found.items() if s != chosen)
    what = f"{epochs} epochs, {n_train} samples" if epochs else f"{n_train} samples"
    return f"estimated here: {chosen} ({what}) about {format_seconds(found[chosen])}; {others}"


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def estimates(trainer, x_train: torch.Tensor, n_val: int) -> dict[str, float] | None:
    """Seconds per strategy (the trainer's own and the alternatives) on this machine; None
    when training is quick anyway."""
    cfg = trainer.cfg
    if len(x_train) * max(1, cfg.epochs) < WORTH_IT:
        return None
    step, forward = per_sample_seconds(trainer, x_train)
    return all_strategies(cfg.strategy, cfg.epochs, len(x_train), n_val, len(trainer.stages), cfg.unfreeze,
                          step=step, forward=forward)


__all__ = ["all_strategies", "estimates", "format_seconds", "per_sample_seconds", "said", "strategy_seconds",
           "time_per_sample"]
