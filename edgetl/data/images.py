"""Image folder data sets.

A data set is a folder with `train/` and `val/` (optional `test/`), each holding one
folder per class, or a flat folder of class folders that is split with `val_split`.
Class order is the sorted folder names of the training split, saved with the model.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgetl.errors import DataError
from edgetl.preprocess import IMAGE_SUFFIXES, ImagePreprocessing, load_image

log = logging.getLogger("edgetl")
SPLIT_NAMES = ("train", "val", "test")


@dataclasses.dataclass
class ImageFolder:
    """One split: files and integer labels into `classes`."""

    name: str
    paths: list[Path]
    labels: list[int]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in self.classes}
        for y in self.labels:
            out[self.classes[y]] += 1
        return out

    def subset(self, indices: Sequence[int]) -> "ImageFolder":
        return ImageFolder(self.name, [self.paths[i] for i in indices], [self.labels[i] for i in indices], self.classes)

    def limit_per_class(self, n: int, seed: int = 0) -> "ImageFolder":
        """At most `n` images of each class, chosen reproducibly."""
        rng = random.Random(seed)
        keep: list[int] = []
        for c in range(len(self.classes)):
            idx = [i for i, y in enumerate(self.labels) if y == c]
            rng.shuffle(idx)
            keep += sorted(idx[:n])
        return self.subset(sorted(keep))


@dataclasses.dataclass
class DatasetSplits:
    root: Path
    classes: list[str]
    splits: dict[str, ImageFolder]

    def __getitem__(self, name: str) -> ImageFolder:
        if name not in self.splits:
            raise DataError(f"{self.root} has no '{name}' split (found: {', '.join(self.splits)})",
                            hint=f"pass --split {' or '.join(self.splits)}")
        return self.splits[name]


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _scan(folder: Path, name: str, classes: list[str] | None) -> ImageFolder:
    dirs = _class_dirs(folder)
    if not dirs:
        raise DataError(f"{folder} holds no class folders",
                        hint="put one folder per class (e.g. cat/, dog/) with images inside")
    found = [d.name for d in dirs]
    if classes is None:
        classes = found
        if len(classes) < 2:
            raise DataError(f"{folder} holds only one class ({classes[0]}); a classifier needs at least two",
                            hint="add a folder of images for each other class")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{folder} has classes outside the label set ({', '.join(classes)}): {', '.join(unknown)}",
                        hint="the classes come from the training split (or the model's card)")
    paths, labels, empty = [], [], []
    split_folder = folder.resolve()
    for d in dirs:
        target = d.resolve()
        if target == split_folder or target in split_folder.parents:  # e.g. a link to its parent: a loop
            raise DataError(f"class folder {d} links to {target}, which contains the data set itself",
                            hint="replace the link with a folder of that class's images")
        files = list_images(d)
        if not files:
            empty.append(d.name)
        paths += files
        labels += [classes.index(d.name)] * len(files)
    if empty and name == "train":
        raise DataError(f"class folder(s) with no images in {folder}: {', '.join(empty)}",
                        hint=f"add images ({', '.join(sorted(IMAGE_SUFFIXES))}) or remove the folder")
    return ImageFolder(name, paths, labels, classes)


def _stratified_split(folder: ImageFolder, val_split: float, seed: int) -> tuple[ImageFolder, ImageFolder]:
    rng = random.Random(seed)
    train_idx, val_idx = [], []
    for c in range(len(folder.classes)):
        idx = [i for i, y in enumerate(folder.labels) if y == c]
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_split))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val_idx += idx[:n_val]
        train_idx += idx[n_val:]
    train, val = folder.subset(sorted(train_idx)), folder.subset(sorted(val_idx))
    return ImageFolder("train", train.paths, train.labels, folder.classes), ImageFolder("val", val.paths, val.labels, folder.classes)


def open_image_folder(root: str | os.PathLike, val_split: float = 0.2, seed: int = 0,
                      classes: list[str] | None = None) -> DatasetSplits:
    """Scan a data set folder. `classes` fixes the label order (e.g. from a model card)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist", hint="check the path (a folder with train/ and val/, "
                                                                   "or of class folders)")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder", hint="pass a folder with train/ and val/, or of class folders")
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"--val-split must be in [0, 1), got {val_split}", hint="e.g. --val-split 0.2")
    splits: dict[str, ImageFolder] = {}
    if (root / "train").is_dir():
        train = _scan(root / "train", "train", classes)
        classes = train.classes
        splits["train"] = train
        for name in ("val", "test"):
            if (root / name).is_dir():
                splits[name] = _scan(root / name, name, classes)
        if "val" not in splits and val_split > 0:
            splits["train"], splits["val"] = _stratified_split(train, val_split, seed)
    elif (root / "val").is_dir() or (root / "test").is_dir():
        # An evaluation-only folder: val/ and/or test/ without train/.
        if classes is None:
            raise DataError(f"{root} has no train/ split to learn the classes from",
                            hint="put the training images in train/CLASS/, or pass a flat folder of class folders")
        for name in ("val", "test"):
            if (root / name).is_dir():
                splits[name] = _scan(root / name, name, classes)
    else:
        flat = _scan(root, "train", classes)
        classes = flat.classes
        if val_split > 0:
            splits["train"], splits["val"] = _stratified_split(flat, val_split, seed)
        else:
            splits["train"] = flat
    classes = classes or next(iter(splits.values())).classes
    if all(len(s) == 0 for s in splits.values()):
        raise DataError(f"no images found under {root}", hint=f"supported: {', '.join(sorted(IMAGE_SUFFIXES))}")
    return DatasetSplits(root, list(classes), splits)


def _summarize(paths: Sequence[Path], limit: int = 5) -> str:
    names = ", ".join(str(p) for p in paths[:limit])
    return names + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def decode_images(folder: ImageFolder, preprocessing: ImagePreprocessing, workers: int | None = None,
                  progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode, resize and crop every image once: (uint8 N×H×W×3, int64 labels).

    Unreadable files are skipped with one warning that names them; a split that loses
    every image of a class in training is an error.
    """
    workers = workers or min(16, (os.cpu_count() or 2) * 2)

    reasons: list[str] = []

    def work(path: Path):
        try:
            return preprocessing.resize_crop(load_image(path))
        except DataError as exc:
            reasons.append(exc.message)
            return None

    out = np.zeros((len(folder), *preprocessing.size, 3), np.uint8)
    keep = np.ones(len(folder), bool)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, pixels in enumerate(pool.map(work, folder.paths)):
            if pixels is None:
                keep[i] = False
            else:
                out[i] = pixels
            if progress:
                progress(1)
    skipped = [p for p, k in zip(folder.paths, keep) if not k]
    if skipped:
        log.warning("skipped %d unreadable or too large image(s) in %s: %s (e.g. %s)", len(skipped), folder.name,
                    _summarize(skipped), reasons[0])
    labels = np.asarray(folder.labels, np.int64)[keep]
    if folder.name == "train":
        present, kept = set(folder.labels), set(labels.tolist())
        lost = [c for i, c in enumerate(folder.classes) if i in present and i not in kept]
        if lost:
            raise DataError(f"no readable images left for class(es) {', '.join(lost)} in {folder.name}",
                            hint="replace the unreadable files named in the warning above")
    if len(labels) == 0:
        raise DataError(f"no readable images in the {folder.name} split",
                        hint="replace the unreadable files named in the warning above")
    return out[keep], labels
