"""Fine-tuning: strategies, the training loop, run directories."""
from edgetl.finetune.loop import FinetuneConfig, RunResult, finetune
from edgetl.finetune.run import load_run
from edgetl.finetune.strategies import STRATEGIES

__all__ = ["FinetuneConfig", "RunResult", "finetune", "load_run", "STRATEGIES"]
