"""Data sets: folders of any modality (train/val[/test] or flat with a validation split),
built-in data sets; splits are decoded once through edgetl.modality.decode_split."""
from edgetl.data.folders import DatasetSplits, Split, open_folder
from edgetl.data.images import ImageFolder, decode_images, open_image_folder

__all__ = ["DatasetSplits", "ImageFolder", "Split", "decode_images", "open_folder", "open_image_folder"]
