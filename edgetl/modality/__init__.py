"""One seam per input modality: everything that differs between images and audio.

A `Modality` names its file suffixes, the folders of a data set that are not classes,
and its preprocessing class. The preprocessing (recorded in the card) reads one file,
turns it into the model input exactly as every runtime does, says what is worth caching
for a whole split, the input spec the card records and a dummy input for export. Data
sets, evaluation, parity, quantization, bench and the training loop only talk to this
interface, so a third modality is one module and one `register` call (and its training
transform, chosen by name on the training side: finetune/inputs.py). Torch-free, and
nothing here imports anything above it.
"""
from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.core.errors import ArtifactError, DataError
from edgetl.modality.registry import MODALITIES, Modality, Preprocessing, dummy_input, invalid_preprocessing, register

if TYPE_CHECKING:
    from edgetl.core.card import ModelCard

log = logging.getLogger("edgetl")


_BUILT_IN = {"image": "edgetl.modality.image", "audio": "edgetl.modality.audio"}


def get(name: str) -> Modality:
    if name not in MODALITIES and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])  # registers on import
    if name not in MODALITIES:
        raise ArtifactError(f"unknown modality {name!r}",
                            hint=f"edgetl knows {', '.join(sorted({*_BUILT_IN, *MODALITIES}))}; "
                                 "upgrade edgetl if the model was made by a newer one")
    return MODALITIES[name]


def names() -> list[str]:
    return sorted({*_BUILT_IN, *MODALITIES})


def claiming(suffixes: set[str], besides: str) -> Modality | None:
    """The first modality other than `besides` whose files have one of `suffixes`."""
    return next((get(n) for n in names() if n != besides and set(suffixes) & get(n).suffixes), None)


def preprocessing_of(card: ModelCard) -> Preprocessing:
    """The card's preprocessing, as the runtime applies it."""
    pre: Preprocessing = get(card.modality).preprocessing.from_dict(card.preprocessing)
    return pre


def to_photo(preprocessing: Preprocessing, size: tuple[int, int] | None) -> Callable[[np.ndarray], np.ndarray]:
    """Boxes in the model input's pixels -> the pixels of a file of `size` (width, height):
    an image's letterbox undone; the boxes unchanged where the preprocessing has none or the
    size is not known."""
    undo = getattr(preprocessing, "boxes_to_original", None)
    if undo is None or size is None:
        return lambda boxes: boxes
    return lambda boxes: np.asarray(undo(boxes, *size))


def list_files(folder: Path, modality: Modality) -> list[Path]:
    """Every file of the modality under `folder` (any case of suffix, no hidden files)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in modality.suffixes
                  and not p.name.startswith(".") and not set(p.relative_to(folder).parts[:-1]) & modality.reserved_folders)


def summarize(paths: Sequence[Path], limit: int = 5) -> str:
    names_ = ", ".join(str(p) for p in paths[:limit])
    return names_ + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def decode_into(paths: Sequence[Path], preprocessing: Preprocessing, out: np.ndarray, workers: int | None = None,
                progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[str]]:
    """Read and prepare each file of `paths` into the rows of `out` (an array or a memory
    map of at least len(paths) rows), readable files first in order: (which files were
    kept, why the others were not). Files are decoded a few at a time, so memory holds
    `workers` samples besides `out`."""
    workers = workers or min(16, (os.cpu_count() or 2) * 2)
    reasons: list[str] = []

    def work(path: Path) -> np.ndarray | None:
        try:
            return preprocessing.prepare(preprocessing.read(path))
        except DataError as exc:
            reasons.append(exc.message)
            return None

    keep = np.ones(len(paths), bool)
    row = 0
    window = 4 * workers  # files in flight: pool.map over every path at once would hold every decoded sample
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), window):
            for i, sample in enumerate(pool.map(work, paths[start:start + window]), start):
                if sample is None:
                    keep[i] = False
                else:
                    out[row] = sample
                    row += 1
                if progress:
                    progress(1)
    return keep, reasons


def decoded_labels(folder: Any, keep: np.ndarray, reasons: list[str], noun: str, skipped_as: str) -> np.ndarray:
    """The labels of a split's readable files; one warning names the skipped ones, and a
    training split that loses every file of a class (or a split that loses all) is an error."""
    skipped = [p for p, k in zip(folder.paths, keep) if not k]
    if skipped:
        log.warning("skipped %d %s in %s: %s (e.g. %s)", len(skipped), skipped_as, folder.name,
                    summarize(skipped), reasons[0] if reasons else "unreadable")
    labels: np.ndarray = np.asarray(folder.labels, np.int64)[keep]
    if folder.name == "train":
        present, kept = set(folder.labels), set(labels.tolist())
        lost = [c for i, c in enumerate(folder.classes) if i in present and i not in kept]
        if lost:
            raise DataError(f"no readable {noun}s left for class(es) {', '.join(lost)} in {folder.name}",
                            hint="replace the unreadable files named in the warning above")
    if len(labels) == 0:
        raise DataError(f"no readable {noun}s in the {folder.name} split",
                        hint="replace the unreadable files named in the warning above")
    return labels


def decode_split(folder: Any, preprocessing: Preprocessing, workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read and prepare every file of a split once, in memory: (cached samples, int64
    labels). Unreadable files are skipped with one warning that names them. A whole
    data set goes through the cache on disk instead (data/sample_cache.py)."""
    modality = get(preprocessing.kind)
    out = np.zeros((len(folder), *preprocessing.cache_shape), preprocessing.cache_dtype)
    keep, reasons = decode_into(folder.paths, preprocessing, out, workers, progress)
    labels = decoded_labels(folder, keep, reasons, modality.noun, modality.skipped_as)
    return out[:len(labels)], labels


__all__ = ["Modality", "Preprocessing", "decode_into", "decode_split", "decoded_labels",
           "dummy_input", "get", "invalid_preprocessing", "list_files", "names",
           "preprocessing_of", "register", "summarize", "to_photo"]
