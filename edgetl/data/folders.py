"""Folder data sets, for any modality (images, audio clips).

A data set is a folder with `train/` and `val/` (optional `test/`), each holding one
folder per class, or a flat folder of class folders that is split with `val_split`.
`validation/` and `valid/` are read as `val/` (the Keras and Roboflow layouts); any other
folder beside `train/` is named in a warning rather than passed over in silence.
Class order is the sorted folder names of the training split, saved with the model.
Which files count, and which folders are not classes (e.g. `_background_noise_`), is
the modality's to say.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from edgetl import modality as modalities
from edgetl.core.errors import DataError
from edgetl.modality import Modality, list_files

SPLIT_NAMES = ("train", "val", "test")
# the folder names a split goes by in the layouts people use, in the order they are tried
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}
log = logging.getLogger("edgetl")


def split_folder(root: Path, name: str) -> Path | None:
    """The folder of split `name` under `root` (val/, validation/ or valid/ for val), if any."""
    return next((root / f for f in SPLIT_FOLDERS[name] if (root / f).is_dir()), None)


def _warn_unknown_siblings(root: Path, modality: Modality) -> None:
    known = {f for names in SPLIT_FOLDERS.values() for f in names} | set(modality.reserved_folders)
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in known and not p.name.startswith("."))
    if others:
        log.warning("%s: %s beside train/ is not a split edgetl reads (train/, val/ or validation/, test/); "
                    "it was left out", root, ", ".join(f"{o}/" for o in others))


@dataclasses.dataclass
class Split:
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

    def subset(self, indices: Sequence[int]) -> Split:
        return Split(self.name, [self.paths[i] for i in indices], [self.labels[i] for i in indices], self.classes)

    def limit_per_class(self, n: int, seed: int = 0) -> Split:
        """At most `n` files of each class, chosen reproducibly."""
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
    splits: dict[str, Split]
    modality: str

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"{self.root} has no '{name}' split (found: {', '.join(self.splits)})",
                            hint=f"pass --split {' or '.join(self.splits)}")
        return self.splits[name]


def _class_dirs(folder: Path, modality: Modality) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name not in modality.reserved_folders)


def _other_modality(folder: Path, modality: Modality) -> str | None:
    """The modality whose files `folder` holds, when it holds none of `modality`'s."""
    suffixes = {p.suffix.lower() for p in folder.rglob("*") if p.is_file()}  # one walk of the folder
    if suffixes & modality.suffixes:
        return None
    other = modalities.claiming(suffixes, besides=modality.name)
    return other.noun if other else None


def _wrong_modality(folder: Path, modality: Modality) -> None:
    found = _other_modality(folder, modality)
    if found:
        raise DataError(f"{folder} holds {found}s, but this model or backbone takes {modality.noun}s",
                        hint=f"pass a folder of {modality.noun}s ({', '.join(sorted(modality.suffixes))}), "
                             f"or a model trained on {found}s")


def _scan(folder: Path, name: str, classes: list[str] | None, modality: Modality) -> Split:
    files_ = f"{modality.noun}s"
    dirs = _class_dirs(folder, modality)
    if not dirs:
        raise DataError(f"{folder} holds no class folders",
                        hint=f"put one folder per class (e.g. cat/, dog/) with {files_} inside")
    found = [d.name for d in dirs]
    if classes is None:
        classes = found
        if len(classes) < 2:
            raise DataError(f"{folder} holds only one class ({classes[0]}); a classifier needs at least two",
                            hint=f"add a folder of {files_} for each other class")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        _wrong_modality(folder, modality)
        raise DataError(f"{folder} has classes outside the label set ({', '.join(classes)}): {', '.join(unknown)}",
                        hint="the classes come from the training split (or the model's card)")
    paths, labels, empty = [], [], []
    split_folder = folder.resolve()
    for d in dirs:
        target = d.resolve()
        if target == split_folder or target in split_folder.parents:  # e.g. a link to its parent: a loop
            raise DataError(f"class folder {d} links to {target}, which contains the data set itself",
                            hint=f"replace the link with a folder of that class's {files_}")
        files = list_files(d, modality)
        if not files:
            empty.append(d.name)
        paths += files
        labels += [classes.index(d.name)] * len(files)
    if empty and name == "train":
        _wrong_modality(folder, modality)
        raise DataError(f"class folder(s) with no {files_} in {folder}: {', '.join(empty)}",
                        hint=f"add {files_} ({', '.join(sorted(modality.suffixes))}) or remove the folder")
    return Split(name, paths, labels, classes)


