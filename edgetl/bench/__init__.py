"""Latency and accuracy of artifacts on every backend, through the Runner layer.

`edgetl.bench(...)` (this package is callable) runs the harness and returns a
BenchReport; `latency`, `memory` and `machine` are the measuring parts it is made of.
"""
import importlib

from edgetl._callable import make_package_callable

_LAZY = {"bench": "harness", "BenchReport": "report", "BenchRow": "report"}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgetl.bench.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgetl.bench' has no attribute {name!r}")


make_package_callable(__name__, "edgetl.bench.harness:bench")
