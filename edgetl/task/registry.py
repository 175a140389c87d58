"""The task contract: what a model predicts, and everything that follows from it.

A `Task` says what a label is, how raw outputs decode into predictions (numpy, on the
device too), the metric (one primary scalar, plus details) that evaluate, bench, recipes
and the INT8 bound read, whether two models' outputs agree (the parity gate, verify),
and what predict shows. The head and the loss a task puts on a backbone's features are
built on the training side from the task's `head_kind` (finetune/model.py). Torch-free;
nothing here imports anything above the low package.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any

import numpy as np

TASKS: dict[str, Task] = {}


@dataclasses.dataclass
class Score:
    """A task's metric on a split: `value` is the one figure bounds and tables use (higher
    is better), `details` the rest (per class, a confusion matrix, ...), all plain JSON."""

    name: str
    value: float
    n: int
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Task(abc.ABC):
    name: str = ""
    metric: str = ""  # the name of Score.value, as tables and cards print it
    head_kind: str = ""  # the training side's head and loss for this task (finetune/model.py)

    @abc.abstractmethod
    def output_shape(self, labels: list[str]) -> tuple[int | None, ...]:
        """One sample's raw output shape (None: any size), what every runner's answers are checked against."""

    @abc.abstractmethod
    def check_labels(self, labels: list[str]) -> None:
        """A model card's or a data set's labels, as this task needs them (ArtifactError)."""

    @abc.abstractmethod
    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """Raw outputs of a batch -> one prediction per sample, comparable with truths."""

    @abc.abstractmethod
    def score(self, outputs: np.ndarray, truths: np.ndarray, labels: list[str]) -> Score:
        """The metric of raw outputs against the truths of the same samples."""

    @abc.abstractmethod
    def agree(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per sample, whether two models' raw outputs give the same prediction."""

    @abc.abstractmethod
    def top(self, outputs: np.ndarray, labels: list[str], k: int) -> list[list[tuple[str, float]]]:
        """What predict shows for each sample: up to `k` (label, score) pairs, best first."""


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


__all__ = ["TASKS", "Score", "Task", "register"]
