"""Export a fine-tuned run to ONNX (and OpenVINO IR) behind the parity gate."""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgetl import progress
from edgetl.card import ModelCard
from edgetl.errors import ConfigError
from edgetl.export.parity import ParityResult, Tolerance, compare, parity_inputs, raise_on_failures


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


def verify(run, artifacts, data=None, atol: float | None = None, samples: int = 64, raise_errors: bool = True
           ) -> list[ParityResult]:
    """Compare artifacts (ONNX on ONNX Runtime, IR on OpenVINO) with the run's PyTorch model."""
    from edgetl.finetune.run import load_run
    from edgetl.runtime import open_runner

    model, card = load_run(run)
    x, labels = parity_inputs(card, data, samples)
    reference = _reference_logits(model, x)
    results = []
    for path in artifacts:
        with open_runner(path) as runner:
            results.append(compare(reference, runner, x, labels, Tolerance.for_precision(runner.card.precision, atol)))
    if raise_errors:
        raise_on_failures(results)
    return results


def export_run(run, out=None, opset: int | None = None, static_batch: int | None = None, openvino: bool = False,
               fp16: bool = False, atol: float | None = None, data=None, samples: int = 64,
               overwrite: bool = True) -> ExportResult:
    """RUN -> model.onnx (+ model.xml/.bin): written to a temporary folder, checked
    against PyTorch on real samples, then moved into place with the parity in the card."""
    from edgetl.export.onnx_export import DEFAULT_OPSET, export_onnx, set_card
    from edgetl.export.openvino_ir import export_openvino, set_openvino_card
    from edgetl.finetune.run import load_run

    if static_batch is not None and static_batch < 1:
        raise ConfigError(f"--static-batch must be at least 1, got {static_batch}")
    if fp16 and not openvino:
        raise ConfigError("--fp16 applies to the OpenVINO IR", hint="add --openvino")
    model, run_card = load_run(run)
    out = Path(out) if out else Path(run) / "model.onnx"
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out must end in .onnx, got {out.name}")
    if not overwrite and out.exists():
        raise ConfigError(f"{out} already exists", hint="choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        card = dataclasses.replace(run_card, precision="fp32", metrics=dict(run_card.metrics))
        if static_batch:
            card.input = {**card.input, "shape": [static_batch, *card.input["shape"][1:]]}
        onnx_tmp = tmp / out.name
        progress.info(f"exporting {run} to ONNX")
        info = export_onnx(model, card, onnx_tmp, opset or DEFAULT_OPSET, static_batch)
        card.source = {**card.source, "export": info, "run": str(Path(run).resolve())}
        set_card_file(onnx_tmp, card, set_card)
        artifacts = [onnx_tmp]
        if openvino:
            ov_card = dataclasses.replace(card, precision="fp16" if fp16 else "fp32")
            xml_tmp = tmp / (out.stem + ".xml")
            progress.info(f"converting to OpenVINO IR ({ov_card.precision})")
            export_openvino(onnx_tmp, xml_tmp, ov_card, fp16)
            artifacts.append(xml_tmp)
        if static_batch and static_batch != 1:
            progress.info(f"static batch {static_batch}: parity runs at that batch only")
        results = verify(run, artifacts, data, atol, samples, raise_errors=False) if not static_batch else \
            _verify_static(run, artifacts, data, atol, static_batch)
        for path, result in zip(artifacts, results):
            result.artifact = str(out.parent / path.name)
            if path.suffix == ".onnx":
                card.metrics["parity"] = result.to_dict()
                set_card_file(path, card, set_card)
            else:
                ov_card.metrics["parity"] = result.to_dict()
                set_openvino_card(path, ov_card)
        raise_on_failures(results)
        for f in tmp.iterdir():
            os.replace(f, out.parent / f.name)
        return ExportResult(out, out.with_suffix(".xml") if openvino else None, results, info)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _verify_static(run, artifacts, data, atol, batch) -> list[ParityResult]:
    """A static-batch model takes exactly `batch` inputs: compare on whole batches."""
    from edgetl.finetune.run import load_run
    from edgetl.runtime import open_runner

    model, card = load_run(run)
    x, labels = parity_inputs(card, data, max(batch, 64 // batch * batch))
    n = len(x) // batch * batch
    if n == 0:
        raise ConfigError(f"fewer validation samples ({len(x)}) than --static-batch {batch}")
    x, labels = x[:n], labels[:n]
    reference = _reference_logits(model, x)
    results = []
    for path in artifacts:
        with open_runner(path) as runner:
            results.append(compare(reference, runner, x, labels, Tolerance.for_precision(runner.card.precision, atol),
                                   batches=(batch,), batch1_samples=batch))
    return results


def set_card_file(onnx_path: Path, card: ModelCard, set_card) -> None:
    import onnx

    proto = onnx.load(str(onnx_path))
    set_card(proto, card)
    onnx.save(proto, str(onnx_path))


__all__ = ["ExportResult", "export_run", "verify"]
