"""Fine-tuning: strategies, the training loop, run directories.

Attributes load lazily so that `edgetl.finetune.strategies` (used by the CLI) does not
pull in torch.
"""
import importlib

from edgetl._callable import make_package_callable

_LAZY = {"finetune": "loop", "FinetuneConfig": "loop", "RunResult": "loop", "load_run": "run",
         "STRATEGIES": "strategies"}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgetl.finetune.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgetl.finetune' has no attribute {name!r}")


make_package_callable(__name__, "edgetl.finetune.loop:finetune")
