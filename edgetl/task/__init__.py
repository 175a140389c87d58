"""One seam per task: what a model predicts (labels, keyword events, boxes).

A task (registry.py) says what a label is, how raw outputs decode, the metric that
evaluate, bench, recipes and the INT8 bound read, when two models agree, and what predict
shows. Stages talk to this interface, so a new task is one module and one `register`
call (and its head on the training side). The card records the task. Torch-free.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from edgetl.core.errors import ArtifactError
from edgetl.task.registry import TASKS, Score, Task, register

if TYPE_CHECKING:
    from edgetl.core.card import ModelCard

_BUILT_IN = {"classification": "edgetl.task.classification", "keywords": "edgetl.task.keywords",
             "detection": "edgetl.task.detection"}


def get(name: str) -> Task:
    if name not in TASKS and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])  # registers on import
    if name not in TASKS:
        raise ArtifactError(f"unknown task {name!r}", hint=f"edgetl knows {', '.join(names())}; upgrade edgetl if the "
                                                           "model was made by a newer one")
    return TASKS[name]


def names() -> list[str]:
    return sorted({*_BUILT_IN, *TASKS})


def task_of(card: ModelCard) -> Task:
    """The task a card records (cards written before the field: classification)."""
    return get(getattr(card, "task", None) or "classification")


__all__ = ["Score", "Task", "get", "names", "register", "task_of"]
