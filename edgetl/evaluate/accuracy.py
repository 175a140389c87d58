"""Accuracy of any artifact on a data split, through the Runner layer (torch-free)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from edgetl.core import progress
from edgetl.core.outputs import check_output
from edgetl.data.labelled import labelled_split
from edgetl.evaluate.settings import EvaluateSettings
from edgetl.modality import Preprocessing, preprocessing_of, to_photo
from edgetl.runtime import Runner, open_runner
from edgetl.task import get as task_of_name
from edgetl.task import task_of


@dataclasses.dataclass
class EvalReport:
    accuracy: float
    n: int
    backend: str
    artifact: str
    split: str
    labels: list[str]
    per_class: dict[str, float]
    confusion: list[list[int]]
    skipped: int = 0
    inference_precision: str = "f32"  # what the backend computed the float operations in
    classes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # precision, recall, F1, support
    top_k: dict[str, float] = dataclasses.field(default_factory=dict)  # accuracy within the k best labels
    # the samples the model got wrong, worst first, as the task lists them (Task.mistakes):
    # a classifier's misclassified files, a detector's images with the most errors
    mistakes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    task: str = "classification"
    metric: str = "accuracy"  # what `accuracy` holds: the task's primary figure (a detector's: mAP@0.5:0.95)
    map50: float | None = None  # detectors
    pr_curves: dict[str, Any] = dataclasses.field(default_factory=dict)  # detectors: precision per recall at IoU 0.5, per class

    @property
    def misclassified(self) -> list[dict[str, Any]]:
        return self.mistakes

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out[task_of_name(self.task).mistakes_key] = out.pop("mistakes")  # "misclassified", "worst_images"
        out[self.metric] = self.accuracy  # the primary figure under its own name too (a detector's "map")
        return out


def predict_logits(runner: Runner, cached: np.ndarray, pre: Preprocessing, batch_size: int = 64) -> np.ndarray:
    """Logits for a decoded split, preprocessed exactly as at deployment."""
    out = []
    with progress.progress_bar() as bar:
        task = bar.add_task(f"{runner.backend}", total=len(cached), status="")
        for start in range(0, len(cached), batch_size):
            chunk = cached[start:start + batch_size]
            out.append(runner.infer_all(pre.normalize(chunk), batch_size))  # checked, padded for static batches
            bar.advance(task, len(chunk))
    return np.concatenate(out) if out else np.zeros((0, len(runner.card.labels)), np.float32)


def evaluate(artifact: str | Path, data: str | Path, settings: EvaluateSettings | None = None,
             **options: Any) -> EvalReport:
    """Accuracy, per-class figures, top-k accuracy, the confusion matrix and the
    samples `artifact` got wrong on a split of `data` (with `report`, also as an HTML
    report folder). `settings` (or its fields as keyword options): EvaluateSettings."""
    s = EvaluateSettings.of(settings, **options)
    split, batch_size = s.split, s.batch_size
    if s.report:  # before the work: a folder that is not ours is refused now, not after it
        from edgetl.evaluate.report import REPORT_DIR

        check_output(s.report, REPORT_DIR, overwrite=True, inputs={"data set": data, "artifact": artifact})
    with open_runner(artifact, backend=s.backend, device=s.device, threads=s.threads,
                     precision_hint=s.precision_hint) as runner:
        card = runner.card
        labelled = labelled_split(data, split, card)  # decoded once into the cache, read a batch at a time
        logits = predict_logits(runner, labelled.cached, preprocessing_of(card), batch_size)
    task = task_of(card)
    score = task.score(logits, labelled.truths, list(card.labels))
    report = EvalReport(
        accuracy=score.value, n=score.n, backend=runner.backend, artifact=str(artifact),
        split=labelled.name, labels=list(card.labels), per_class=score.details["per_class"],
        confusion=score.details.get("confusion", []), skipped=labelled.skipped,
        inference_precision=runner.inference_precision, classes=score.details.get("classes", {}),
        top_k=score.details.get("top_k", {}), task=task.name, metric=task.metric,
        map50=score.details.get("map50"), pr_curves=score.details.get("pr_curves", {}),
        mistakes=task.mistakes(logits, labelled.truths, list(card.labels), labelled.cached.files,
                               _PhotoPlaces(labelled.cached.files, preprocessing_of(card)), MISTAKES),
    )
    if s.report:
        from edgetl.evaluate.report import write_report

        write_report(report, s.report, card.modality, overwrite=True)
    return report


MISTAKES = 1000  # listed in the report (and --json), worst first


class _PhotoPlaces(Sequence[Callable[[np.ndarray], np.ndarray]]):
    """Per sample, its input pixels -> its file's (the letterbox or crop undone), the
    file's size read from its header when a task asks (only for the samples it lists)."""

    def __init__(self, files: list[str], pre: Preprocessing):
        self.files, self.pre = files, pre

    def __len__(self) -> int:
        return len(self.files)

    @overload
    def __getitem__(self, i: int) -> Callable[[np.ndarray], np.ndarray]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Callable[[np.ndarray], np.ndarray]]: ...

    def __getitem__(self, i: int | slice) -> Any:
        from edgetl.modality.image import photo_size

        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        size: tuple[int, int] | None

        try:
            size = photo_size(self.files[i])
        except Exception:  # gone since it was decoded: its boxes stay in input pixels
            size = None
        return to_photo(self.pre, size)
