"""Samples of a model's own data, preprocessed exactly as the runtime preprocesses them
at inference (the card's preprocessing, numpy/Pillow): calibration and validation sets
for quantization, labelled splits for the benchmark harness. Torch-free.

Calibration defaults to the run's own training split (found through the card), or for a
run adapted to another domain to its unlabelled target data, never to random or unrelated
data; validation to the run's validation split.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgetl import modality
from edgetl.card import ModelCard
from edgetl.data.folders import Split
from edgetl.errors import DataError
from edgetl.evaluation import select_split


@dataclasses.dataclass
class Samples:
    """Preprocessed float32 model inputs (labels only for validation data)."""

    x: np.ndarray
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, size: int):
        for start in range(0, len(self.x), size):
            yield self.x[start:start + size]


def _run_data(card: ModelCard, what: str, flag: str) -> Path:
    source = card.source.get("data")
    if not source or not Path(source).is_dir():
        raise DataError(f"the run's data set ({source}) is not available for {what}", hint=f"pass {flag} DIR")
    return Path(source)


def _decode(folder: Split, card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    pre = modality.preprocessing_of(card)
    cached, labels = modality.decode_split(folder, pre)
    return pre.normalize(cached), labels


def calibration_samples(card: ModelCard, calib=None, samples: int = 300, seed: int = 0) -> Samples:
    """Up to `samples` files from `calib` (a data set folder whose labels are ignored, or
    a flat folder of images or clips), by default the run's training split (an adapted
    run's target data: the inputs the deployed model will see); chosen at random
    (seeded), so every class is represented in proportion."""
    if samples < 1:
        raise DataError(f"--samples must be at least 1, got {samples}", hint="e.g. --samples 300")
    target = (card.source.get("adaptation") or {}).get("target_data")
    if not calib and target and card.source["adaptation"].get("method") != "source-only":
        if not Path(target).is_dir():
            raise DataError(f"the run was adapted to {target}, which is not there for calibration",
                            hint="restore that folder, or pass --calib DIR with samples of the deployment domain")
        calib = target
    root = Path(calib) if calib else _run_data(card, "calibration", "--calib")
    kind = modality.get(card.modality)
    if not root.is_dir():
        raise DataError(f"calibration folder {root} does not exist", hint=f"pass --calib with a folder of {kind.noun}s")
    paths = modality.list_files(root / "train" if (root / "train").is_dir() else root, kind)
    if not paths:
        raise DataError(f"no {kind.noun}s found under {root} for calibration",
                        hint=f"supported: {', '.join(sorted(kind.suffixes))}")
    order = np.random.default_rng(seed).permutation(len(paths))[:samples]
    folder = Split("calibration", [paths[i] for i in sorted(order)], [0] * len(order), ["any"])
    x, _ = _decode(folder, card)
    return Samples(x, None, str(root))


def validation_samples(card: ModelCard, val=None, split: str = "val", flag: str = "--val") -> Samples:
    """The labelled split that accuracy drops are measured on (the run's val split by
    default); `flag` is the option a user passes to name another folder."""
    root = Path(val) if val else _run_data(card, "validation", flag)
    x, labels = _decode(select_split(root, split, card.labels, card.modality), card)
    return Samples(x, labels, str(root))
