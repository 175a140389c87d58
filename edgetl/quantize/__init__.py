"""INT8 quantization calibrated on the task's own data, with a bounded accuracy drop.

`quantize(model.onnx, target)` -> an INT8 artifact for one target:
- openvino:     NNCF PTQ -> INT8 IR (accuracy control reverts layers to float under --max-drop)
- onnxruntime:  static QDQ for the ORT CPU provider
- tensorrt:     explicit-quantization QDQ ONNX for TensorRT (checked here in ONNX Runtime,
                emulating the integer math; `edgetl build-engine` turns it into an engine)
INT8 is bounded by default: at most DEFAULT_MAX_DROP (one point) of validation accuracy
may be lost; max_drop=None opts out, with a warning. For the QDQ targets the bound is
held by keeping the layers that lose most (measured per layer on calibration data) in
float until the drop holds. A run adapted to another domain has no labelled target data:
it is calibrated on target samples and bounded on other, held-out target samples by
top-1 agreement with the FP32 model (losing at most X of FP32's answers loses at most X
of target accuracy, whatever the labels). `cpu` names the kind of CPU the model is made for
(quantize/cpu.py); the default, portable, computes the same answers on every x86 CPU. With qat=True, when
post-training INT8 still loses too much, the run is fine-tuned with fake quantization
(quantize/qat.py, openvino target). Every output carries its
card (target, calibration, drop, float layers) and passes the INT8 parity gate.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from edgetl import progress
from edgetl._callable import make_package_callable
from edgetl.card import ModelCard, build_fingerprint
from edgetl.data.samples import Samples, bound_samples, calibration_samples
from edgetl.errors import ArtifactError, ConfigError, EdgeTLError
from edgetl.export import write_artifact_card
from edgetl.export.parity import ParityResult, Tolerance, compare, raise_on_failures
from edgetl.outputs import check_output, temp_dir_beside
from edgetl.quantize.cpu import CPU_TARGETS, cpu_target, warn_if_host_differs
from edgetl.quantize.settings import DEFAULT_MAX_DROP, TARGETS, QuantizeSettings

DEFAULT_SUFFIX = {"openvino": ".int8.xml", "onnxruntime": ".int8.onnx", "tensorrt": ".qdq.onnx"}
PARITY_SAMPLES = 64
log = logging.getLogger("edgetl")


class AccuracyDropError(EdgeTLError):
    """INT8 lost more accuracy than --max-drop allows, whatever was kept in float."""


@dataclasses.dataclass
class QuantizeResult:
    out: Path
    target: str
    fp32_accuracy: float
    int8_accuracy: float
    n: int
    float_layers: list[str]
    attempts: list[dict]
    parity: ParityResult
    seconds: float
    method: str = "post-training"  # or "quantization-aware" when QAT was needed
    reference: str = "labels"  # "fp32": unlabelled samples, accuracies are agreement with FP32's answers

    @property
    def drop(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    from edgetl.runtime import open_runner

    with open_runner(path) as runner:
        return runner.infer_all(x, 64)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def _load_fp32(model: Path) -> ModelCard:
    from edgetl.runtime.artifacts import read_onnx_card

    if not model.is_file():
        raise ArtifactError(f"{model} does not exist", hint="make it with `edgetl export RUN`")
    if model.suffix.lower() != ".onnx":
        raise ArtifactError(f"quantize takes the FP32 ONNX model from `edgetl export`, got {model.name}",
                            hint=f"edgetl quantize {model.with_suffix('.onnx')} --target ...")
    card = read_onnx_card(model)
    if card.precision != "fp32":
        raise ArtifactError(f"{model} is already {card.precision}", hint="quantize the FP32 ONNX model")
    return card


def _qdq_with_budget(model: Path, dst: Path, work: Path, target: str, method: str, calib: Samples, val: Samples,
                     fp32_accuracy: float, max_drop: float | None, card: ModelCard, cpu, sensitivity_samples: int = 32):
    """QDQ-quantize; under --max-drop keep the most sensitive layers in float (1, 2, 4, ...
    of them) until the drop holds. Returns (float layers, attempts)."""
    import onnx

    from edgetl.export.onnx_export import frontend_nodes
    from edgetl.quantize.onnx_qdq import QdqScheme, layer_nodes, prepare, quantize_qdq
    from edgetl.quantize.sensitivity import rank_layers

    scheme = QdqScheme.for_target(target, method, cpu)
    prepared = prepare(model, work / "prepared.onnx")
    cache = work / "calibration.json"
    attempts: list[dict] = []
    graph = onnx.load(str(prepared))
    frontend = frontend_nodes(graph)  # a speech model's log-mel front-end stays float
    layers = {name: nodes for name, nodes in layer_nodes(graph).items() if name not in frontend}

    def attempt(exclude: list[str]) -> float:
        nodes = frontend + [n for layer in exclude for n in layers[layer]]
        quantize_qdq(prepared, dst, calib, scheme, nodes, cache)
        write_artifact_card(dst, card)  # the runner reads the target from the card
        accuracy = _accuracy(_logits(dst, val.x), val.labels)
        attempts.append({"float_layers": len(exclude), "accuracy": accuracy, "drop": fp32_accuracy - accuracy})
        progress.info(f"  {len(exclude)} layer(s) in float: accuracy {accuracy:.4f} "
                      f"(drop {100 * (fp32_accuracy - accuracy):.2f} pt)")
        return fp32_accuracy - accuracy

    progress.info(f"calibrating on {len(calib)} samples ({scheme.method}, {scheme.activations} activations"
                  f"{', 7-bit weights for ' + scheme.cpu + ' CPUs' if scheme.reduce_range else ''})")
    drop = attempt([])
    if max_drop is None or drop <= max_drop:
        return [], attempts, scheme
    progress.info(f"drop above --max-drop {100 * max_drop:.2f} pt: ranking layers by quantization error")
    ranked = [name for name, _ in rank_layers(prepared, dst, calib.x[:sensitivity_samples]) if name in layers]
    k = 1
    while True:
        k = min(k, len(ranked))
        if attempt(ranked[:k]) <= max_drop:
            if 2 * k > len(ranked):
                log.warning(f"INT8 for {target} holds --max-drop {100 * max_drop:.2f} pt only with {k} of {len(ranked)} "
                            "layers in float, so little of INT8's speed is left: allow a larger --max-drop or "
                            "calibrate on more representative data"
                            + (", or use --cpu vnni if every device has VNNI/AMX" if scheme.reduce_range else ""))
            return ranked[:k], attempts, scheme
        if k == len(ranked):
            break
        k *= 2
    best = min(attempts, key=lambda a: a["drop"])
    raise AccuracyDropError(
        f"INT8 for {target} loses {100 * best['drop']:.2f} pt at best ({best['float_layers']} of {len(ranked)} "
        f"layers in float), above --max-drop {100 * max_drop:.2f} pt",
        hint="allow a larger --max-drop, try --calibration entropy or percentile, or calibrate on more "
             "representative data (--calib, --samples)")


def quantize(model, target: str | None = None, settings: QuantizeSettings | None = None, out=None,
             overwrite: bool = False, **options) -> QuantizeResult:
    """Quantize the FP32 ONNX `model` for `target`; see the module docstring. `settings`
    (or its fields as keyword options): QuantizeSettings."""
    started = time.perf_counter()
    model = Path(model)
    if settings is None:
        settings = QuantizeSettings.of(target=target, **options)
    else:
        settings = QuantizeSettings.of(settings.replace(target=target) if target else settings)
    s = settings
    target, calib, val, max_drop, samples, method, seed = s.target, s.calib, s.val, s.max_drop, s.samples, s.method, s.seed
    qat, cpu, nncf_options, qat_options = s.qat, s.cpu, s.nncf_options, s.qat_options
    cpu_kind = cpu_target(cpu)
    if target != "tensorrt":
        warn_if_host_differs(cpu_kind)
    if max_drop is None:
        log.warning("INT8 accuracy is not bounded (--max-drop none): the model is written whatever it loses; "
                    "only the parity gate's 90% top-1 agreement with FP32 is checked")
    card = _load_fp32(model)
    out = Path(out) if out else model.with_name(model.stem + DEFAULT_SUFFIX[target])
    if out.suffix.lower() != TARGETS[target]:
        raise ConfigError(f"--out for {target} must end in {TARGETS[target]}, got {out.name}",
                          hint=f"e.g. --out {out.with_suffix(TARGETS[target])}")
    out = check_output(out, "model", overwrite, {"input model": model, "calibration data": calib,
                                                 "validation data": val, "data set": card.source.get("data")})
    calib_samples = calibration_samples(card, calib, samples, seed)
    val_samples = bound_samples(card, val, calib, samples, seed)
    reference = "labels" if val_samples.labels is not None else "fp32"
    if max_drop is not None and 1 / len(val_samples) > max_drop:
        log.warning(f"with {len(val_samples)} validation samples one changed answer is {100 / len(val_samples):.2f} pt, "
                    f"more than --max-drop {100 * max_drop:.2f} pt: INT8 may lose no answer at all "
                    "(pass --val with more labelled samples for a finer bound)")
    progress.info(f"measuring FP32 accuracy on {len(val_samples)} validation samples" if reference == "labels" else
                  f"bounding INT8 by its agreement with FP32 on {len(val_samples)} unlabelled target samples "
                  "held out from calibration")
    fp32_logits = _logits(model, val_samples.x)
    if reference == "fp32":  # an accuracy drop against FP32's own answers bounds the drop against any labels
        val_samples = dataclasses.replace(val_samples, labels=fp32_logits.argmax(1))
    fp32_accuracy = _accuracy(fp32_logits, val_samples.labels)

    work = temp_dir_beside(out)
    try:
        tmp_out = work / out.name
        int8_card = dataclasses.replace(card, precision="int8", metrics=dict(card.metrics), build=build_fingerprint())
        quantization = {"target": target, "max_drop": max_drop,
                        "cpu": cpu_kind.to_dict() if target != "tensorrt" else None,
                        "calibration": {"data": calib_samples.source, "samples": len(calib_samples), "seed": seed},
                        "validation": {"data": val_samples.source, "n": len(val_samples), "reference": reference}}
        int8_card.source = {**card.source, "fp32_model": str(model.resolve()), "quantization": quantization}
        if target == "openvino":
            options = nncf_options
            progress.info(f"NNCF {'accuracy-controlled ' if max_drop is not None else ''}quantization on "
                          f"{len(calib_samples)} calibration samples ({options.preset} preset)")
            from edgetl.quantize.openvino import quantize_openvino

            float_layers = quantize_openvino(model, tmp_out, calib_samples, options, val_samples, max_drop,
                                             cpu=cpu_kind)
            attempts, settings = [], options.to_dict()
        else:
            float_layers, attempts, scheme = _qdq_with_budget(model, tmp_out, work, target, method, calib_samples,
                                                              val_samples, fp32_accuracy, max_drop, int8_card, cpu_kind)
            settings = scheme.to_dict()
        quantization.update(settings=settings, float_layers=float_layers, attempts=attempts, method="post-training")
        write_artifact_card(tmp_out, int8_card)
        int8_accuracy, parity = _measure_int8(tmp_out, fp32_logits, val_samples, max_drop)
        if qat and fp32_accuracy - int8_accuracy > max_drop + 1e-9:
            from edgetl.quantize.qat import qat_openvino

            ptq_drop = fp32_accuracy - int8_accuracy
            progress.info(f"post-training INT8 loses {100 * ptq_drop:.2f} pt, above --max-drop {100 * max_drop:.2f} pt: "
                          "quantization-aware fine-tuning")
            attempts.append({"method": "post-training", "float_layers": len(float_layers), "accuracy": int8_accuracy,
                             "drop": ptq_drop})
            report = qat_openvino(card, tmp_out, calib_samples, qat_options, seed, cpu_kind)
            float_layers = []
            quantization.update(method="quantization-aware", float_layers=float_layers,
                                qat={**report, "needed_because": f"post-training INT8 lost {100 * ptq_drop:.2f} pt"})
            write_artifact_card(tmp_out, int8_card)
            int8_accuracy, parity = _measure_int8(tmp_out, fp32_logits, val_samples, max_drop)
            attempts.append({"method": "quantization-aware", "float_layers": 0, "accuracy": int8_accuracy,
                             "drop": fp32_accuracy - int8_accuracy})
        if max_drop is not None and fp32_accuracy - int8_accuracy > max_drop + 1e-9:
            lost = (f"loses {100 * (fp32_accuracy - int8_accuracy):.2f} pt" if reference == "labels" else
                    f"changes {100 * (1 - int8_accuracy):.2f}% of FP32's answers on held-out target samples")
            raise AccuracyDropError(
                f"INT8 for {target} {lost} ({len(float_layers)} layers in float), above --max-drop {100 * max_drop:.2f} pt",
                hint="allow a larger --max-drop" + (", or more --qat-epochs" if qat else ", or fine-tune with --qat"))
        parity.artifact = str(out)
        if reference == "labels":
            int8_card.metrics.update(accuracy=int8_accuracy, fp32_accuracy=fp32_accuracy)
        else:  # no target labels: the run's own accuracy figures stay; 1 - agreement bounds the target loss
            int8_card.metrics.update(target_agreement=int8_accuracy)
        int8_card.metrics.update(accuracy_drop=fp32_accuracy - int8_accuracy, parity=parity.to_dict())
        write_artifact_card(tmp_out, int8_card)
        raise_on_failures([parity])
        for f in work.iterdir():
            if f.name.startswith(out.stem + "."):
                os.replace(f, out.parent / f.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return QuantizeResult(out, target, fp32_accuracy, int8_accuracy, len(val_samples), float_layers, attempts,
                          parity, time.perf_counter() - started, quantization["method"], reference)


def int8_min_agreement(max_drop: float | None, fp32_accuracy: float, default: float) -> float:
    """The top-1 agreement with FP32 that INT8 parity needs. With --max-drop X the bound is
    checked on the whole validation split and agreement only guards against a broken
    model, so it must not refuse what the bound allows: a drop of X with each lost answer
    offset by a gained one changes 2X of the answers, and FP32's wrong answers may turn
    into other wrong ones at no cost in accuracy (a QAT model that held a 5-point bound
    agreed on 89% of the parity samples, its FP32 model right on 91%)."""
    if max_drop is None:
        return default
    return min(default, 1.0 - 2 * max_drop - (1.0 - fp32_accuracy))


def _measure_int8(path: Path, fp32_logits: np.ndarray, val: Samples, max_drop: float | None
                  ) -> tuple[float, ParityResult]:
    """Accuracy on the whole validation split and INT8 parity against the FP32 model,
    with one load of the INT8 model. Parity is top-1 agreement (and both accuracies), not
    max-abs; the agreement needed follows --max-drop (`int8_min_agreement`)."""
    from edgetl.runtime import open_runner

    tolerance = Tolerance.for_precision("int8")
    tolerance = dataclasses.replace(tolerance, min_agreement=int8_min_agreement(
        max_drop, _accuracy(fp32_logits, val.labels), tolerance.min_agreement))
    step = max(1, len(val) // PARITY_SAMPLES)
    idx = np.arange(0, len(val), step)[:PARITY_SAMPLES]
    with open_runner(path) as runner:
        accuracy = _accuracy(runner.infer_all(val.x, 64), val.labels)
        # Batch 1 on every parity sample, not the first 8: INT8 may flip near-ties, and one
        # flip in 8 would read as 12.5% of answers changed.
        return accuracy, compare(fp32_logits[idx], runner, val.x[idx], val.labels[idx], tolerance,
                                 single_samples=len(idx))


make_package_callable(__name__, "edgetl.quantize:quantize")

__all__ = ["CPU_TARGETS", "DEFAULT_MAX_DROP", "TARGETS", "AccuracyDropError", "QuantizeResult", "quantize"]
