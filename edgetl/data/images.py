"""Image folder data sets: the image case of edgetl.data.folders, under earlier names."""
from __future__ import annotations

import functools
from pathlib import Path

from edgetl import modality
from edgetl.data.folders import SPLIT_NAMES, DatasetSplits, Split, open_folder
from edgetl.modality import decode_split

ImageFolder = Split
open_image_folder = functools.partial(open_folder, modality="image")
decode_images = decode_split


def list_images(folder: Path) -> list[Path]:
    return modality.list_files(folder, modality.get("image"))


__all__ = ["SPLIT_NAMES", "DatasetSplits", "ImageFolder", "decode_images", "list_images", "open_image_folder"]
