"""Classification metrics in numpy (shared by evaluate, parity and bench)."""
from __future__ import annotations

import math

import numpy as np
import numpy.typing


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def accuracy(y_true: np.typing.ArrayLike, y_pred: np.typing.ArrayLike) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class with no samples)."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def drop_interval(drop: float, disagreement: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """A 95% interval (z = 1.96) for an accuracy drop measured on `n` paired answers of two
    models, `disagreement` being the share of samples on which their answers differ (what
    can move the drop: each such sample adds +-1/n). The share is taken at the upper end
    of its Wilson interval, so 0 differences out of 341 still leave +-1.1 points: a 0.00
    drop is known only to that precision. Normal approximation of the paired difference."""
    if n <= 0:
        return float("-inf"), float("inf")
    d = min(max(disagreement, abs(drop)), 1.0)
    centre, spread = (d + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(d * (1 - d) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    upper = min(1.0, centre + spread)  # the disagreement share it may really be
    half = z * math.sqrt(max(upper - drop * drop, 0.0) / n)
    return max(drop - half, -upper), min(drop + half, upper)
