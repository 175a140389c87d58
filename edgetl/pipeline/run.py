"""`edgetl run`: a recipe from data to bundle, each stage reused when nothing it depends
on changed (pipeline/cache.py).

The pipeline folder is an ordinary edgetl layout that every command takes:

```
DIR/data/        a built-in data set (a recipe's folder is read where it is)
DIR/target/      a built-in target data set (domain adaptation)
DIR/run/         the run directory, with model.onnx (+ .xml), and one INT8 model per target
DIR/bench.json   every artifact on its backend (+ bench.png)
DIR/bundle/      the deployment bundle
DIR/summary.json what every stage did and measured
```

Stages: data, target, finetune (or import), evaluate, export (for speech, with the streaming
operating point picked on the validation recording, so every INT8 model inherits it),
quantize.TARGET, bench, package. A gate that fails (parity, an INT8 bound, bench's
--max-drop) stops the pipeline: exit 1 and a report of what held and what did not.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from rich.markup import escape

from edgetl.core import progress
from edgetl.core.errors import EdgeTLError
from edgetl.core.outputs import write_atomic
from edgetl.importer.settings import ImportSettings
from edgetl.pipeline.cache import StageCache, fingerprint, stage_key, versions
from edgetl.pipeline.recipe import DataSource, Recipe
from edgetl.pipeline.side_by_side import SideBySide, slots
from edgetl.runtime.artifacts import read_card
from edgetl.task import get as get_task
from edgetl.task import task_of

log = logging.getLogger("edgetl")

STAGES = ("data", "target", "finetune", "import", "evaluate", "export", "quantize", "bench", "package")
SUMMARY = "summary.json"


class GateFailed(EdgeTLError):
    """A gate of the pipeline did not hold: the pipeline stops with exit code 1."""

    exit_code = 1


@dataclasses.dataclass
class StageResult:
    name: str
    status: str  # ran | reused | failed | not run
    seconds: float = 0.0
    figures: dict = dataclasses.field(default_factory=dict)
    error: str | None = None
    why: str | None = None  # why it ran rather than being reused


@dataclasses.dataclass
class PipelineResult:
    folder: Path
    recipe: Recipe
    stages: list[StageResult]
    totals: dict = dataclasses.field(default_factory=dict)  # time, peak memory, bundle size, overrides

    @property
    def ok(self) -> bool:
        return all(s.status in ("ran", "reused") for s in self.stages)

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_dict(self) -> dict:
        return {"schema": "edgetl.pipeline/1", "recipe": self.recipe.name, "folder": str(self.folder),
                "ok": self.ok, "stages": [dataclasses.asdict(s) for s in self.stages], "totals": self.totals}


class Pipeline:
    """One recipe in one folder. Each stage method returns (settings, inputs, run) where
    run() does the work and returns (outputs, figures)."""

    def __init__(self, recipe: Recipe, folder: Path, recipe_dir: Path, overrides: list[str] = ()):
        self.recipe, self.folder, self.recipe_dir = recipe, Path(folder), Path(recipe_dir)
        self.overrides = list(overrides)
        self.started = time.perf_counter()
        self.cache = StageCache(self.folder)
        self.versions = versions()
        self.results: list[StageResult] = []
        self.run_dir = self.folder / "run"
        self.data_dir: Path | None = None
        self.target_dir: Path | None = None

    # ------------------------------------------------------------------ driving
    def execute(self, rerun_from: str | None = None, force: bool = False) -> PipelineResult:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from edgetl.core.errors import ArtifactError

            raise ArtifactError(f"cannot make the pipeline folder {self.folder}: {exc.strerror or exc}",
                                hint="pass an --out in a folder you can write to") from None
        with _exclusive(self.folder):  # one pipeline per folder at a time
            return self._execute(rerun_from, force)

    def _execute(self, rerun_from: str | None, force: bool) -> PipelineResult:
        self._write_summary()  # first: the folder says it is a pipeline's from the start
        rerun = force
        failure: GateFailed | None = None
        for group in _groups(self.steps()):
            name = group[0][0]
            rerun = rerun or (rerun_from is not None and name.split(".")[0] == rerun_from)
            if failure is not None:
                self.results.extend(StageResult(n, "not run") for n, _ in group)
                continue
            try:
                if len(group) == 1:
                    self._stage(name, group[0][1], rerun)
                else:
                    self._side_by_side(group, rerun)
            except GateFailed as exc:
                failure = exc
            except BaseException:
                self._write_summary()
                raise
        self._write_summary()
        result = PipelineResult(self.folder, self.recipe, self.results, self._totals())
        if failure is not None:
            failed = next(s.name for s in self.results if s.status == "failed")
            stopped = GateFailed(f"the pipeline stopped at {failed}: {failure.message}",
                                 hint=failure.hint or f"see {self.folder / SUMMARY}")
            stopped.pipeline = result  # what held and what did not, for the report
            raise stopped from None
        return result

    def _plan(self, name: str, step, rerun: bool) -> _Planned | None:
        """The stage reused (recorded, None), or what running it takes, said with why."""
        settings, inputs, work = step()
        key = stage_key(name, settings, inputs, self.versions)
        marker = None if rerun else self.cache.done(name, key)
        if marker is not None:
            self.results.append(StageResult(name, "reused", marker.get("seconds", 0.0), marker.get("figures", {})))
            progress.info(f"{name}: reused (nothing it depends on changed)")
            return None
        why = "asked to (--from or --force)" if rerun else self.cache.why_run(name, settings, inputs, self.versions)
        progress.info(f"[bold]{name}[/]: runs ({escape(why)})", markup=True)
        return _Planned(name, settings, inputs, key, work, why)

    def _stage(self, name: str, step, rerun: bool) -> None:
        planned = self._plan(name, step, rerun)
        if planned is not None:
            self._run_here(planned)

    def _run_here(self, p: _Planned) -> None:
        self.cache.start(p.name)
        started = time.perf_counter()
        try:
            outputs, figures = p.work()
        except EdgeTLError as exc:
            self._failed(p, exc, time.perf_counter() - started)
            _stop(exc)
        self._ran(p, outputs, figures, time.perf_counter() - started)

    def _ran(self, p: _Planned, outputs: list[Path], figures: dict, seconds: float) -> None:
        self.cache.finish(p.name, p.key, outputs, figures, seconds,
                          record={"settings": p.settings, "inputs": p.inputs, "versions": self.versions})
        self.results.append(StageResult(p.name, "ran", seconds, figures, why=p.why))

    def _failed(self, p: _Planned, exc: EdgeTLError, seconds: float) -> None:
        self.results.append(StageResult(p.name, "failed", seconds, error=exc.message, why=p.why))

    def _side_by_side(self, group: list[tuple[str, Any]], rerun: bool) -> None:
        """Independent stages (the INT8 targets): those that run, at the same time when the
        cores and memory allow (pipeline/side_by_side.py), each recorded as it would be
        alone; a gate that fails in one lets the others finish."""
        planned = [p for p in (self._plan(name, step, rerun) for name, step in group) if p is not None]
        n = slots([p.settings.get("threads") for p in planned]) if self.recipe.quantize.side_by_side else 1
        if n < 2:
            for p in planned:
                self._run_here(p)
            return
        progress.info(f"{len(planned)} stages side by side, {n} at a time: {', '.join(p.name for p in planned)}")
        with SideBySide(n) as pool:
            futures = []
            for p in planned:
                self.cache.start(p.name)
                futures.append(pool.submit(p.name, p.work))
            done = [f.result() for f in futures]
        first: EdgeTLError | None = None
        for p, outcome in zip(planned, done):  # what finished is kept, whatever stopped a sibling
            if outcome.error is None:
                self._ran(p, outcome.outputs, outcome.figures, outcome.seconds)
            else:
                self._failed(p, outcome.error, outcome.seconds)
                first = first or outcome.error
        if first is not None:
            _stop(first)

    def _totals(self) -> dict:
        """What the whole run took: this invocation's wall time, the stages' own times (a
        reused stage's from when it ran), the peak resident memory of edgetl and of any
        process it started, the bundle's size, and the --set overrides in effect."""
        bundle = self.folder / "bundle"
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) if bundle.is_dir() else None
        peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        return {"seconds": time.perf_counter() - self.started, "stage_seconds": sum(s.seconds for s in self.results),
                "peak_rss_mb": peak / 1024, "bundle_mb": None if size is None else size / 2**20,
                "overrides": self.overrides}

    def _write_summary(self) -> None:
        doc = PipelineResult(self.folder, self.recipe, self.results, self._totals()).to_dict()
        doc["recipe_settings"] = self.recipe.to_dict()
        write_atomic(self.folder / SUMMARY, json.dumps(doc, indent=1, default=str) + "\n")

    def _model_stages(self) -> list[str]:
        """The stages whose models bench and package take."""
        made = ["import"] if self.recipe.import_ is not None else ["finetune", "export"]
        return [*made, *[f"quantize.{q.target}" for q in self.recipe.quantize.targets]]

    def _outputs(self, *names: str) -> dict[str, str]:
        """The recorded outputs of earlier stages: what a later stage's key depends on."""
        out = {}
        for name in names:
            out.update({f"{name}:{k}": v for k, v in self.cache.outputs_of(name).items()})
        return out

    # ------------------------------------------------------------------ the stages
    def steps(self):
        r = self.recipe
        yield "data", lambda: self._data(r.data, "data")
        if r.target is not None:
            yield "target", lambda: self._data(r.target, "target")
        if r.import_ is not None:  # a model trained elsewhere: the import writes what export would
            yield "import", self._import
        else:
            yield "finetune", self._finetune
        if r.evaluate is not None:
            yield "evaluate", self._evaluate
        if r.import_ is None:
            yield "export", self._export
        for q in r.quantize.targets:
            yield f"quantize.{q.target}", lambda q=q: self._quantize(q)
        if r.bench is not None:
            yield "bench", self._bench
        if r.package is not None:
            yield "package", self._package

    def _data(self, source: DataSource, name: str):
        settings = source.to_dict()
        if source.folder is not None:
            folder = Path(source.folder)
            folder = folder if folder.is_absolute() else (self.recipe_dir / folder)
            folder = folder.resolve()
            setattr(self, f"{name}_dir", folder)

            def read():  # the folder is the stage's output: the cache fingerprints it, later keys take that
                from edgetl.core.errors import DataError

                if not folder.is_dir():
                    raise DataError(f"{name}: the folder {folder} does not exist", hint="check the recipe's path")
                return [folder], {"folder": str(folder)}

            return settings, {}, read
        out = self.folder / name
        setattr(self, f"{name}_dir", out)

        def write():
            if source.digits is not None:
                from edgetl.data.digits import make_digits

                make_digits(out, source.digits, overwrite=True)
            elif source.digit_scenes is not None:
                from edgetl.data.digit_scenes import make_digit_scenes

                make_digit_scenes(out, source.digit_scenes, overwrite=True)
            else:
                from edgetl.data.keywords import make_keywords

                make_keywords(out, source.keywords, overwrite=True)
            return [out], {"folder": str(out)}

        return settings, {}, write

    def _finetune(self):
        cfg = self.recipe.finetune
        if self.recipe.target is not None:  # its train split (or the whole folder) unlabelled; test, if any, labelled
            train = self.target_dir / "train"
            labelled = any((self.target_dir / s).is_dir() for s in ("test", "val"))
            cfg = cfg.replace(target_data=str(train if train.is_dir() else self.target_dir),
                              target_val=str(self.target_dir) if labelled else None)
        inputs = self._outputs("data", "target")

        def work():
            from edgetl.finetune.job import finetune

            result = finetune(self.data_dir, cfg.backbone, self.run_dir, overwrite=True, settings=cfg)
            figures = {"val_accuracy": result.val_accuracy, "best_epoch": result.best_epoch, "chosen": result.chosen,
                       "epochs_run": len(result.history), "metric": task_of(result.card).metric_title}
            adaptation = result.card.source.get("adaptation")
            if adaptation:
                figures["adaptation"] = adaptation.get("method")
                if adaptation.get("target_val"):
                    figures["target_accuracy"] = adaptation["target_val"]["adapted"]
            return [self.run_dir / "model.pt", self.run_dir / "edgetl.json"], figures

        return cfg.to_dict(), inputs, work

    def _import(self):
        s = self.recipe.import_
        model = Path(s.model)
        inputs = {**self._outputs("data"), "model": fingerprint(model),  # the files it reads, by content
                  "weights": fingerprint(model.with_suffix(".bin")) if model.suffix.lower() == ".xml" else None,
                  "labels": fingerprint(Path(s.labels)) if s.labels and Path(s.labels).is_file() else None}

        def work():
            from edgetl.importer import import_model

            settings = ImportSettings(**{f.name: getattr(s, f.name) for f in dataclasses.fields(ImportSettings)})
            result = import_model(s.model, self.run_dir, settings.replace(data=str(self.data_dir)), overwrite=True)
            files = [*result.models, *[m.with_suffix(".bin") for m in result.models if m.suffix == ".xml"]]
            return [*files, self.run_dir / "edgetl.json"], {"val_accuracy": result.accuracy,
                                                                     "models": [m.name for m in result.models]}

        return s.to_dict(), inputs, work

    def _evaluate(self):
        s = self.recipe.evaluate

        def work():
            from edgetl.evaluate.accuracy import evaluate

            report = evaluate(self.run_dir, self.data_dir, s)
            return [], {"accuracy": report.accuracy, "n": report.n, "split": report.split,
                        "metric": get_task(report.task).metric_title}

        return s.to_dict(), self._outputs(self._model_stages()[0]), work

    def _export(self):
        s, streaming = self.recipe.export, self.recipe.streaming
        settings = {"export": s.to_dict(), "streaming": streaming.to_dict() if streaming else None}

        def work():
            from edgetl.export import export_run

            result = export_run(self.run_dir, self.run_dir / "model.onnx", s, overwrite=True)
            outputs = [result.onnx] + ([result.openvino, result.openvino.with_suffix(".bin")] if result.openvino else [])
            figures = {"parity": {Path(p.artifact).name: round(p.agreement, 4) for p in result.parity}}
            if streaming is not None:
                figures["streaming"] = self._streaming(result.onnx, streaming)
                if result.openvino:  # the IR carries the same operating point
                    from edgetl.runtime.artifacts import read_card, write_card

                    write_card(result.openvino, dataclasses.replace(read_card(result.openvino),
                                                                    streaming=read_card(result.onnx).streaming))
            return outputs, figures

        return settings, self._outputs("finetune"), work

    def _streaming(self, onnx: Path, s) -> dict:
        from edgetl.evaluate.stream import evaluate_stream

        streams = self.data_dir / "_streams_"
        options = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)
                   if f.name not in ("calibrate_on", "evaluate_on")}
        picked = evaluate_stream(onnx, streams / f"{s.calibrate_on}.wav", **options)
        figures = {"picked_on": s.calibrate_on, "settings": picked.settings, "val_frr": picked.frr,
                   "val_fa_per_hour": picked.fa_per_hour}
        if s.evaluate_on:
            test = evaluate_stream(onnx, streams / f"{s.evaluate_on}.wav",
                                   **{**options, "target_fa_per_hour": None, "plot": None})
            figures.update(test_frr=test.frr, test_fa_per_hour=test.fa_per_hour,
                           real_time_factor=test.real_time_factor, live=test.live)
        return figures

    def _quantize(self, q):
        work = functools.partial(quantize_stage, self.run_dir / "model.onnx", q)  # picklable: may run in a child
        return q.to_dict(), self._outputs("import" if self.recipe.import_ is not None else "export"), work

    def _bench(self):
        s = self.recipe.bench

        def work():
            from edgetl.bench.harness import bench

            report = bench([self.run_dir], s.replace(data=s.data or str(self.data_dir)))
            json_path = report.write_json(self.folder / "bench.json")
            plot = report.plot(self.folder / "bench.png")
            rows = [{"artifact": Path(r.artifact).name, "backend": r.backend, "batch": r.batch,
                     "metric": get_task(r.task).metric_title if r.task else "accuracy", "accuracy": r.accuracy,
                     "drop": r.drop, "p50_ms": r.p50_ms, "size_mb": r.size_mb, "note": r.note,
                     "error": r.error} for r in report.rows]
            for row, r in zip(rows, report.rows):
                row.update(bound=r.bound, drop_ci95=r.drop_ci95)
            offenders = report.offenders(s.max_drop) if s.max_drop is not None else []
            if offenders:
                worst = max(offenders, key=lambda r: r.drop)
                raise _BenchGate(f"{worst.name} on {worst.backend} loses {100 * worst.drop:.2f} pt, above bench.max_drop "
                                 f"{100 * s.max_drop:.2f} pt", hint=f"see {json_path}")
            # The INT8 bound was measured on the validation split, which also chose the run:
            # on the bench split (the test split in the shipped recipes) it is checked again.
            certain, within_noise = report.beyond_bounds()
            for r in within_noise:
                log.warning(f"{r.name} on {r.backend} loses {100 * r.drop:.2f} pt on {r.split}, above the "
                            f"{100 * r.bound:.2f} pt it was quantized within, but within what {r.n} samples can tell "
                            f"(95% interval {100 * r.drop_ci95[0]:.2f}..{100 * r.drop_ci95[1]:.2f} pt)"
                            if r.drop_ci95 else f"{r.name} on {r.backend} loses {100 * r.drop:.2f} pt on {r.split}, "
                            f"above the {100 * r.bound:.2f} pt it was quantized within")
            if certain:
                worst = max(certain, key=lambda r: r.drop)
                raise _BenchGate(f"{worst.name} on {worst.backend} loses {100 * worst.drop:.2f} pt on {worst.split} "
                                 f"(95% interval {100 * worst.drop_ci95[0]:.2f}..{100 * worst.drop_ci95[1]:.2f} pt), "
                                 f"above the {100 * worst.bound:.2f} pt it was quantized within on validation samples",
                                 hint="quantize it with a smaller max_drop (more layers kept in float), with qat: true, "
                                      "or calibrate on more samples; the validation split may be too small to bound "
                                      f"it (see {json_path})")
            return [json_path, plot], {"rows": rows}

        return s.to_dict(), self._outputs(*self._model_stages()), work

    def _package(self):
        s = self.recipe.package
        out = self.folder / "bundle"

        def work():
            from edgetl.deploy.package import package

            # the bench stage's latencies, not a second measurement a minute later that differs from them
            bench = str(self.folder / "bench.json") if self.recipe.bench is not None else None
            result = package(self.run_dir, out, s.replace(data=s.data or str(self.data_dir),
                                                          latency_from=s.latency_from or bench), overwrite=True)
            from edgetl.runtime.verify import verify

            # where the user wants to be: a bundle that checks itself, checked here as a device would
            checks = verify(result.out, threads=s.threads)
            failed = [c for c in checks if not c.passed]
            if failed:
                raise _VerifyGate(f"the bundle's {failed[0].target} model does not compute what was packaged: "
                                  f"{failed[0].failures[0]}", hint=f"run `edgetl verify {result.out}` for the figures")
            return [result.out], {"bundle": str(result.out), "targets": {t: e.precision for t, e in
                                                                          result.targets.items()},
                                  "verified": {c.target: c.backend for c in checks if not c.skipped}}

        reads = [*self._model_stages(), *(["bench"] if self.recipe.bench is not None else [])]
        return s.to_dict(), self._outputs(*reads), work


