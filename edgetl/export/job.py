"""Export a fine-tuned run to ONNX (and OpenVINO IR) behind the parity gate."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from edgetl.core import progress
from edgetl.core.card import ModelCard, build_fingerprint
from edgetl.core.errors import ConfigError
from edgetl.core.outputs import check_output, publish, temp_dir_beside
from edgetl.core.threads import using_threads
from edgetl.export.parity import ParityResult, Tolerance, compare, parity_inputs, raise_on_failures
from edgetl.export.settings import ExportSettings
from edgetl.runtime.artifacts import MODEL_OUTPUT


@dataclasses.dataclass
class ExportResult:
    onnx: Path
    openvino: Path | None
    parity: list[ParityResult]
    info: dict


def _reference_logits(model, x: np.ndarray, batch: int = 16) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])


def write_artifact_card(path: Path, card: ModelCard) -> None:
    """Replace the card of an artifact, where its kind keeps it (runtime/artifacts.py)."""
    from edgetl.runtime.artifacts import write_card

    write_card(path, card)


def check_artifacts(model, card: ModelCard, artifacts, data=None, atol: float | None = None, samples: int = 64,
                    static_batch: int | None = None) -> list[ParityResult]:
    """Compare each artifact (on the backend its kind selects) with the PyTorch model.

    Dynamic-batch models run at batch 16 and one by one; a static-batch model takes
    exactly its batch, so the samples are trimmed to whole batches."""
    from edgetl.runtime import open_runner

    x, labels = parity_inputs(card, data, samples)
    if static_batch:
        n = len(x) // static_batch * static_batch
        if n == 0:
            raise ConfigError(f"fewer validation samples ({len(x)}) than --static-batch {static_batch}",
                              hint=f"use --static-batch {len(x)} or less, or pass --data with more samples")
        x, labels = x[:n], labels[:n]
    reference = _reference_logits(model, x)
    batching = dict(batch=static_batch, single_samples=0) if static_batch else {}
    results = []
    for path in artifacts:
        with open_runner(path) as runner:
            tolerance = Tolerance.for_precision(runner.card.precision, atol)
            results.append(compare(reference, runner, x, labels, tolerance, **batching))
    return results


def verify(run, artifacts, data=None, atol: float | None = None, samples: int = 64) -> list[ParityResult]:
    """The parity gate for existing artifacts of `run`; raises ParityError on any failure."""
    from edgetl.finetune.run import load_run

    model, card = load_run(run)
    results = check_artifacts(model, card, artifacts, data, atol, samples)
    raise_on_failures(results)
    return results


def export_run(run, out=None, settings: ExportSettings | None = None, overwrite: bool = False,
               **options) -> ExportResult:
    """RUN -> model.onnx (+ model.xml/.bin): written to a temporary folder, checked
    against PyTorch on real samples, then moved into place with the parity in the card.
    `settings` (or its fields as keyword options): ExportSettings."""
    from edgetl.export.onnx_export import DEFAULT_OPSET, export_onnx
    from edgetl.export.openvino_ir import export_openvino
    from edgetl.finetune.run import load_run
    from edgetl.finetune.training import set_torch_threads

    s = ExportSettings.of(settings, **options)
    opset, static_batch, openvino, fp16, atol, data, samples = (s.opset, s.static_batch, s.openvino, s.fp16, s.atol,
                                                                s.data, s.samples)
    with using_threads(s.threads) as threads:
        set_torch_threads(threads)
        model, run_card = load_run(run)
        out = Path(out) if out else Path(run) / "model.onnx"
        if out.suffix.lower() != ".onnx":
            raise ConfigError(f"--out must end in .onnx, got {out.name}", hint=f"e.g. --out {out.with_suffix('.onnx')}")
        inputs = {"data set": data or run_card.source.get("data")}
        out = check_output(out, MODEL_OUTPUT, overwrite, inputs)
        if openvino:
            check_output(out.with_suffix(".xml"), MODEL_OUTPUT, overwrite, inputs)
        tmp = temp_dir_beside(out)
        try:
            card = dataclasses.replace(run_card, precision="fp32", metrics=dict(run_card.metrics))
            if static_batch:
                card.input = {**card.input, "shape": [static_batch, *card.input["shape"][1:]]}
            onnx_tmp = tmp / out.name
            progress.info(f"exporting {run} to ONNX")
            info = export_onnx(model, card, onnx_tmp, opset or DEFAULT_OPSET, static_batch)
            card.source = {**card.source, "export": {**info, "threads": threads}, "run": str(Path(run).resolve())}
            card.build = build_fingerprint()  # after the export, so onnx/onnxruntime versions are recorded
            write_artifact_card(onnx_tmp, card)
            cards = {onnx_tmp: card}
            if openvino:
                xml_tmp = tmp / (out.stem + ".xml")
                cards[xml_tmp] = dataclasses.replace(card, precision="fp16" if fp16 else "fp32",
                                                     metrics=dict(card.metrics))
                progress.info(f"converting to OpenVINO IR ({cards[xml_tmp].precision})")
                export_openvino(onnx_tmp, xml_tmp, cards[xml_tmp], fp16)
            results = check_artifacts(model, run_card, list(cards), data, atol, samples, static_batch)
            for (path, artifact_card), result in zip(cards.items(), results, strict=True):
                result.artifact = str(out.parent / path.name)
                artifact_card.metrics["parity"] = result.to_dict()
                write_artifact_card(path, artifact_card)
            raise_on_failures(results)
            publish({f: out.parent / f.name for f in tmp.iterdir()}, MODEL_OUTPUT, overwrite)
            return ExportResult(out, out.with_suffix(".xml") if openvino else None, results, info)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["ExportResult", "ExportSettings", "check_artifacts", "export_run", "verify", "write_artifact_card"]
