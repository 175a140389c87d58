"""INT8 quantization calibrated on the task's own data, with a bounded accuracy drop.

`edgetl.quantize(...)` (this package is callable) quantizes an ONNX model for one target
(`job.py`: the steps, the bound); its settings are `settings.py`, one module per way of
quantizing beside them. Attributes load lazily so that reading the settings does not load
NNCF, ONNX Runtime's quantizer or torch.
"""
from edgetl.core.lazy import lazy_attributes, make_package_callable

_LAZY = {"quantize": "job", "QuantizeResult": "job", "AccuracyDropError": "job", "int8_min_agreement": "job",
         "parity_needed": "job", "DEFAULT_SUFFIX": "job", "QuantizeSettings": "settings"}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)


make_package_callable(__name__, "edgetl.quantize.job:quantize")
