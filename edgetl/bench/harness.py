"""edgetl bench: every artifact on every backend and batch size, in one report.

One row per cell of artifact x backend x batch. Per cell: load/compile time, accuracy on
the whole split and top-1 agreement with the run's FP32 reference, latency (warm-up
excluded, perf_counter_ns, no outlier clipping), throughput, file size and the peak
resident memory while that backend ran. Inputs are decoded and preprocessed before any
timing. A cell that fails (backend not installed, engine for another GPU, batch outside
a static shape) becomes a failed row; the other cells still run.
"""
from __future__ import annotations

import dataclasses
import functools
import gc
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench import memory
from edgetl.bench.latency import LatencyStats, time_calls
from edgetl.bench.report import BenchReport, BenchRow
from edgetl.bench.settings import BenchSettings
from edgetl.core import progress
from edgetl.core.allocator import configure_allocator
from edgetl.core.card import CARD_FILENAME, ModelCard
from edgetl.core.errors import ArtifactError, ConfigError, DataError, EdgeTLError
from edgetl.core.metrics import drop_interval
from edgetl.core.threads import resolve_threads
from edgetl.data.samples import ModelInputs, Samples, reference_samples, validation_samples
from edgetl.runtime import BACKENDS, Runner, open_runner
from edgetl.runtime.artifacts import SPINNING, kind_of
from edgetl.runtime.backends import backend_for, check_precision_hint
from edgetl.runtime.bundle import Bundle
from edgetl.runtime.machine import library_versions, machine_info
from edgetl.runtime.measured import time_function
from edgetl.runtime.signature import GENERATED, generated_inputs, input_shapes, is_bare, parse_shapes
from edgetl.runtime.targets import model_for, target_problem
from edgetl.task import get as get_task
from edgetl.task import task_of

# Which FP32 row of a run is the reference for drop and agreement: the training
# framework's own model first, then the exported FP32 files.
_LOADABLE_SUFFIXES = {s for info in BACKENDS.values() for s in info.artifacts if s.startswith(".")}


@dataclasses.dataclass(frozen=True)
class Cell:
    path: Path
    backend: str
    precision_hint: str = "f32"  # what the backend is asked to compute float operations in
    bundle: Path | None = None  # the bundle the model came from: its reference files stand in for --data


def expand_artifacts(artifacts: Sequence[str | Path], backends: list[str] | None = None,
                     precision_hints: Iterable[str] = ()) -> list[Cell]:
    """The cells to measure. A run directory stands for its PyTorch checkpoint and every
    model file exported into it; `backends` (None: each artifact's own) picks the backends
    per artifact, and an artifact none of them loads becomes a failed cell. Every OpenVINO
    cell runs in f32 and, as cells of their own, in each of `precision_hints`."""
    if not artifacts:
        raise ConfigError("nothing to benchmark", hint="pass run directories or model files")
    for name in backends or []:
        if name not in BACKENDS:
            raise ConfigError(f"unknown backend {name!r}", hint=f"use {', '.join(BACKENDS)}")
    paths: list[Path] = []
    members: list[tuple[Path, str, Path]] = []  # a bundle's models, the backend each runs on, the bundle
    for artifact in artifacts:
        path = Path(artifact)
        if not path.exists():
            raise ArtifactError(f"{path} does not exist", hint="pass run directories or model files that exist")
        if kind_of(path).name == "bundle":  # its models, on the backends they were packaged for
            bundle = Bundle.open(path)
            bundle.check_checksums()
            # a TensorRT target without TensorRT here: its QDQ model in ONNX Runtime, as verify runs it
            members += [(*model_for(bundle, t), bundle.root) for t in bundle.targets
                        if t == "tensorrt" or target_problem(bundle, t) is None]
            continue
        if path.is_dir():
            if not (path / CARD_FILENAME).is_file():
                raise ArtifactError(f"{path} is a folder without a model card ({CARD_FILENAME})",
                                    hint="pass a run directory made by `edgetl finetune`, or model files")
            checkpoint = [path] if (path / "model.pt").is_file() else []  # an imported model has none
            paths += checkpoint + sorted(p for p in path.iterdir() if p.suffix.lower() in _LOADABLE_SUFFIXES)
        else:
            backend_for(path)  # an unknown kind of file is a usage error, not a failed cell
            paths.append(path)
    for hint in precision_hints:
        check_precision_hint(hint, "openvino")
    cells = [Cell(model, backend, bundle=root) for model, backend, root in dict.fromkeys(members)
             if not backends or backend in backends]
    for path in dict.fromkeys(paths):  # the same file named twice is measured once
        if not backends:
            chosen = [backend_for(path).name]
        else:
            kind = "run" if path.is_dir() else path.suffix.lower()
            chosen = [b for b in backends if kind in BACKENDS[b].artifacts] or [backends[0]]
        for backend in chosen:
            cells.append(Cell(path, backend))
            if backend == "openvino":
                cells += [Cell(path, backend, hint) for hint in dict.fromkeys(precision_hints) if hint != "f32"]
    if not cells:
        raise ConfigError(f"none of the artifacts runs on {', '.join(backends)}" if backends else
                          "none of the bundles' models runs on this machine",
                          hint="drop --backend, or see what this machine runs: edgetl doctor")
    return cells


