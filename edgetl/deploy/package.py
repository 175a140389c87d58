"""`edgetl package`: a run as a deployment bundle (runtime/bundle.py describes the layout).

Each target gets the run's INT8 model when it has one within its accuracy bound, else the
FP32 one (exported first if the run has none). Reference files are real inputs from the
run's data (the test split, else validation), copied as they are; each target's answers
for them are recorded on this machine. Everything is written under a temporary name
and renamed at the end.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgetl._version import __version__
from edgetl.core import progress
from edgetl.core.card import ModelCard
from edgetl.core.errors import ConfigError
from edgetl.core.outputs import check_output, publish, temp_dir_beside
from edgetl.core.threads import using_threads
from edgetl.data.folders import SPLIT_FOLDERS
from edgetl.data.labelled import reference_files
from edgetl.deploy.settings import PackageSettings
from edgetl.runtime.artifacts import BUNDLE_OUTPUT, engine_card_path, kind_of, read_card
from edgetl.runtime.backend_table import BACKENDS
from edgetl.runtime.bundle import MANIFEST, TRUTHS, Manifest, TargetEntry, sha256
from edgetl.runtime.verify import reference_answers
from edgetl.task import Task, task_of


@dataclasses.dataclass
class PackageResult:
    out: Path
    targets: dict[str, TargetEntry]
    references: int


def within_bound(card: ModelCard) -> bool:
    """An INT8 model whose measured loss stayed within the bound it was quantized with."""
    bound = card.source.get("quantization", {}).get("max_drop")
    drop = card.metrics.get("accuracy_drop")
    return bound is not None and drop is not None and drop <= bound + 1e-12


def pick_model(run: Path, target: str) -> Path:
    """The run's model a target deploys: its INT8 model where that held its bound, else the float one."""
    int8 = run / f"model{BACKENDS[target].int8_suffix}"
    if int8.is_file() and within_bound(read_card(int8)):
        return int8
    return run / f"model{BACKENDS[target].model_suffix}"


def _benched(path: str | None) -> tuple[dict[tuple[str, str], float], dict[str, tuple[float, str]]]:
    """What a pipeline's bench stage measured, which its bundle gives rather than a second,
    differing figure: batch-1 p50 (ms) per (model file, backend), where the backend ran the
    model itself (not an emulation), and each model file's accuracy (or mAP) with the split
    it was measured on (the test split in the shipped recipes)."""
    if not path:
        return {}, {}
    try:
        rows = json.loads(Path(path).read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the bench figures in {path}: {exc}",
                          hint="pass the JSON of `edgetl bench --json-file`, or drop --latency-from") from None
    latencies = {(str(Path(r["artifact"]).resolve()), r["backend"]): float(r["p50_ms"]) for r in rows
                 if r.get("batch") == 1 and r.get("p50_ms") is not None and not r.get("error") and not r.get("note")}
    scores = {str(Path(r["artifact"]).resolve()): (float(r["accuracy"]), str(r["split"])) for r in rows
              if r.get("accuracy") is not None and not r.get("error") and r.get("split") not in (None, *SPLIT_FOLDERS["val"])}
    return latencies, scores


def _latency_p50(model: Path, backend: str, x: np.ndarray) -> float:
    from edgetl.bench.latency import measure
    from edgetl.runtime import open_runner

    with open_runner(model, backend=backend) as runner:  # the package command's --threads
        return measure(runner, x, warmup=5, iters=30).p50_ms