@dataclasses.dataclass
class _Planned:
    name: str
    settings: dict
    inputs: dict
    key: str
    work: Callable[[], tuple[list[Path], dict]]
    why: str


def _stop(exc: EdgeTLError) -> NoReturn:
    """A failed stage stops the pipeline: a gate with exit code 1, anything else as it is."""
    if _is_gate(exc):
        raise GateFailed(exc.message, hint=exc.hint) from None
    raise exc


def _groups(steps) -> list[list[tuple[str, Any]]]:
    """The steps in order, the INT8 targets (independent of each other) as one group."""
    groups: list[list[tuple[str, Any]]] = []
    for name, step in steps:
        if name.startswith("quantize.") and groups and groups[-1][0][0].startswith("quantize."):
            groups[-1].append((name, step))
        else:
            groups.append([(name, step)])
    return groups


def quantize_stage(onnx: Path, q) -> tuple[list[Path], dict]:
    """One INT8 target: its model (and weights) and the figures the summary shows."""
    from edgetl.quantize import quantize

    result = quantize(onnx, settings=q, overwrite=True)
    outputs = [result.out] + ([result.out.with_suffix(".bin")] if result.out.suffix == ".xml" else [])
    return outputs, {"model": result.out.name, "fp32_accuracy": result.fp32_accuracy,
                     "int8_accuracy": result.int8_accuracy, "drop": result.drop,
                     "float_layers": len(result.float_layers), "method": result.method,
                     "metric": task_of(read_card(result.out)).metric_title}


