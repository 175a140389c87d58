"""Fine-tuning: strategies, the training loop, run directories.

Attributes load lazily so that `edgetl.finetune.strategies` (used by the CLI) does not
pull in torch.
"""
import importlib
import sys
import types

_LAZY = {"finetune": "loop", "FinetuneConfig": "loop", "RunResult": "loop", "load_run": "run",
         "STRATEGIES": "strategies"}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgetl.finetune.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgetl.finetune' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """`edgetl.finetune` names both this package and the public function; importing the
    package replaces the function attribute on `edgetl`, so the package is callable."""

    def __call__(self, *args, **kwargs):
        from edgetl.finetune.loop import finetune

        return finetune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
