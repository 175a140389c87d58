"""The parity gate: does an artifact compute what the PyTorch model computes?

Compared on real validation samples of the run (never random tensors), at batch 1 and
at a larger batch: max absolute error (also relative to the reference logit range),
mean cosine similarity of the logits, top-1 agreement, and the accuracy of both. Every
artifact is checked before one error names all that failed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgetl.core.card import ModelCard
from edgetl.core.errors import ArtifactError, DataError
from edgetl.data.folders import select_split
from edgetl.modality import decode_split, preprocessing_of
from edgetl.runtime import Runner
from edgetl.task import task_of


class ParityError(ArtifactError):
    """An artifact that does not reproduce the reference model within tolerance."""


@dataclasses.dataclass(frozen=True)
class Tolerance:
    rel_max_abs: float = 1e-3  # max |a - b| / (reference logit range)
    min_agreement: float = 1.0  # top-1 agreement

    @classmethod
    def for_precision(cls, precision: str, rel_max_abs: float | None = None) -> Tolerance:
        # INT8 is judged on agreement only: it is meant to differ in the logits, and its
        # accuracy bound (--max-drop) is checked on the whole validation split.
        base = {"fp32": cls(), "fp16": cls(2e-2, 0.99)}.get(precision, cls(float("inf"), 0.90))
        return dataclasses.replace(base, rel_max_abs=rel_max_abs) if rel_max_abs is not None else base


@dataclasses.dataclass
class ParityResult:
    artifact: str
    backend: str
    precision: str
    n: int
    max_abs: float
    rel_max_abs: float
    cosine: float
    agreement: float
    accuracy: float
    reference_accuracy: float
    failures: list[str]
    inference_precision: str = "f32"  # what the backend computed the float operations in
    task: str = "classification"  # what `accuracy` and `agreement` are measured as

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "passed": self.passed}


def parity_inputs(card: ModelCard, data=None, limit: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` real validation samples of the run, preprocessed as deployed."""
    source = data or card.source.get("data")
    if not source or not Path(source).exists():
        raise DataError(f"the run's data set ({source}) is not available for the parity check",
                        hint="pass --data DIR with the validation data")
    if card.task == "detection":  # photos with boxes (data/labelled.py)
        from edgetl.data.labelled import labelled_split, take

        split = labelled_split(source, "val", card)
        cached, truths = take(split, np.arange(0, len(split), max(1, len(split) // limit))[:limit])
        return preprocessing_of(card).normalize(np.asarray(cached)), truths
    folder = select_split(source, "val", card.labels, card.modality)
    step = max(1, len(folder) // limit)
    folder = folder.subset(list(range(0, len(folder), step))[:limit])
    pre = preprocessing_of(card)
    cached, labels = decode_split(folder, pre)
    return pre.normalize(cached), labels


def compare(reference: np.ndarray, runner: Runner, x: np.ndarray, labels: np.ndarray, tolerance: Tolerance,
            batch: int = 16, single_samples: int = 8) -> ParityResult:
    """Run `x` at `batch`, and its first `single_samples` one by one; the worst of both counts."""
    got = runner.infer_all(x, batch, finite=False)  # NaN is one of the failures reported below
    single = runner.infer_all(x[:single_samples], 1, finite=False) if single_samples else got[:0]
    max_abs = float(max(np.abs(got - reference).max(), np.abs(single - reference[:len(single)]).max(initial=0.0)))
    span = float(reference.max() - reference.min()) or 1.0  # NaN when the reference is: then the gate fails
    flat_got, flat_ref = _rows(got), _rows(reference)  # a detector's outputs too
    cos = float(np.mean(np.sum(flat_got * flat_ref, 1) /
                        (np.linalg.norm(flat_got, axis=1) * np.linalg.norm(flat_ref, axis=1) + 1e-12)))
    task, labels_of = task_of(runner.card), runner.card.labels
    agreement = float(task.agree(got, reference).mean())
    worst_agreement = min(agreement, float(task.agree(single, reference[:len(single)]).mean())
                          if len(single) else agreement)
    failures = []
    if not np.isfinite(reference).all():
        failures.append("the reference model itself outputs NaN or infinite values (a diverged run?)")
    bad = int((~np.isfinite(flat_got)).any(1).sum() + (~np.isfinite(_rows(single))).any(1).sum())
    if bad:
        failures.append(f"NaN or infinite outputs for {bad} sample(s)")
    if not max_abs / span <= tolerance.rel_max_abs:  # written so that NaN fails too
        failures.append(f"max-abs {max_abs:.3g} is {max_abs / span:.2%} of the logit range "
                        f"(allowed {tolerance.rel_max_abs:.2%})")
    if not worst_agreement >= tolerance.min_agreement:
        failures.append(f"top-1 agreement {worst_agreement:.2%} (needed {tolerance.min_agreement:.0%})")
    return ParityResult(str(runner.path), runner.backend, runner.card.precision, len(x), max_abs, max_abs / span, cos,
                        agreement, task.score(got, labels, labels_of).value,
                        task.score(reference, labels, labels_of).value, failures, runner.inference_precision, task.name)


def _rows(a: np.ndarray) -> np.ndarray:
    """One row per sample, whatever a sample's output shape (none: zero rows)."""
    return a.reshape(len(a), int(np.prod(a.shape[1:])))


# What fixes a failed gate depends on why the artifact differs.
_REMEDIES = {
    "int8": "INT8 changed too many answers: bound the loss with --max-drop (layers fall back to float), keep a "
            "layer in float with --ignore, calibrate on more representative data (--calib, --samples), or "
            "fine-tune with --qat (openvino)",
    "fp16": "FP16 weights round the logits: export without --fp16, or loosen with --atol if this is expected",
    "reduced": "the backend computed in {precision}, not f32: leave --precision-hint at f32 for exact results",
    "fp32": "an FP32 artifact should match to rounding: loosen with --atol only if the backend's kernels are "
            "known to differ, otherwise report the model",
}


def remedy(result: ParityResult) -> str:
    if any("reference model itself" in f for f in result.failures):
        return "the run's own model computes NaN: train it again with a smaller --lr"
    if any("NaN" in f for f in result.failures):
        return "the backend computes NaN where PyTorch does not: report the model with its card"
    if result.precision in ("int8", "fp16"):
        return _REMEDIES[result.precision]
    if result.inference_precision not in ("f32", "device default"):
        return _REMEDIES["reduced"].format(precision=result.inference_precision)
    return _REMEDIES["fp32"]


def raise_on_failures(results: list[ParityResult]) -> None:
    failed = [r for r in results if not r.passed]
    if failed:
        detail = "; ".join(f"{Path(r.artifact).name} on {r.backend}: {', '.join(r.failures)}" for r in failed)
        raise ParityError(f"parity check failed for {detail}", hint="; ".join(dict.fromkeys(map(remedy, failed))))


def headings(task_name: str) -> tuple[str, str]:
    """How tables head a task's metric and its agreement: ("acc", "top-1 agree") for a
    classifier, ("mAP", "same objects") for a detector."""
    from edgetl.task import get

    task = get(task_name)
    return ("acc", "top-1 agree") if task.metric == "accuracy" else (task.metric_title, "same objects")


def print_table(results: list[ParityResult]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgetl.core.progress import print_table as show

    metric, agree = headings(results[0].task if results else "classification")
    table = Table(title="parity vs PyTorch (real validation samples)", title_justify="left")
    for col in ("artifact", "backend", "precision", "runs in", "n", "max-abs", "rel", "cosine", agree, metric,
                f"ref {metric}", "ok"):
        table.add_column(col, justify="left" if col in ("artifact", "backend", "precision", "runs in") else "right")
    for r in results:
        table.add_row(escape(Path(r.artifact).name), r.backend, r.precision, r.inference_precision, str(r.n), f"{r.max_abs:.2e}",
                      f"{r.rel_max_abs:.1e}", f"{r.cosine:.6f}", f"{r.agreement:.2%}", f"{r.accuracy:.4f}",
                      f"{r.reference_accuracy:.4f}", "[green]yes[/]" if r.passed else "[red]NO[/]")
    show(table, stderr=True)
