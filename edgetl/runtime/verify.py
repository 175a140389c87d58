"""Checking a bundle on the device it runs on: every checksum, then its reference files
through each target this machine can run, compared with what each target answered when
it was packaged. `load` opens any artifact, a bundle checked first when asked. Torch-free.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgetl.core.errors import ArtifactError
from edgetl.runtime.artifacts import kind_of, read_card
from edgetl.runtime.backends import open_runner
from edgetl.runtime.bundle import TOLERANCE, Bundle
from edgetl.runtime.measured import p50_ms, record
from edgetl.runtime.predict import Prediction, predict
from edgetl.runtime.runner import Runner
from edgetl.runtime.targets import choose, cpu_warning, model_for, target_problem
from edgetl.task import Task, task_of


@dataclasses.dataclass
class TargetCheck:
    target: str
    backend: str
    precision: str
    n: int
    agreement: float  # share of reference files with the packaged prediction (top-1 label, objects)
    max_score_diff: float
    tolerance: float
    failures: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)  # how it ran, when not as packaged
    skipped: str | None = None  # why this machine cannot run it
    p50_ms: float | None = None  # batch 1 on its own backend here (not for a model only emulated here)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def verify(path: str | Path, backend: str | None = None, threads: int | None = None) -> list[TargetCheck]:
    """Check every checksum, then run the reference files through each target this
    machine can run (or only `backend`) and compare with the packaged answers as the
    model's task does (a classifier: the same top-1 label unless the packaged answer was
    within the tolerance of a tie; a detector: the same objects), every score within the
    tolerance of the model's precision."""
    bundle = Bundle.open(path)
    bundle.check_checksums()
    if backend and backend != "auto":
        targets, checks = [choose(bundle, backend)], []
    else:  # a TensorRT target without TensorRT still checks its QDQ model in ONNX Runtime
        problems = {t: target_problem(bundle, t) for t in bundle.targets}
        targets = [t for t, p in problems.items() if p is None or t == "tensorrt"]
        checks = [TargetCheck(t, "", bundle.targets[t].precision, 0, 0.0, 0.0, 0.0, [], skipped=p)
                  for t, p in problems.items() if t not in targets]
    task = task_of(bundle.card)
    for target in targets:
        expected = bundle.expected(target)
        model, loads_with = model_for(bundle, target)
        if target == "tensorrt":
            notes = [] if loads_with == "tensorrt" else [f"its QDQ model in ONNX Runtime: {target_problem(bundle, target)}"]
        else:
            notes = [n for n in [cpu_warning(read_card(model).source)] if n]
        files = [bundle.root / e["file"] for e in expected["answers"]]
        got = predict(model, files, backend=loads_with, top_k=len(expected["labels"]), threads=threads)
        tolerance = TOLERANCE.get(expected["precision"], TOLERANCE["int8"])
        failures, diffs, same = [], [], 0
        for answer, result in zip(expected["answers"], got):
            if not result.ok:
                failures.append(f"{answer['file']}: {result.error}")
                continue
            check = task.check_answer(answer, result.to_dict(), expected["labels"], tolerance)
            diffs.append(check.diff)
            same += check.same
            if check.failure:
                failures.append(f"{answer['file']}: {check.failure}")
        done = TargetCheck(target, loads_with, expected["precision"], len(files), same / max(1, len(files)),
                           float(max(diffs, default=0.0)), tolerance, failures, notes)
        if loads_with == target and files and not failures:  # what `auto` chooses by (runtime/measured.py)
            done.p50_ms = _timed(bundle, target, model, files[0], threads)
        checks.append(done)
    return checks


def _timed(bundle: Bundle, target: str, model: Path, file: Path, threads: int | None) -> float:
    """The target's batch-1 latency on a reference file, kept for `auto` to choose by."""
    from edgetl.modality import preprocessing_of

    with open_runner(model, backend=target, threads=threads) as runner:
        ms = p50_ms(runner, preprocessing_of(runner.card)(file)[None])
    record(bundle, target, ms)
    return ms


def reference_answers(runner_predict: Callable[[list[Path]], list[Prediction]], files: list[Path], root: Path,
                      labels: list[str], precision: str, task: Task) -> dict[str, Any]:
    """What a target answers for the reference files: `runner_predict(files)` gives the
    Prediction of each (all labels); stored relative to the bundle's root, in the task's
    form (a classifier's label and scores, a detector's objects)."""
    answers: list[dict[str, Any]] = []
    for f, p in zip(files, runner_predict(files)):
        if not p.ok:
            raise ArtifactError(f"the reference file {f.name} cannot be predicted: {p.error}",
                                hint="remove it from the data set, or package again")
        answers.append({"file": str(f.relative_to(root)), **task.reference_answer(p.to_dict(), labels)})
    return {"labels": labels, "precision": precision, "answers": answers}


def load(artifact: str | Path, backend: str = "auto", device: str = "cpu", threads: int | None = None,
         precision_hint: str | None = None, check_references: bool = False) -> Runner:
    """Open any artifact for inference. A bundle has its checksums checked and runs on the
    fastest of its targets this machine has; with `check_references`, its reference files
    are run first and a target that answers otherwise is an ArtifactError."""
    if check_references and kind_of(artifact).name == "bundle":
        failed = [c for c in verify(artifact, backend=backend) if not c.passed]
        if failed:
            raise ArtifactError(f"{Path(artifact).name}: {failed[0].target} does not compute what was packaged "
                                f"({failed[0].failures[0]})", hint="run `edgetl verify` for the figures; "
                                "package the run again on the training machine")
    return open_runner(artifact, backend=backend, device=device, threads=threads, precision_hint=precision_hint)


__all__ = ["TargetCheck", "load", "reference_answers", "verify"]
