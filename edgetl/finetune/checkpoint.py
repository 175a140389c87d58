"""The checkpoint of an unfinished run: the last completed epoch, kept outside the run.

A run directory appears only when training is done (finetune/run.py), so an interrupted
run leaves nothing in --out. What it did is kept here instead: after every completed
epoch, the model, optimizer, schedule, gradient scaler, random states, history and best
weights, under the cache folder and keyed by the run's --out, with the settings and data
that made it. `finetune --resume` with the same --out, settings and data continues from
it and ends with the same weights as a run that was never stopped (on one thread; more
threads reorder floating-point sums); the checkpoint is removed once the run is written.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from edgetl.backbones.stages import safe_load
from edgetl.core.atomic import replacing
from edgetl.core.errors import ConfigError
from edgetl.core.paths import cache_dir

# Settings that do not change what a run computes: a resumed run may differ in them.
FREE = ("threads", "resume", "device")


def folder_for(out) -> Path:
    key = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:24]
    return cache_dir() / "checkpoints" / key


class Checkpoints:
    """The checkpoint of the run to `out`. `identity` holds what must match to resume
    (the settings that change the result, the data's cache keys)."""

    def __init__(self, out, identity: dict, resume: bool):
        self.path = folder_for(out) / "last.pt"
        self.identity = identity
        self.resume = resume

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, state: dict) -> None:
        with replacing(self.path) as tmp:  # a checkpoint is either the old epoch or the new one, never half
            torch.save({**state, "identity": self.identity}, tmp)

    def load(self) -> dict | None:
        """The state to resume from (None when not resuming); a checkpoint of other
        settings or data is refused with the first difference named."""
        if not self.resume:
            return None
        if not self.exists():
            raise ConfigError("--resume: no interrupted run to this --out to resume",
                              hint="run without --resume to train from the start")
        try:
            state = safe_load(self.path)
        except ValueError as exc:
            raise ConfigError(f"--resume: the checkpoint {self.path} cannot be read ({exc})",
                              hint="run without --resume to train from the start") from None
        recorded = state.get("identity", {})
        for key in sorted(set(recorded) | set(self.identity)):
            if recorded.get(key) != self.identity.get(key):
                was, now = recorded.get(key), self.identity.get(key)
                what = "the data" if key.endswith("_data") else f"--{key.replace('_', '-')}"
                raise ConfigError(f"--resume: the interrupted run had {what} {was!r}, this one {now!r}",
                                  hint="resume with the settings and data of the interrupted run, or run without "
                                       "--resume to start again")
        return state

    def remove(self) -> None:
        for f in (self.path, *self.path.parent.glob(".last.*.pt")):
            f.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass


def identity_of(settings: dict, train_key: str | None, val_key: str | None) -> dict:
    """What a resumed run must share with the interrupted one."""
    return {**{k: v for k, v in settings.items() if k not in FREE}, "train_data": train_key, "val_data": val_key}
