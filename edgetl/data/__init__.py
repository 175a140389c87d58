"""Data sets: image folders (train/val[/test] or flat with a validation split),
built-in data sets and the decoded-image cache used for training and evaluation."""
from edgetl.data.images import DatasetSplits, ImageFolder, decode_images, open_image_folder

__all__ = ["DatasetSplits", "ImageFolder", "decode_images", "open_image_folder"]
