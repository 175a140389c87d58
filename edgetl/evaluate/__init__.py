"""Evaluation: accuracy of an artifact on a labelled split (`accuracy.py`) and keyword
detection on long recordings (`stream.py`), both through the Runner layer; their settings
in `settings.py`.

`edgetl.evaluate(...)` (this package is callable) evaluates an artifact on a data split.
"""
from edgetl.core.lazy import lazy_attributes, make_package_callable

_LAZY = {"evaluate": "accuracy", "EvalReport": "accuracy", "evaluate_stream": "stream"}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)


make_package_callable(__name__, "edgetl.evaluate.accuracy:evaluate")
