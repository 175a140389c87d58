"""Accuracy of any artifact on a data split, through the Runner layer (torch-free)."""
from __future__ import annotations

import dataclasses

import numpy as np

from edgetl.core import progress
from edgetl.data.folders import select_split
from edgetl.data.sample_cache import cached_split
from edgetl.evaluate.settings import EvaluateSettings
from edgetl.modality import Preprocessing, preprocessing_of
from edgetl.runtime import Runner, open_runner
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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


def evaluate(artifact, data, settings: EvaluateSettings | None = None, **options) -> EvalReport:
    """Accuracy, per-class accuracy and confusion matrix of `artifact` on a split of
    `data`. `settings` (or its fields as keyword options): EvaluateSettings."""
    s = EvaluateSettings.of(settings, **options)
    split, batch_size = s.split, s.batch_size
    with open_runner(artifact, backend=s.backend, device=s.device, threads=s.threads,
                     precision_hint=s.precision_hint) as runner:
        card = runner.card
        folder = select_split(data, split, card.labels, card.modality)
        pre = preprocessing_of(card)
        cached, labels = cached_split(folder, pre)  # read a batch at a time
        logits = predict_logits(runner, cached, pre, batch_size)
    score = task_of(card).score(logits, labels, list(card.labels))
    return EvalReport(
        accuracy=score.value, n=score.n, backend=runner.backend, artifact=str(artifact),
        split=folder.name, labels=list(card.labels), per_class=score.details["per_class"],
        confusion=score.details["confusion"], skipped=len(folder) - int(len(labels)),
        inference_precision=runner.inference_precision,
    )