def package(run: str | Path, out: str | Path, settings: PackageSettings | None = None, overwrite: bool = False,
            **options: Any) -> PackageResult:
    """Write the bundle of `run` for its targets to `out` (a folder, or OUT.zip with
    `zip_file`). `settings` (or its fields as keyword options): PackageSettings; `targets`
    may be given as "openvino,onnxruntime"."""
    from edgetl.runtime.predict import predict

    if isinstance(options.get("targets"), str):
        options["targets"] = tuple(t.strip() for t in options["targets"].split(",") if t.strip())
    s = PackageSettings.of(settings, **options)
    targets, zip_file, samples, data = list(s.targets), s.zip_file, s.samples, s.data
    run = Path(run)
    if not run.exists() or kind_of(run).name != "run":
        raise ConfigError(f"edgetl package takes a run directory, not {run}",
                          hint="pass the folder `edgetl finetune --out` wrote")
    card = ModelCard.load(run)
    task = task_of(card)
    out = Path(out)
    if zip_file and out.suffix.lower() != ".zip":
        out = out.with_name(out.name + ".zip")
    out = check_output(out, BUNDLE_OUTPUT, overwrite, {"run": run, "data set": data or card.source.get("data")})
    with using_threads(s.threads):  # every export, check and latency figure below
        refs = reference_files(card, data or card.source.get("data"), samples)
        benched, scored = _benched(s.latency_from)
        _export_missing(run, targets)
        tmp = temp_dir_beside(out)
        try:
            root = tmp / "bundle"
            (root / "models").mkdir(parents=True)
            (root / "reference").mkdir()
            entries, expected, truths = {}, {}, {}
            bench_scores: dict[str, tuple[float, str]] = {}  # target: (accuracy, split) as bench measured it
            copied = []
            for i, ref in enumerate(refs):
                dest = root / "reference" / f"{i:02d}_{ref.tag}{ref.path.suffix.lower()}"
                shutil.copyfile(ref.path, dest)
                copied.append(dest)
                if ref.truth is not None:
                    truths[dest.name] = ref.truth
            if truths:  # a detector's true boxes: a device without the data set scores mAP on them
                (root / "reference" / TRUTHS).write_text(json.dumps(truths, indent=1) + "\n")
            for target in targets:
                model = pick_model(run, target)
                entry = TargetEntry(_copy_model(model, root / "models"), read_card(model).precision)
                if target == "tensorrt":
                    entry.build, entry.engine = _engine_build(run, root, entry, out.name)
                backend = BACKENDS[target].target_backend
                answers = functools.partial(predict, model, backend=backend, top_k=len(card.labels))
                expected[target] = reference_answers(answers, copied, root, card.labels, entry.precision, task)
                resolved = str(model.resolve())
                measured = benched.get((resolved, backend))
                if measured is not None:
                    entry.p50_ms_batch1 = round(measured, 3)
                elif backend == target:  # a model emulated elsewhere (TensorRT's on the CPU) has no latency to give
                    x = _one_input(card, copied[0])
                    entry.p50_ms_batch1 = round(_latency_p50(root / entry.model, backend, x), 3)
                entry.accuracy = read_card(model).metrics.get("accuracy", card.metrics.get(f"val_{task.metric}"))
                entries[target] = entry
                if resolved in scored:  # on the validation split the card's figure says it already
                    bench_scores[target] = scored[resolved]
                latency = "latency on the device" if entry.p50_ms_batch1 is None else \
                    f"p50 {entry.p50_ms_batch1:.2f} ms" + (" (bench's)" if measured is not None else "")
                progress.info(f"{target}: {model.name} ({entry.precision}), {latency}")
            (root / "reference" / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
            bundle_card = dataclasses.replace(card, streaming=_streaming_of(run, targets, card))
            bundle_card.save(root)
            (root / "labels.txt").write_text("\n".join(card.labels) + "\n")
            (root / "README.md").write_text(_device_readme(out.name, card, task, entries, copied[0].relative_to(root),
                                                                bench_scores))
            files = {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
            manifest = Manifest(__version__, str(run.resolve()), list(card.labels), card.modality, entries, len(copied), files)
            (root / MANIFEST).write_text(manifest.to_json())
            _publish(root, out, zip_file, overwrite)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return PackageResult(out, entries, len(refs))


def _export_missing(run: Path, targets: list[str]) -> None:
    need_ir = "openvino" in targets and not (run / "model.xml").is_file()
    if not (run / "model.onnx").is_file() or need_ir:
        from edgetl.export import export_run

        progress.info(f"exporting {run} first (the bundle takes exported models)")
        export_run(run, run / "model.onnx", openvino="openvino" in targets, overwrite=True)


def _copy_model(model: Path, folder: Path) -> str:
    shutil.copyfile(model, folder / model.name)
    if model.suffix == ".xml":
        shutil.copyfile(model.with_suffix(".bin"), folder / model.with_suffix(".bin").name)
    return f"models/{model.name}"


def _engine_build(run: Path, root: Path, entry: TargetEntry, name: str) -> tuple[str, str | None]:
    """The command that builds the engine on the device (verify builds it into edgetl's
    engine cache for that GPU and TensorRT version, then checks it), and the run's engine
    if one was built (it runs only where its GPU and TensorRT version are the device's)."""
    command = f"edgetl verify {name}"
    (root / "models" / "build-engine.sh").write_text(
        "#!/bin/sh\n# On the NVIDIA device: builds the TensorRT engine of this bundle for this GPU and TensorRT\n"
        "# version into edgetl's engine cache, then checks it against the reference files.\n"
        'edgetl verify "$(dirname "$0")/.."\n')
    engine = run / "model.engine"
    if engine.is_file() and engine_card_path(engine).is_file():
        shutil.copyfile(engine, root / "models" / engine.name)
        shutil.copyfile(engine_card_path(engine), root / "models" / engine_card_path(engine).name)
        return command, f"models/{engine.name}"
    return command, None


def _streaming_of(run: Path, targets: list[str], card: ModelCard) -> dict[str, Any]:
    """Thresholds picked on an exported model (evaluate --target-fa-per-hour) travel too."""
    for target in targets:
        streaming = read_card(pick_model(run, target)).streaming
        if streaming.get("thresholds"):
            return streaming
    return card.streaming


def _one_input(card: ModelCard, file: Path) -> np.ndarray:
    from edgetl import modality

    return modality.preprocessing_of(card)(file)[None]


def _device_readme(name: str, card: ModelCard, task: Task, entries: dict[str, TargetEntry], example: Path,
                   bench_scores: dict[str, tuple[float, str]]) -> str:
    extras = {t: f"{BACKENDS[t].install}    # {t}" for t in entries}  # the backend table says how

    def figure(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%" if task.metric == "accuracy" else f"{value:.3f}"

    def latency(e: TargetEntry) -> str:  # a target this machine only emulates is timed on the device
        return "on the device: `edgetl bench`" if e.p50_ms_batch1 is None else f"{e.p50_ms_batch1:.2f} ms"

    splits = sorted({split for _, split in bench_scores.values()})
    on = f" | {task.metric_title} on {'/'.join(splits)}" if splits else ""  # bench's split: new data for the model
    rows = "\n".join(f"| {t} | `{e.model}` | {e.precision} | {figure(e.accuracy)}"
                     + (f" | {figure(bench_scores[t][0]) if t in bench_scores else '-'}" if splits else "")
                     + f" | {latency(e)} |" for t, e in entries.items())
    what = "detector" if task.name == "detection" else card.modality
    lines = [f"# {name}: {card.source.get('backbone', 'model')} for {len(card.labels)} classes ({what})", "",
             "Install (no torch needed):", "", *dict.fromkeys(f"    {extras[t]}" for t in entries), "",
             "Check that this device computes what was trained (checksums, then the reference files):", "",
             f"    edgetl verify {name}", "", "Predict:", "", f"    edgetl predict {name} {example}", "",
             f"Measured when packaged (validation {task.metric_title}; batch 1 latency on the packaging machine):", "",
             f"| target | model | precision | {task.metric_title}{on} | p50 |",
             "|---|---|---|---|---|" + ("---|" if splits else ""), rows, ""]
    if "tensorrt" in entries:
        lines += ["TensorRT: an engine is tied to its GPU and TensorRT version, so it is built on the device itself;",
                  "`edgetl verify` builds it there (into edgetl's engine cache) before checking it, and predict then",
                  "runs it. `edgetl doctor` says what this device can run.", ""]
    return "\n".join(lines) + "\n"


def _publish(root: Path, out: Path, zip_file: bool, overwrite: bool) -> None:
    """Move the finished bundle into place, replacing an earlier bundle only (checked)."""
    if zip_file:
        staged = root.parent / out.name
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    z.write(p, str(p.relative_to(root)))
        root = staged
    publish({root: out}, BUNDLE_OUTPUT, overwrite)