def _stratified_split(folder: Split, val_split: float, seed: int) -> tuple[Split, Split]:
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
    return Split("train", train.paths, train.labels, folder.classes), Split("val", val.paths, val.labels, folder.classes)


def open_folder(root: str | os.PathLike, val_split: float = 0.2, seed: int = 0, classes: list[str] | None = None,
                *, modality: str) -> DatasetSplits:
    """Scan a data set folder of `modality` files. `classes` fixes the label order (e.g.
    from a model card)."""
    mod = modalities.get(modality)
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist", hint="check the path (a folder with train/ and val/, "
                                                                   "or of class folders)")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder", hint="pass a folder with train/ and val/, or of class folders")
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"--val-split must be in [0, 1), got {val_split}", hint="e.g. --val-split 0.2")
    splits: dict[str, Split] = {}
    folders = {name: split_folder(root, name) for name in SPLIT_NAMES}
    if folders["train"] is not None:
        _warn_unknown_siblings(root, mod)
        train = _scan(folders["train"], "train", classes, mod)
        classes = train.classes
        splits["train"] = train
        for name in ("val", "test"):
            if folders[name] is not None:
                splits[name] = _scan(folders[name], name, classes, mod)
        if "val" not in splits and val_split > 0:
            splits["train"], splits["val"] = _stratified_split(train, val_split, seed)
    elif folders["val"] is not None or folders["test"] is not None:
        # An evaluation-only folder: val/ and/or test/ without train/.
        if classes is None:
            raise DataError(f"{root} has no train/ split to learn the classes from",
                            hint=f"put the training {mod.noun}s in train/CLASS/, or pass a flat folder of class folders")
        for name in ("val", "test"):
            if folders[name] is not None:
                splits[name] = _scan(folders[name], name, classes, mod)
    else:
        flat = _scan(root, "train", classes, mod)
        classes = flat.classes
        if val_split > 0:
            splits["train"], splits["val"] = _stratified_split(flat, val_split, seed)
        else:
            splits["train"] = flat
    classes = classes or next(iter(splits.values())).classes
    if all(len(s) == 0 for s in splits.values()):
        _wrong_modality(root, mod)
        raise DataError(f"no {mod.noun}s found under {root}", hint=f"supported: {', '.join(sorted(mod.suffixes))}")
    return DatasetSplits(root, list(classes), splits, mod.name)


def open_unlabelled(root: str | os.PathLike, modality: str, name: str = "target") -> Split:
    """Every file of `modality` under `root`, at any depth: class folders, if there are
    any, are not read as labels (domain adaptation reads the samples alone)."""
    mod = modalities.get(modality)
    root = Path(root)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DataError(f"unlabelled data folder {root} {what}",
                        hint=f"pass a folder of {mod.noun}s from the device (any layout; class folders are ignored)")
    paths = list_files(root, mod)
    if not paths:
        _wrong_modality(root, mod)
        raise DataError(f"no {mod.noun}s found under {root}",
                        hint=f"put the device's {mod.noun}s ({', '.join(sorted(mod.suffixes))}) in it, at any depth")
    return Split(name, paths, [0] * len(paths), ["unlabelled"])


def select_split(data, split: str, labels: list[str], modality: str) -> Split:
    """The split to evaluate, labelled in the model's class order. A flat folder of
    class folders is evaluated whole."""
    root = Path(data)
    splits = open_folder(root, val_split=0.0, classes=labels, modality=modality)
    if split in splits.splits:
        return splits[split]
    if not any(split_folder(root, s) for s in SPLIT_NAMES):
        return splits["train"]  # a flat folder: every file
    raise DataError(f"{root} has no '{split}' split (found: {', '.join(splits.splits)})", hint="pass --split")
