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
from collections.abc import Callable, Sequence
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


@dataclasses.dataclass
class AnswerCheck:
    """One reference file on a device against its packaged answer: whether the prediction
    is the same, the largest score difference, and what differs when it fails."""

    same: bool
    diff: float
    failure: str | None = None


class Task(abc.ABC):
    name: str = ""
    metric: str = ""  # the name of Score.value, as cards and JSON record it (a run's card: val_<metric>)
    metric_title: str = ""  # how tables and READMEs head it
    head_kind: str = ""  # the training side's head and loss for this task (finetune/model.py)
    decodes: bool = False  # predictions take measurable work after the model (bench times it apart)
    # How many validation samples NNCF's accuracy control ranks each candidate layer on
    # (its default): where the metric most differs between FP32 and INT8, one model
    # compiled and scored per candidate.
    ranking_samples: int = 300
    mistakes_key: str = "mistakes"  # what evaluate's report and --json call the samples the model got wrong
    mistakes_title: str = "mistakes"  # how the report heads them
    mistakes_order: str = "worst first"  # how they are ordered, as the report says
    mistakes_columns: tuple[str, ...] = ()  # the report's columns after the picture and the file name

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
    def same(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per sample, whether two models' predictions (of `predictions`) are the same."""

    def agree(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per sample, whether two models' raw outputs give the same prediction."""
        return self.same(self.predictions(a), self.predictions(b))

    @abc.abstractmethod
    def top(self, outputs: np.ndarray, labels: list[str], k: int) -> list[list[tuple[str, float]]]:
        """Up to `k` (label, score) pairs per sample, best first."""

    def shown(self, outputs: np.ndarray, labels: list[str], k: int,
              to_photo: Sequence[Callable[[np.ndarray], np.ndarray]]) -> list[dict[str, Any]]:
        """What predict reports for each sample: `labels` and `scores` best first, and the
        task's own fields; `to_photo[i]` maps sample i's input pixels to its file's."""
        return [{"labels": [label for label, _ in pairs], "scores": [score for _, score in pairs]}
                for pairs in self.top(outputs, labels, k)]

    @abc.abstractmethod
    def mistakes(self, outputs: np.ndarray, truths: Any, labels: list[str], files: Sequence[Any],
                 to_photo: Sequence[Callable[[np.ndarray], np.ndarray]], limit: int) -> list[dict[str, Any]]:
        """The samples the model got wrong, worst first, at most `limit`: each with its `file`
        and what the evaluate report shows of it (plain JSON; boxes in the file's pixels
        through `to_photo`, which may read the file, so only the listed ones are asked)."""

    @abc.abstractmethod
    def reference_answer(self, shown: dict[str, Any], labels: list[str]) -> dict[str, Any]:
        """What a bundle records of one reference file's prediction (from `shown`, with
        every label: predict's `top_k` = the number of labels)."""

    @abc.abstractmethod
    def check_answer(self, expected: dict[str, Any], shown: dict[str, Any], labels: list[str],
                     tolerance: float) -> AnswerCheck:
        """A device's prediction of a reference file against the packaged answer, scores
        allowed to move by `tolerance` (the model precision's)."""


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


__all__ = ["TASKS", "AnswerCheck", "Score", "Task", "register"]