LOCK = ".stages.lock"


@contextlib.contextmanager
def _exclusive(folder: Path):
    """Hold the pipeline folder's lock while a pipeline writes in it: a second `edgetl run`
    on the same folder (say the same recipe with another seed) is refused while the first
    runs, instead of both reporting their stages as run and only one's results being left.
    The lock goes with the process, however it ends."""
    import fcntl

    from edgetl.core.errors import ConfigError

    handle = open(folder / LOCK, "a+")  # noqa: SIM115  (held for the whole pipeline)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another edgetl run is writing the pipeline folder {folder}",
                              hint="wait for it to finish, or pass another --out") from None
        yield
    finally:
        handle.close()


class _BenchGate(EdgeTLError):
    """bench.max_drop did not hold."""


class _VerifyGate(EdgeTLError):
    """The bundle did not verify on the machine that packaged it."""


def _is_gate(exc: EdgeTLError) -> bool:
    from edgetl.export.parity import ParityError
    from edgetl.quantize import AccuracyDropError

    return isinstance(exc, (ParityError, AccuracyDropError, _BenchGate, _VerifyGate))


def run_recipe(recipe_path, out=None, rerun_from: str | None = None, force: bool = False,
               overrides: list[str] = ()) -> PipelineResult:
    """Run (or resume) the recipe at `recipe_path` in `out` (default runs/NAME)."""
    from edgetl.core.errors import ConfigError
    from edgetl.pipeline.recipe import load_recipe

    recipe = load_recipe(recipe_path, overrides)
    if rerun_from is not None and rerun_from not in STAGES:
        raise ConfigError(f"--from {rerun_from!r} is not a stage", hint=f"use one of {', '.join(STAGES)}")
    folder = Path(out) if out else Path("runs") / recipe.name
    _check_folder(folder)
    _check_not_inside_inputs(folder, recipe)
    pipeline = Pipeline(recipe, folder, Path(recipe_path).resolve().parent, list(overrides))
    if rerun_from is not None and not any(name.split(".")[0] == rerun_from for name, _ in pipeline.steps()):
        raise ConfigError(f"--from {rerun_from}: the recipe has no {rerun_from} stage",
                          hint=f"its stages: {', '.join(dict.fromkeys(n.split('.')[0] for n, _ in pipeline.steps()))}")
    return pipeline.execute(rerun_from, force)