def artifact_size(path: Path) -> int:
    """Bytes a deployment carries: the checkpoint of a run, an IR's .xml and .bin, an
    ONNX file with its external data."""
    if path.is_dir():
        files = [path / "model.pt"]
    elif path.suffix.lower() == ".xml":
        files = [path, path.with_suffix(".bin")]
    else:
        files = [path, path.with_name(path.name + ".data"), path.with_suffix(".data")]
    return sum(f.stat().st_size for f in dict.fromkeys(files) if f.is_file())


def _static_batch(card: ModelCard) -> int | None:
    first = (card.input.get("shape") or [None])[0]
    return first if isinstance(first, int) else None


class _Inputs:
    """Preprocessed labelled samples, decoded once per (data, split, preprocessing)."""

    def __init__(self, data: str | Path | None, split: str, shapes: dict[str, tuple[int, ...]] | None = None):
        self.data, self.split = data, split
        self._cache: dict[tuple[Any, ...], Samples] = {}
        self.shapes = shapes or {}  # --shape: a card-less model's open input dimensions

    def __call__(self, card: ModelCard, bundle: Path | None = None) -> Samples:
        """The labelled samples for `card`: --data, else a bundle's reference files (on a
        device the training data is not there), else the run's own data set."""
        if not self.data and bundle is not None:
            key = (str(bundle), "reference", repr(card.preprocessing), tuple(card.labels))
            if key not in self._cache:
                self._cache[key] = reference_samples(bundle, card)
            return self._cache[key]
        root = self.data or card.source.get("data")
        key = (str(root), self.split, repr(card.preprocessing), tuple(card.labels))
        if key not in self._cache:
            self._cache[key] = validation_samples(card, root, self.split, flag="--data")
        return self._cache[key]


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, EdgeTLError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _run_key(path: Path, card: ModelCard | None) -> str:
    """The run an artifact comes from: rows of one run share an FP32 reference."""
    if card is not None and card.source.get("run"):
        return str(Path(card.source["run"]).resolve())
    return str(path.resolve()) if path.is_dir() else str(path.resolve().parent)


def _note(card: ModelCard, backend: str) -> str:
    if backend == "onnxruntime" and card.source.get("quantization", {}).get("target") == "tensorrt":
        return "TensorRT QDQ model emulated on the CPU: accuracy as on TensorRT, latency not representative"
    return ""


def bench_cell(cell: Cell, batches: list[int], inputs: _Inputs, threads: int, device: str, warmup: int,
               iters: int, min_time: float) -> tuple[list[BenchRow], np.ndarray | None, dict[int, list[int]]]:
    """The rows of one artifact on one backend (one per batch), its predictions and the
    raw timings (ns) per batch."""
    name = f"{cell.path.name} (model.pt)" if cell.path.is_dir() else cell.path.name
    base: dict[str, Any] = dict(artifact=str(cell.path), name=name, backend=cell.backend, device=device, threads=threads,
                precision_hint=cell.precision_hint)
    size = artifact_size(cell.path)
    memory.reset_peak()
    rss_before = memory.rss_mib()
    t0 = time.perf_counter()
    try:
        runner = open_runner(cell.path, backend=cell.backend, device=device, threads=threads,
                             precision_hint=cell.precision_hint, bare=cell.bundle is None)
    except Exception as exc:  # a cell's failure is a result; the others still run
        return [BenchRow(**base, batch=b, size_mb=size / 2**20, error=_first_line(exc)) for b in batches], None, {}
    load_s = time.perf_counter() - t0
    card = runner.card
    quantization = card.source.get("quantization", {}) if card.precision == "int8" else {}
    bound, float_layers = quantization.get("max_drop"), quantization.get("float_layers")
    common: dict[str, Any] = dict(base, device=runner.device, precision=card.precision,
                                  inference_precision=runner.inference_precision, run=_run_key(cell.path, card),
                                  bound=bound, float_layers=None if float_layers is None else len(float_layers),
                                  note=_note(card, cell.backend), size_mb=size / 2**20, load_s=load_s)
    with runner:
        if is_bare(card):
            rows, predictions, timings = _bare_rows(runner, dict(common, note=NO_CARD), batches, inputs.shapes, warmup,
                                                    iters, min_time)
        else:
            rows, predictions, timings = _card_rows(runner, cell, common, batches, inputs, warmup, iters, min_time)
    # since the reset above, or the process's peak (settings say which); at least what was
    # resident when the window opened (the kernel updates VmHWM lazily, so it can read lower)
    peak = max(memory.peak_rss_mib(), rss_before or 0.0)
    for row in rows:
        row.peak_rss_mb, row.rss_before_mb = peak, rss_before
    del runner
    gc.collect()
    return rows, predictions, timings


