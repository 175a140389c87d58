"""Classification: one label per sample (an image, an audio clip). Outputs are logits,
one per label; the prediction is the highest, the metric top-1 accuracy with per-class
recall and the confusion matrix, two models agree where their top-1 labels are the same,
and predict shows the top-k labels with softmax probabilities."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError
from edgetl.core.metrics import accuracy, confusion_matrix, per_class_accuracy
from edgetl.task.registry import AnswerCheck, Score, Task, register


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of a batch of logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


def _plain(value: float | np.floating | None) -> float | None:
    return None if value is None else float(value)


class Classification(Task):
    name = "classification"
    metric = "accuracy"
    metric_title = "accuracy"
    head_kind = "linear"
    mistakes_key = "misclassified"
    mistakes_title = "Misclassified"
    mistakes_order = "most confident first"
    mistakes_columns = ("true", "predicted", "top scores")

    def output_shape(self, labels: list[str]) -> tuple[int | None, ...]:
        return (len(labels),)  # one score per label

    def check_labels(self, labels: list[str]) -> None:
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ArtifactError(f"a classifier needs at least two distinct labels, got {labels}",
                                hint="a data set needs at least two class folders")

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        labels: np.ndarray = np.asarray(outputs).argmax(axis=1)
        return labels

    def score(self, outputs: np.ndarray, truths: np.ndarray, labels: list[str]) -> Score:
        """Top-1 accuracy; details: each class's recall (`per_class`), precision, recall, F1
        and support (`classes`), top-k accuracy for k of 2, 3 and 5 below the number of
        labels (`top_k`), and the confusion matrix (rows: true, columns: predicted)."""
        outputs, truths = np.asarray(outputs), np.asarray(truths, np.int64)
        preds = self.predictions(outputs) if len(outputs) else np.zeros(0, np.int64)
        cm = confusion_matrix(truths, preds, len(labels))
        recall = per_class_accuracy(cm)
        predicted, support = cm.sum(axis=0), cm.sum(axis=1)
        classes = {}
        for i, c in enumerate(labels):
            p = cm[i, i] / predicted[i] if predicted[i] else None
            r = cm[i, i] / support[i] if support[i] else None
            f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
            classes[c] = {"precision": _plain(p), "recall": _plain(r), "f1": _plain(f1), "support": int(support[i])}
        ranks = (outputs > outputs[np.arange(len(truths)), truths][:, None]).sum(axis=1) if len(truths) else truths
        top_k = {str(k): float((ranks < k).mean()) if len(truths) else float("nan")
                 for k in (2, 3, 5) if k < len(labels)}
        return Score(self.metric, accuracy(truths, preds), int(len(truths)), {
            "per_class": {c: (None if np.isnan(r) else float(r)) for c, r in zip(labels, recall)},
            "classes": classes, "top_k": top_k, "confusion": cm.tolist()})

    def same(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        same: np.ndarray = np.asarray(a) == np.asarray(b)
        return same

    def top(self, outputs: np.ndarray, labels: list[str], k: int) -> list[list[tuple[str, float]]]:
        probs = softmax(np.asarray(outputs, np.float64))
        k = min(k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(labels[i], float(p[i])) for i in row] for p, row in zip(probs, order)]

    def mistakes(self, outputs: np.ndarray, truths: Any, labels: list[str], files: Sequence[Any],
                 to_photo: Sequence[Callable[[np.ndarray], np.ndarray]], limit: int) -> list[dict[str, Any]]:
        """The misclassified samples, the most confident mistakes first: the file, the true
        and the predicted label, and the best scores (what predict would show)."""
        truths = np.asarray(truths, np.int64)
        wrong = np.flatnonzero(self.predictions(outputs) != truths) if len(truths) else np.zeros(0, np.int64)
        if not len(wrong):
            return []
        shown = self.top(np.asarray(outputs)[wrong], labels, k=3)
        order = sorted(range(len(wrong)), key=lambda i: -shown[i][0][1])[:limit]
        return [{"file": str(files[wrong[i]]) if wrong[i] < len(files) else None, "true": labels[truths[wrong[i]]],
                 "predicted": shown[i][0][0], "top": [[label, round(p, 4)] for label, p in shown[i]]} for i in order]

    def reference_answer(self, shown: dict[str, Any], labels: list[str]) -> dict[str, Any]:
        """The top-1 label and every label's probability, in the card's label order."""
        scores = dict(zip(shown["labels"], shown["scores"]))
        return {"label": shown["labels"][0], "scores": [float(np.float32(scores[label])) for label in labels]}

    def check_answer(self, expected: dict[str, Any], shown: dict[str, Any], labels: list[str],
                     tolerance: float) -> AnswerCheck:
        """The same top-1 label (unless the packaged answer was within the tolerance of a
        tie) and every probability within the tolerance."""
        scores = dict(zip(shown["labels"], shown["scores"]))
        packaged = dict(zip(labels, expected["scores"]))
        diff = max(abs(scores[label] - s) for label, s in packaged.items())
        ranked = sorted(packaged.values(), reverse=True)
        near_tie = len(ranked) > 1 and ranked[0] - ranked[1] <= tolerance
        top = shown["labels"][0]
        same = top == expected["label"]
        if not same and not near_tie:
            return AnswerCheck(same, diff, f"{top} ({scores[top]:.3f}), packaged as {expected['label']} "
                                           f"({max(packaged.values()):.3f})")
        if diff > tolerance:
            return AnswerCheck(same, diff, f"a score moved by {diff:.4f} (tolerance {tolerance:g})")
        return AnswerCheck(same, diff)


CLASSIFICATION = register(Classification())

__all__ = ["CLASSIFICATION", "Classification", "softmax"]