def _check_not_inside_inputs(folder: Path, recipe: Recipe) -> None:
    """A pipeline folder may neither be, contain nor lie inside a folder the recipe reads
    (its data set, target data, calibration or bench data): written into a data set, it
    would become one more class of it."""
    from edgetl.core.outputs import refuse_overlap

    refuse_overlap(folder, {
        "recipe's data set": recipe.data.folder, "recipe's target data": recipe.target.folder if recipe.target else None,
        "finetune.target_data": recipe.finetune.target_data, "finetune.target_val": recipe.finetune.target_val,
        "bench.data": recipe.bench.data if recipe.bench else None,
        "package.data": recipe.package.data if recipe.package else None,
        **{f"quantize.{q.target}.{k}": getattr(q, k) for q in recipe.quantize.targets for k in ("calib", "val")}})


def _check_folder(folder: Path) -> None:
    """A pipeline writes only into a new or empty folder, or one a pipeline wrote."""
    from edgetl.core.errors import ConfigError

    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file", hint="pass a folder for the pipeline")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    try:
        ours = json.loads((folder / SUMMARY).read_text()).get("schema", "").startswith("edgetl.pipeline/")
    except (OSError, ValueError, AttributeError):
        ours = (folder / ".stages").is_dir() or (folder / LOCK).is_file()  # a pipeline that has just begun
    if not ours:
        raise ConfigError(f"--out {folder} holds files a pipeline did not write",
                          hint="pass a new folder (a pipeline folder is reused: its stages come from the cache)")
