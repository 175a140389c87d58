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

import torch

from edgetl.finetune.strategies import STRATEGIES, check_strategy, trainable_count

TIMING_BATCH = 8  # samples per timed step: per-sample times hold, and the estimate costs seconds
WORTH_IT = 3000  # sample passes (train samples x epochs) below which training is quick anyway: no estimate


def per_sample_seconds(trainer, x_train: torch.Tensor, repeats: int = 2) -> tuple[float, float]:
    """(training step with every stage trainable, inference forward) seconds per sample,
    measured on a copy of the trainer's model with a generator of its own."""
    model = copy.deepcopy(trainer.model).to(trainer.device)
    gen = torch.Generator(device=trainer.device).manual_seed(0)
    xb = x_train[:TIMING_BATCH].to(trainer.device)
    n = len(xb)

    def train_step() -> None:
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)
        logits = model(trainer._layout(trainer.inputs.augmented(xb, gen)))
        logits.float().sum().backward()
        model.zero_grad(set_to_none=True)

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(trainer._layout(trainer.inputs.model_input(xb)))

    timings = []
    cuda = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # dropout draws from the global generator: the run's stays as it was
        for step in (train_step, forward):
            step()  # the first call of each kind pays for allocation and kernel choice
            start = time.perf_counter()
            for _ in range(repeats):
                step()
            timings.append((time.perf_counter() - start) / repeats / n)
    return timings[0], timings[1]


def strategy_seconds(strategy: str, epochs: int, n_train: int, n_val: int, n_stages: int, unfreeze: int | None,
                     step: float, forward: float) -> float:
    """Seconds of fine-tuning with `strategy` from per-sample `step` and `forward` times."""
    if strategy == "linear-probe":
        return (n_train + n_val) * forward
    limit = check_strategy(strategy, unfreeze if strategy == "partial" else None, n_stages)
    total = 0.0
    for epoch in range(epochs):
        share = trainable_count(strategy, limit, epoch) / max(1, n_stages)  # gradual: one more stage per epoch
        total += n_train * (forward + (step - forward) * share) + n_val * forward
    return total


def estimates(trainer, x_train: torch.Tensor, n_val: int) -> dict[str, float] | None:
    """Seconds per strategy (the trainer's own and the alternatives) on this machine; None
    when training is quick anyway."""
    cfg = trainer.cfg
    if len(x_train) * max(1, cfg.epochs) < WORTH_IT:
        return None
    step, forward = per_sample_seconds(trainer, x_train)
    n_stages = len(trainer.stages)
    out = {}
    for strategy in STRATEGIES:
        if strategy == "partial" and cfg.strategy != "partial":
            continue  # partial needs an --unfreeze of its own: said only when asked for
        out[strategy] = strategy_seconds(strategy, cfg.epochs, len(x_train), n_val, n_stages, cfg.unfreeze, step,
                                         forward)
    return out


__all__ = ["estimates", "per_sample_seconds", "strategy_seconds"]
