"""Latency and accuracy of artifacts on every backend, through the Runner layer.

`edgetl.bench(...)` (this package is callable) runs the harness and returns a
BenchReport; `latency`, `memory` and `machine` are the measuring parts it is made of.
"""
from edgetl.core.lazy import lazy_attributes, make_package_callable

_LAZY = {"bench": "harness", "BenchReport": "report", "BenchRow": "report"}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)


make_package_callable(__name__, "edgetl.bench.harness:bench")
