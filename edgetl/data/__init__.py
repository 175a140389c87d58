"""Data sets: folders of any modality (train/val[/test] or flat with a validation split),
built-in data sets; splits are decoded once through edgetl.modality, into the sample cache on disk
(sample_cache.py)."""
from edgetl.data.folders import DatasetSplits, Split, open_folder, open_unlabelled, select_split

__all__ = ["DatasetSplits", "Split", "open_folder", "open_unlabelled", "select_split"]
