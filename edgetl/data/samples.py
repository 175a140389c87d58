"""Samples of a model's own data, preprocessed exactly as the runtime preprocesses them
at inference (the card's preprocessing, numpy/Pillow): calibration and validation sets
for quantization, labelled splits for the benchmark harness. Torch-free.

Calibration defaults to the run's own training split (found through the card), or for a
run adapted to another domain to its unlabelled target data, never to random or unrelated
data; validation to the run's validation split. An adapted run's INT8 bound is measured
on target samples held out from calibration, without their labels: against the FP32
model's answers (`bound_samples`).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from edgetl import modality
from edgetl.core.card import ModelCard
from edgetl.core.errors import DataError
from edgetl.data.folders import Split, select_split
from edgetl.data.sample_cache import cached_split

log = logging.getLogger("edgetl")


class ModelInputs:
    """A split's cached samples as model inputs, preprocessed a slice at a time
    (indexing returns an array), so a large validation split is not held in memory."""

    def __init__(self, cached, pre):
        self.cached, self.pre = cached, pre
        first = pre.normalize(cached[:1])
        self.shape, self.dtype = (len(cached), *first.shape[1:]), first.dtype  # float32, or uint8 for such a model

    def __len__(self) -> int:
        return len(self.cached)

    def __getitem__(self, index) -> np.ndarray:
        return self.pre.normalize(self.cached[index])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """All of them at once (what np.asarray asks for)."""
        return self[:] if dtype is None else self[:].astype(dtype)


@dataclasses.dataclass
class Samples:
    """Preprocessed float32 model inputs (labels only for validation data)."""

    x: ModelInputs | np.ndarray  # a labelled split is read a slice at a time
    labels: np.ndarray | None  # None: unlabelled; a bound on them is agreement with FP32's answers
    source: str

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, size: int):
        for start in range(0, len(self.x), size):
            yield self.x[start:start + size]


def _run_data(card: ModelCard, what: str, flag: str) -> Path:
    source = card.source.get("data")
    if not source or not Path(source).is_dir():
        raise DataError(f"the run's data set ({source}) is not available for {what}",
                        hint=f"pass {flag} DIR with labelled files of the model's classes (a data set folder, or "
                             "class folders)")
    return Path(source)


def _decode(folder: Split, card: ModelCard) -> tuple[ModelInputs, np.ndarray]:
    pre = modality.preprocessing_of(card)
    cached, labels = cached_split(folder, pre)
    return ModelInputs(cached, pre), labels


MIN_HELD_OUT = 20  # fewer held-out target samples than this are no bound at all


def adapted_target(card: ModelCard) -> Path | None:
    """The target data folder of a run adapted to another domain (None for other runs)."""
    adaptation = card.source.get("adaptation") or {}
    target = adaptation.get("target_data")
    if not target or adaptation.get("method") == "source-only":
        return None
    if not Path(target).is_dir():
        raise DataError(f"the run was adapted to {target}, which is not there for quantization",
                        hint="restore that folder, or pass --calib DIR and --val DIR with samples of the deployment domain")
    return Path(target)


def _listed(root: Path) -> Path:
    """The folder whose files are drawn: a data set's train split, else the folder itself."""
    return root / "train" if (root / "train").is_dir() else root


def _files(root: Path, card: ModelCard, what: str, flag: str) -> list[Path]:
    kind = modality.get(card.modality)
    if not root.is_dir():
        raise DataError(f"{what} folder {root} does not exist", hint=f"pass {flag} with a folder of {kind.noun}s")
    from edgetl.data.detection import is_detection_set, open_detection

    if is_detection_set(root):  # a detection set's training photos, wherever its layout keeps them
        return list(open_detection(root).splits["train"].paths)
    paths = modality.list_files(_listed(root), kind)
    if not paths:
        raise DataError(f"no {kind.noun}s found under {root} for {what}",
                        hint=f"supported: {', '.join(sorted(kind.suffixes))}")
    return paths


def _unlabelled(paths: list[Path], card: ModelCard, source: Path, what: str) -> Samples:
    folder = Split(what, paths, [0] * len(paths), ["any"])
    x, _ = _decode(folder, card)
    return Samples(np.asarray(x), None, str(source))  # at most --samples (calibration) or `limit` of them


def _order(n: int, seed: int) -> np.ndarray:
    """The seeded order in which files are drawn: calibration takes the first `samples`,
    a held-out bound the rest, so the two never share a file."""
    return np.random.default_rng(seed).permutation(n)