NO_CARD = "no edgetl card: latency on generated inputs; outputs compared across backends, accuracy not measured"


def _bare_rows(runner: Runner, common: dict[str, Any], batches: list[int], shapes: dict[str, tuple[int, ...]],
               warmup: int, iters: int, min_time: float
               ) -> tuple[list[BenchRow], np.ndarray | None, dict[int, list[int]]]:
    """A model without a card, as trtexec and benchmark_app time one: its own inputs
    (runtime/signature.py), generated, one row per distinct input shape (a --shape fixes
    the batch); its first output on the first shape's inputs, which the other backends'
    rows are compared with."""
    specs, _ = runner.signature
    rows: list[BenchRow] = []
    timings: dict[int, list[int]] = {}
    outputs: np.ndarray | None = None
    seen: set[tuple[Any, ...]] = set()
    for batch in batches:
        try:
            chosen = input_shapes(specs, shapes, batch)
        except ConfigError as exc:
            rows.append(BenchRow(**common, batch=batch, error=_first_line(exc)))
            continue
        key = tuple(sorted(chosen.items()))
        if key in seen:
            continue
        seen.add(key)
        n = chosen[specs[0].name][0] if chosen[specs[0].name] else 1
        row = BenchRow(**common, batch=n)
        try:
            feeds = generated_inputs(specs, chosen)
            first = runner.infer_named(feeds)
            if outputs is None:
                outputs = np.asarray(next(iter(first.values())), np.float64)
            timings[n] = time_function(functools.partial(runner.infer_named, feeds), warmup, iters, min_time)
            row.set_latency(LatencyStats.from_ns(timings[n], n))
        except Exception as exc:
            row.error = _first_line(exc)
        rows.append(row)
    return rows, outputs, timings


def _card_rows(runner: Runner, cell: Cell, common: dict[str, Any], batches: list[int], inputs: _Inputs, warmup: int,
               iters: int, min_time: float) -> tuple[list[BenchRow], np.ndarray | None, dict[int, list[int]]]:
    """A model with its card: the task's metric on labelled samples, then latency on the
    first samples at each batch size."""
    card = runner.card
    rows: list[BenchRow] = []
    timings: dict[int, list[int]] = {}
    try:
        samples = inputs(card, cell.bundle)
        if samples.labels is None:  # validation and reference samples are labelled: a bug, not input
            raise DataError("the samples to score have no labels", hint="pass --data with a labelled split")
        static = _static_batch(card)
        logits = runner.infer_all(samples.x, static or max(batches))
        task = task_of(card)
        predictions = task.predictions(logits)
        common = dict(common, task=task.name, metric=task.metric, n=len(samples),
                      accuracy=task.score(logits, samples.labels, card.labels).value,
                      split=f"{Path(samples.source).name}/{inputs.split}")
    except Exception as exc:
        return [BenchRow(**common, batch=b, error=_first_line(exc)) for b in batches], None, {}
    for batch in batches:
        row = BenchRow(**common, batch=batch)
        try:
            if static and batch != static:
                raise ConfigError(f"the model has a static batch of {static}", hint=f"--batch {static}")
            x = latency_input(samples.x, batch)
            timings[batch] = time_calls(runner, x, warmup, iters, min_time)
            row.set_latency(LatencyStats.from_ns(timings[batch], batch))
            if task.decodes:  # what the device spends after the model: how much of the latency is decoding
                outputs = runner.infer(x)
                decoding = functools.partial(task.predictions, outputs)
                row.decode_ms = LatencyStats.from_ns(time_function(decoding, 1, min(iters, 20), 0.0), batch).p50_ms
        except Exception as exc:
            row.error = _first_line(exc)
        rows.append(row)
    return rows, predictions, timings


