"""A labelled split as a task scores it: the samples decoded once through the cache on
disk (as every runtime preprocesses them) and their truths in the task's form: class
indices for classification and keyword spotting (class folders), boxes in the model
input's pixels for detection (YOLO, COCO or VOC folders, data/detection.py). Evaluate,
the parity gate, the INT8 bound and bench read their labelled data through here."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.card import ModelCard
from edgetl.core.errors import DataError
from edgetl.data.folders import Split, select_split
from edgetl.data.sample_cache import cached_split
from edgetl.modality import preprocessing_of


@dataclasses.dataclass
class LabelledSplit:
    name: str
    cached: Any  # the decoded samples (rows of readable files); `.files` names them
    truths: Any  # class indices (np.ndarray), or a list of Boxes in input pixels
    skipped: int  # unreadable files

    def __len__(self) -> int:
        return len(self.truths)


def labelled_split(data, split: str, card: ModelCard, progress=None) -> LabelledSplit:
    """`split` of the labelled data set `data`, in the card's preprocessing and task."""
    pre = preprocessing_of(card)
    if card.task == "detection":
        return _detection_split(Path(data), split, card, pre, progress)
    folder = select_split(data, split, card.labels, card.modality)
    cached, labels = cached_split(folder, pre, progress=progress)
    return LabelledSplit(folder.name, cached, labels, len(folder) - len(labels))


def _detection_split(data: Path, split: str, card: ModelCard, pre, progress) -> LabelledSplit:
    from edgetl.data.detection import Boxes, open_detection

    dataset = open_detection(data)
    if dataset.classes != list(card.labels):
        raise DataError(f"{data} names the classes {', '.join(dataset.classes)}; the model detects "
                        f"{', '.join(card.labels)}", hint="pass the data set the model was trained on (the same "
                                                          "class names in the same order)")
    name = {"validation": "val", "valid": "val"}.get(split, split)
    if name not in dataset.splits:
        raise DataError(f"{data} ({dataset.format}) has no {split} split",
                        hint=f"its splits: {', '.join(dataset.splits)}")
    s = dataset.splits[name]
    cached, _ = cached_split(Split(name, s.paths, [0] * len(s), ["image"]), pre, progress=progress)
    by_path = {p: (t, size) for p, t, size in zip(s.paths, s.targets, s.sizes)}
    truths = []
    for path in cached.files:
        target, (w, h) = by_path[path]
        truths.append(Boxes(pre.boxes_to_input(target.boxes, w, h), target.classes))
    return LabelledSplit(name, cached, truths, len(s) - len(truths))


def take(split: LabelledSplit, rows: np.ndarray) -> tuple[np.ndarray, Any]:
    """Some rows of a split: (their cached samples, not yet normalized; their truths)."""
    rows = np.asarray(rows)
    truths = split.truths[rows] if isinstance(split.truths, np.ndarray) else [split.truths[i] for i in rows]
    return split.cached[rows], truths


__all__ = ["LabelledSplit", "labelled_split", "take"]
