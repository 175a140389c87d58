"""Data sets: folders of any modality (train/val[/test] or flat with a validation split),
built-in data sets; splits are decoded once through edgetl.modality, into the sample cache on disk
(sample_cache.py). The data commands' settings are settings.py. Attributes load lazily."""
from edgetl.core.lazy import lazy_attributes

_LAZY = {"DatasetSplits": "folders", "Split": "folders", "open_folder": "folders", "open_unlabelled": "folders",
         "select_split": "folders"}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)