def calibration_samples(card: ModelCard, calib=None, samples: int = 300, seed: int = 0) -> Samples:
    """Up to `samples` files from `calib` (a data set folder whose labels are ignored, or
    a flat folder of images or clips), by default the run's training split (an adapted
    run's target data: the inputs the deployed model will see); chosen at random
    (seeded), so every class is represented in proportion."""
    if samples < 1:
        raise DataError(f"--samples must be at least 1, got {samples}", hint="e.g. --samples 300")
    root = Path(calib) if calib else adapted_target(card) or _run_data(card, "calibration", "--calib")
    paths = _files(root, card, "calibration", "--calib")
    return _unlabelled([paths[i] for i in sorted(_order(len(paths), seed)[:samples])], card, root, "calibration")


def bound_samples(card: ModelCard, val=None, calib=None, samples: int = 300, seed: int = 0,
                  limit: int = 1000) -> Samples:
    """The samples an INT8 accuracy bound is measured on: labelled `val` if given; for a
    run adapted to another domain, up to `limit` target samples that calibration did not
    draw, unlabelled (labels None: the bound is then agreement with the FP32 model, which
    bounds the target accuracy lost without a single target label); otherwise the run's
    validation split."""
    target = None if val else adapted_target(card)
    if target is None:
        return validation_samples(card, val)
    paths = _files(target, card, "the INT8 bound", "--val")
    drawn = samples if not calib or _listed(Path(calib)).resolve() == _listed(target).resolve() else 0  # files calibration took
    held_out = _order(len(paths), seed)[drawn:drawn + limit]
    if len(held_out) < MIN_HELD_OUT:
        log.warning(f"only {len(held_out)} target samples are left for the INT8 bound beside calibration's, fewer "
                    f"than {MIN_HELD_OUT}: the bound is measured on the source validation split instead "
                    "(pass fewer --samples, or --val DIR with labelled target samples)")
        return validation_samples(card, val)
    return _unlabelled([paths[i] for i in sorted(held_out)], card, target, "held-out target")


def reference_samples(bundle_root: Path, card: ModelCard) -> Samples:
    """A bundle's reference files as labelled samples, so a device without the training
    data can still score a model: each is named NN_LABEL.suffix by `edgetl package`; a
    detector's true objects are in reference/truths.json."""
    import json

    from edgetl.runtime.bundle import TRUTHS

    folder = Path(bundle_root) / "reference"
    kind = modality.get(card.modality)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in kind.suffixes) if folder.is_dir() else []
    labels = [p.stem[3:] for p in paths]
    if not paths or any(label not in card.labels for label in labels):
        raise DataError(f"the bundle {bundle_root} holds no reference files named by their labels",
                        hint="pass --data DIR with labelled files of the model's classes")
    split = Split("reference", paths, [card.labels.index(label) for label in labels], list(card.labels))
    x, y = _decode(split, card)
    if card.task != "detection":
        return Samples(x, y, str(folder))
    from edgetl.data.detection import Boxes

    try:
        truths = json.loads((folder / TRUTHS).read_text())
        pre = modality.preprocessing_of(card)
        boxes = [Boxes(pre.boxes_to_input(np.asarray(t["boxes"], np.float32).reshape(-1, 4), *t["size"]),
                       np.asarray([card.labels.index(label) for label in t["labels"]], np.int64))
                 for t in (truths[Path(f).name] for f in x.cached.files)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"the bundle {bundle_root} holds no true boxes of its reference photos ({exc})",
                        hint="pass --data DIR with the detection data set") from None
    return Samples(x, boxes, str(folder))


def validation_samples(card: ModelCard, val=None, split: str = "val", flag: str = "--val") -> Samples:
    """The labelled split that accuracy drops are measured on (the run's val split by
    default); `flag` is the option a user passes to name another folder."""
    root = Path(val) if val else _run_data(card, "validation", flag)
    if card.task == "detection":  # photos with boxes: the truths are boxes (data/labelled.py)
        from edgetl.data.labelled import labelled_split

        labelled = labelled_split(root, split, card)
        return Samples(ModelInputs(labelled.cached, modality.preprocessing_of(card)), labelled.truths, str(root))
    x, labels = _decode(select_split(root, split, card.labels, card.modality), card)
    return Samples(x, labels, str(root))
