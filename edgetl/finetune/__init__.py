"""Fine-tuning: strategies, the training loop, run directories.

Attributes load lazily so that `edgetl.finetune.strategies` (used by the CLI) does not
pull in torch.
"""
from edgetl.core.lazy import lazy_attributes, make_package_callable

_LAZY = {"finetune": "job", "FinetuneSettings": "settings", "RunResult": "job", "load_run": "run",
         "STRATEGIES": "strategies"}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)


make_package_callable(__name__, "edgetl.finetune.job:finetune")
