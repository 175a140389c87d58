"""Torch-free runtime: one Runner per backend (load, infer numpy -> numpy, close).

The same Runner serves parity checks, quantization accuracy control, evaluate, bench
and predict; nothing else knows how a backend is called. Importing this package must
never import torch (a test checks it); the torch backend imports it lazily.
"""
from edgetl.runtime.base import BACKENDS, PRECISION_HINTS, BackendInfo, Runner, open_runner

__all__ = ["BACKENDS", "PRECISION_HINTS", "BackendInfo", "Runner", "open_runner"]
