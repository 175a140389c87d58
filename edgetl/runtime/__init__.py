"""Torch-free runtime: one Runner per backend (load, infer numpy -> numpy, close).

The same Runner serves parity checks, quantization accuracy control, evaluate, bench
and predict; nothing else knows how a backend is called. `predict` (runtime/predict.py)
and the streaming `KeywordDetector` work on top of it. Importing this package must
never import torch (a test checks it); the torch backend plugs in from the training side.
Attributes load lazily: reading the Runner contract does not load every backend.
"""
from edgetl.core.lazy import lazy_attributes

_LAZY = {"BACKENDS": "backends", "BackendInfo": "backends", "open_runner": "backends", "Prediction": "predict",
         "PRECISION_HINTS": "settings", "Runner": "runner", "Detection": "streaming", "KeywordDetector": "streaming",
         "StreamingSettings": "streaming", "detect_file": "streaming", "load": "verify"}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)
