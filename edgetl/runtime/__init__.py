"""Torch-free runtime: one Runner per backend (load, infer numpy -> numpy, close).

The same Runner serves parity checks, quantization accuracy control, evaluate, bench
and predict; nothing else knows how a backend is called. `predict` and the streaming
`KeywordDetector` work on top of it. Importing this package must
never import torch (a test checks it); the torch backend plugs in from the training side.
"""
from edgetl.runtime.backends import BACKENDS, BackendInfo, open_runner
from edgetl.runtime.predict import Prediction, predict
from edgetl.runtime.runner import PRECISION_HINTS, Runner
from edgetl.runtime.streaming import Detection, KeywordDetector, StreamingSettings, detect_file
from edgetl.runtime.verify import load

__all__ = ["BACKENDS", "PRECISION_HINTS", "BackendInfo", "Detection", "KeywordDetector", "Prediction", "Runner",
           "StreamingSettings", "detect_file", "load", "open_runner", "predict"]
