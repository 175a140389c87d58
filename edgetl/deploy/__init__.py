"""Deployment: a run as a bundle (`package.py`), and on the NVIDIA device a TensorRT
engine built from the bundle's or any ONNX model and kept in the engine cache
(`tensorrt_engine.py`); their settings in `settings.py`.
"""
from edgetl.core.lazy import lazy_attributes

_LAZY = {"package": "package", "build_engine": "tensorrt_engine", "bundle_engine": "tensorrt_engine",
         "verify_on_device": "tensorrt_engine"}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)