def latency_input(x: ModelInputs | np.ndarray, batch: int) -> np.ndarray:
    """The first `batch` real samples (repeated when the split is smaller)."""
    return np.asarray(x[np.arange(batch) % len(x)])


def _more_rounds(cells: list[Cell], rows: list[BenchRow], timings: dict[tuple[int, int], list[int]], inputs: _Inputs,
                 rounds: int, threads: int, device: str, warmup: int, iters: int, min_time: float) -> None:
    """Rounds 2..N: every cell that worked is timed again, all cells in turn, and its
    timings pooled, so that a noisy neighbour on a shared machine hits every cell alike
    instead of whichever happened to run at the wrong moment."""
    for r in range(2, rounds + 1):
        progress.info(f"latency round {r}/{rounds}")
        for i, cell in enumerate(cells, 1):
            ok = [row for row in rows if row.cell_id == i and row.ok]
            if not ok:
                continue
            with open_runner(cell.path, backend=cell.backend, device=device, threads=threads,
                             precision_hint=cell.precision_hint, bare=cell.bundle is None) as runner:
                if is_bare(runner.card):
                    known = {k: getattr(ok[0], k) for k in ("artifact", "name", "backend", "device")}
                    extra = _bare_rows(runner, known, [r.batch for r in ok], inputs.shapes, warmup, iters, min_time)[2]
                    for row in ok:
                        timings[i, row.batch] += extra.get(row.batch, [])
                        row.set_latency(LatencyStats.from_ns(timings[i, row.batch], row.batch))
                    continue
                x = inputs(runner.card, cell.bundle).x
                for row in ok:
                    timings[i, row.batch] += time_calls(runner, latency_input(x, row.batch), warmup, iters, min_time)
                    row.set_latency(LatencyStats.from_ns(timings[i, row.batch], row.batch))


SLOWER = 1.10  # an INT8 row this much slower than its FP32 model is named (less is within a busy machine's noise)


def note_slower_int8(rows: list[BenchRow]) -> None:
    """An INT8 row slower than its run's FP32 model on the same backend, batch and threads
    says so. Layers kept in float to hold a bound cost conversions at every boundary, and a
    model mostly in float loses more than it gains: an adapted digits model with 52 of 60
    operations in float ran 5.5 ms against FP32's 1.9 ms on OpenVINO (AMD EPYC, AVX2)."""
    def key(r: BenchRow) -> tuple[Any, ...]:
        return r.run, r.backend, r.batch, r.threads, r.precision_hint

    fp32 = {key(r): r for r in rows if r.ok and r.precision == "fp32" and r.p50_ms is not None}
    for r in rows:
        ref = fp32.get(key(r))
        if (r.ok and r.precision == "int8" and not r.note and ref is not None and ref.p50_ms is not None
                and r.p50_ms is not None and r.p50_ms > SLOWER * ref.p50_ms):
            kept = f"; {r.float_layers} layers kept in float to hold its bound" if r.float_layers else ""
            r.note = f"INT8 slower than FP32 here ({r.p50_ms:.2f} against {ref.p50_ms:.2f} ms{kept})"


def attach_output_agreement(rows: list[BenchRow], outputs: dict[int, np.ndarray]) -> None:
    """Card-less models: the same model in several files (m.onnx, m.xml) or on several
    backends is compared on the same generated inputs with the row of the backend ranked
    first (the backend table's reference rank): the largest difference of the first
    output, as a fraction of the reference's range (the parity gate's measure)."""
    by_model: dict[str, list[BenchRow]] = {}
    for row in rows:
        if row.note == NO_CARD and row.ok and outputs.get(row.cell_id) is not None:
            by_model.setdefault(Path(row.artifact).stem, []).append(row)
    for group in by_model.values():
        ref = min(group, key=lambda r: (BACKENDS[r.backend].reference_rank if r.backend in BACKENDS else 99, r.cell_id))
        expected = outputs[ref.cell_id]
        span = float(expected.max() - expected.min()) or 1.0
        for row in group:
            got = outputs[row.cell_id]
            row.reference = f"{ref.name} ({ref.backend})"
            row.output_diff = float(np.abs(got - expected).max() / span) if got.shape == expected.shape else None


