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


def labelled_split(data: str | Path, split: str, card: ModelCard, progress: Any = None) -> LabelledSplit:
    """`split` of the labelled data set `data`, in the card's preprocessing and task."""
    pre = preprocessing_of(card)
    if card.task == "detection":
        return _detection_split(Path(data), split, card, pre, progress)
    folder = select_split(data, split, card.labels, card.modality)
    cached, labels = cached_split(folder, pre, progress=progress)
    return LabelledSplit(folder.name, cached, labels, len(folder) - len(labels))


def _detection_split(data: Path, split: str, card: ModelCard, pre: Any, progress: Any) -> LabelledSplit:
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


@dataclasses.dataclass
class ReferenceFile:
    """A file a bundle carries to check a device with: `tag` names it (a class it shows);
    a detector's `truth` holds its true objects in the file's own pixels."""

    path: Path
    tag: str
    truth: dict[str, Any] | None = None  # {"size": [w, h], "boxes": [[x0, y0, x1, y1]...], "labels": [...]}


def reference_files(card: ModelCard, data: str | Path | None, n: int) -> list[ReferenceFile]:
    """Up to `n` files of the data set `data` (its test split, else val), taken class by
    class in turn so that every class is there (a detector's: photos that show it)."""
    from edgetl.data.detection import open_detection
    from edgetl.data.folders import open_folder

    if not data or not Path(data).is_dir():
        raise DataError(f"the run's data set {data} is not there to take reference files from",
                        hint="pass --data DIR with files of the same classes")
    if card.task == "detection":
        dataset = open_detection(data)
        split = "test" if "test" in dataset.splits else "val"
        s = dataset.splits[split]
        candidates = [[ReferenceFile(p, card.labels[c], {"size": list(size), "boxes": t.boxes.round(2).tolist(),
                                                         "labels": [card.labels[k] for k in t.classes.tolist()]})
                       for p, t, size in zip(s.paths, s.targets, s.sizes) if c in t.classes.tolist()]
                      for c in range(len(card.labels))]
    else:
        split = "test" if "test" in open_folder(data, modality=card.modality).splits else "val"
        folder = select_split(data, split, card.labels, card.modality)
        candidates = [[ReferenceFile(p, folder.classes[c]) for p, y in zip(folder.paths, folder.labels) if y == c]
                      for c in range(len(folder.classes))]
    picked: list[ReferenceFile] = []
    while len(picked) < n and any(candidates):
        for files in candidates:
            while files and files[0].path in {f.path for f in picked}:  # a photo that shows two classes
                files.pop(0)
            if files and len(picked) < n:
                picked.append(files.pop(0))
    if not picked:
        raise DataError(f"the {split} split of {data} holds no file to take as a reference",
                        hint="pass --data DIR with files of the model's classes")
    return picked


def take(split: LabelledSplit, rows: np.ndarray) -> tuple[np.ndarray, Any]:
    """Some rows of a split: (their cached samples, not yet normalized; their truths)."""
    rows = np.asarray(rows)
    truths = split.truths[rows] if isinstance(split.truths, np.ndarray) else [split.truths[i] for i in rows]
    return split.cached[rows], truths


__all__ = ["LabelledSplit", "ReferenceFile", "labelled_split", "reference_files", "take"]
