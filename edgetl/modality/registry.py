"""What a modality is (its suffixes, folders, preprocessing class), the Preprocessing
contract, and the table modalities register into. The modality modules (image.py,
audio.py) build on this module alone; `edgetl.modality` looks modalities up by name."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgetl.core.errors import ArtifactError


class Preprocessing(Protocol):
    """What a modality's preprocessing offers (see modality/image.py for one)."""

    kind: str
    cache_shape: tuple[int, ...]  # one decoded sample as cached for a split
    cache_dtype: Any

    def read(self, path: str | Path) -> Any: ...  # decode one file; DataError when unreadable
    def prepare(self, decoded: Any) -> np.ndarray: ...  # decoded file -> the cached sample
    def normalize(self, cached: np.ndarray) -> np.ndarray: ...  # cached batch -> float32 model input
    def __call__(self, path: str | Path) -> np.ndarray: ...  # one file -> one model input
    def input_spec(self) -> dict[str, Any]: ...  # what the card records as "input"
    def dummy_input(self, batch: int) -> np.ndarray: ...  # for export and tracing
    def with_size(self, size: int) -> Preprocessing: ...  # --input-size (ConfigError where it means nothing)
    def to_dict(self) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Modality:
    name: str
    suffixes: frozenset[str]
    noun: str  # "image", "audio clip": for messages
    skipped_as: str  # how skipped files are described, e.g. "unreadable or too large image(s)"
    preprocessing: Any  # a Preprocessing class: from_dict(card.preprocessing)
    reserved_folders: frozenset[str] = frozenset()  # folders of a data set that are not classes


MODALITIES: dict[str, Modality] = {}


def register(modality: Modality) -> Modality:
    MODALITIES[modality.name] = modality
    return modality


def invalid_preprocessing(spec: dict[str, Any], exc: Exception | None = None) -> ArtifactError:
    """The error for a card whose preprocessing cannot be applied."""
    why = f" ({type(exc).__name__}: {exc})" if exc else ""
    return ArtifactError(f"the model card's preprocessing is invalid{why}: {spec}",
                         hint="export the model again with `edgetl export`; cards are not meant to be edited by hand")


def dummy_input(spec: dict[str, Any], batch: int) -> np.ndarray:
    """Zeros shaped as an input spec (a card's "input"), `batch` for its dynamic axis."""
    return np.zeros([batch if d is None else int(d) for d in spec["shape"]], spec.get("dtype", "float32"))