def attach_references(rows: list[BenchRow], predictions: dict[int, np.ndarray]) -> None:
    """Drop and agreement (the same predictions, as the task compares them) of every row
    against its run's FP32 reference row: an FP32 model that really ran in f32 (a bf16
    run of it is judged, not a reference)."""
    by_run: dict[str, list[BenchRow]] = {}
    for row in rows:
        if row.accuracy is not None and row.run:
            by_run.setdefault(row.run, []).append(row)
    for group in by_run.values():
        fp32 = [r for r in group if r.precision == "fp32" and r.inference_precision == "f32" and r.backend in BACKENDS]
        if not fp32:
            continue
        ref = min(fp32, key=lambda r: BACKENDS[r.backend].reference_rank)
        ref_pred = predictions.get(ref.cell_id)
        for row in group:
            row.reference = f"{ref.name} ({ref.backend})"
            if ref.accuracy is None or row.accuracy is None:  # grouped above by having one
                continue
            row.drop = ref.accuracy - row.accuracy
            pred = predictions.get(row.cell_id)
            if ref_pred is not None and pred is not None and len(pred) == len(ref_pred):
                row.agreement = float(get_task(row.task or "classification").same(pred, ref_pred).mean())
                if row.metric == "accuracy" and row.n:  # a share of answers: its uncertainty is known
                    row.drop_ci95 = list(drop_interval(row.drop, 1 - row.agreement, row.n))


def bench(artifacts: Sequence[str | Path], settings: BenchSettings | None = None, **options: Any) -> BenchReport:
    """Measure every artifact (run directories, .onnx, .xml, .engine) on its backend (or
    on each of `backends`) at every batch size; returns a BenchReport. With rounds > 1
    the latency of every cell is measured that many times, in turn, and pooled. Every
    backend computes in f32; `precision_hints` (e.g. ["bf16"]) adds OpenVINO rows in
    those precisions, judged against the same FP32 reference. `settings` (or its fields
    as keyword options): BenchSettings."""
    s = BenchSettings.of(settings, **options)
    data, split, backends, threads, iters, min_time, warmup, device, rounds, precision_hints = (
        s.data, s.split, list(s.backends) if s.backends else None, s.threads, s.iters, s.min_time, s.warmup, s.device,
        s.rounds, s.precision_hints)
    batches = sorted({int(b) for b in s.batches})
    if data is not None and not Path(data).is_dir():
        raise DataError(f"data folder {data} does not exist", hint="check the --data path")
    threads = resolve_threads(threads)
    cells = expand_artifacts(artifacts, backends, precision_hints)
    per_backend_peak = memory.reset_peak()  # where the OS cannot reset it, peaks are the process's
    inputs = _Inputs(data, split, parse_shapes(s.shapes))
    rows: list[BenchRow] = []
    predictions: dict[int, np.ndarray] = {}
    timings: dict[tuple[int, int], list[int]] = {}
    started = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        hint = f" ({cell.precision_hint})" if cell.precision_hint != "f32" else ""
        progress.info(f"[{i}/{len(cells)}] {cell.path.name} on {cell.backend}{hint}")
        cell_rows, pred, cell_timings = bench_cell(cell, batches, inputs, threads, device, warmup, iters, min_time)
        for row in cell_rows:
            row.cell_id = i
            progress.info(f"    {row.summary()}")
        if pred is not None:
            predictions[i] = pred
        timings.update({(i, batch): t for batch, t in cell_timings.items()})
        rows += cell_rows
    _more_rounds(cells, rows, timings, inputs, rounds, threads, device, warmup, iters, min_time)
    attach_references(rows, predictions)
    attach_output_agreement(rows, predictions)
    note_slower_int8(rows)
    recorded = {"data": str(data) if data else "each run's own data set", "split": split, "batches": batches,
                "threads": threads, "iters": iters, "min_time_s": min_time, "warmup": warmup, "rounds": rounds,
                "shapes": list(s.shapes), "generated_inputs": GENERATED, "device": device,
                "precision_hints": ["f32", *[h for h in precision_hints if h != "f32"]],
                "backends": backends or "auto", "artifacts": [str(a) for a in artifacts],
                "timer": "time.perf_counter_ns around each infer call; warm-up excluded; no outlier clipping",
                "peak_rss": "VmHWM reset per backend" if per_backend_peak else "process lifetime peak",
                "allocator": configure_allocator(),
                "onnxruntime_waiting_threads": "spin" if SPINNING else "sleep (session.intra_op.allow_spinning=0)"}
    return BenchReport(rows=rows, machine=machine_info(), versions=library_versions(), settings=recorded,
                       seconds=time.perf_counter() - started)
