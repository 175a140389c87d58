"""What a training method adds to the fine-tuning loop.

`Trainer.fit` owns the loop (batches, augmentation, optimizer, schedule, early stopping,
the best checkpoint); a method such as a domain adaptation is a `TrainingHooks` subclass
that overrides only what it changes:

- `modules`: networks that train beside the model but are never exported (a domain
  classifier); their parameters join the optimizer at the head's learning rate;
- `extra_batch`: a second, unlabelled batch stream; each such batch goes through the
  same forward pass as the labelled batch (augmented alike, one BatchNorm pass);
- `loss`: a term added to the task loss, from the features and logits of both batches;
- `before_fit` / `after_epoch` / `after_fit`: set up, add label-free figures to the
  epoch's history entry, change the kept weights at the end;
- `selection_key`: which epoch is kept (default: validation accuracy, then loss).

Every hook is a no-op by default, so `TrainingHooks()` is plain fine-tuning.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn


@dataclasses.dataclass
class Step:
    """One training step's forward pass, as a hook's loss term sees it."""

    features: torch.Tensor  # backbone features of the labelled batch
    logits: torch.Tensor
    labels: torch.Tensor
    extra_features: torch.Tensor | None  # of `extra_batch`'s batch, when there is one
    extra_logits: torch.Tensor | None
    progress: float  # 0 at the first step, 1 at the last: for schedules
    epoch: int


class TrainingHooks:
    # True when `loss` reads features: the loop then runs the backbone and the head apart
    wants_features = False

    def modules(self) -> list[nn.Module]:
        return []

    def before_fit(self, trainer) -> None:
        """Called once the model is on its device, before the optimizer is made."""

    def extra_batch(self, epoch: int, step: int) -> torch.Tensor | None:
        """An unlabelled batch in the training layout (as the cached split), or None."""
        return None

    def loss(self, step: Step) -> torch.Tensor | None:
        return None

    def after_epoch(self, trainer, entry: dict) -> None:
        """Add figures to `entry` (the epoch's history row); the model is in eval mode."""

    def selection_key(self, entry: dict) -> tuple:
        """Larger is better; the epoch with the largest key is kept."""
        return entry["val_accuracy"], -entry["val_loss"]

    def after_fit(self, trainer, best_state: dict, history: list[dict], best_epoch: int) -> dict:
        """The weights to keep (a state dict of the model alone)."""
        return best_state
