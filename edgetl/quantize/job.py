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
import shutil
import time
from pathlib import Path

import numpy as np

from edgetl.core import progress
from edgetl.core.card import ModelCard, build_fingerprint
from edgetl.core.errors import ArtifactError, ConfigError, EdgeTLError
from edgetl.core.metrics import drop_interval
from edgetl.core.outputs import check_output, publish, temp_dir_beside
from edgetl.core.threads import using_threads
from edgetl.data.samples import Samples, bound_samples, calibration_samples
from edgetl.export import write_artifact_card
from edgetl.export.parity import ParityResult, Tolerance, compare, headings, raise_on_failures
from edgetl.quantize.cpu import CPU_TARGETS, CpuTarget, cpu_target, warn_if_host_differs
from edgetl.quantize.settings import DEFAULT_MAX_DROP, TARGETS, QuantizeSettings
from edgetl.quantize.threads import library_threads
from edgetl.runtime.artifacts import MODEL_OUTPUT, read_card
from edgetl.runtime.backend_table import BACKENDS
from edgetl.task import Task, task_of
from edgetl.task import get as get_task

DEFAULT_SUFFIX = {name: BACKENDS[name].int8_suffix for name in TARGETS}  # beside the FP32 model
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
    drop_ci95: list[float] | None = None  # the drop's 95% interval on those samples (accuracy only)

    @property
    def drop(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    from edgetl.runtime import open_runner

    with open_runner(path) as runner:
        return runner.infer_all(x, 64)


def _accuracy(logits: np.ndarray, truths, task: Task, labels: list[str]) -> float:
    """The task's metric (its primary figure: accuracy, a detector's mAP), what --max-drop bounds."""
    return task.score(logits, truths, labels).value


def _rows(truths, idx: np.ndarray):
    """Some samples' truths: class indices (an array) or a detector's boxes (a list)."""
    return truths[idx] if isinstance(truths, np.ndarray) else [truths[i] for i in idx]


def _load_fp32(model: Path, target: str) -> ModelCard:
    """The FP32 model's card: an ONNX model for every target; an OpenVINO IR for a target
    NNCF quantizes (an IR imported without an ONNX model)."""
    if not model.is_file():
        raise ArtifactError(f"{model} does not exist", hint="make it with `edgetl export RUN`")
    takes_ir = BACKENDS[target].quantizer == "nncf"
    if model.suffix.lower() != ".onnx" and not (takes_ir and model.suffix.lower() == ".xml"):
        raise ArtifactError(f"quantize takes the FP32 ONNX model from `edgetl export`, got {model.name}",
                            hint=f"edgetl quantize {model.with_suffix('.onnx')} --target ...")
    card = read_card(model)
    if card.precision != "fp32":
        raise ArtifactError(f"{model} is already {card.precision}", hint="quantize the FP32 ONNX model")
    return card


def _qdq_with_budget(model: Path, dst: Path, work: Path, target: str, method: str, calib: Samples, val: Samples,
                     ref: _Reference, max_drop: float | None, card: ModelCard, cpu, sensitivity_samples: int = 32):
    """QDQ-quantize; keep the most sensitive layers in float (1, 2, 4, ... of them) until
    the model meets the one acceptance rule the published model is checked by
    (`_measure_int8`, on the same samples): the drop within --max-drop, and the parity
    gate's top-1 agreement with FP32. Returns (float layers, attempts, scheme, and the
    (accuracy, parity, disagreement) of the model left at `dst`, measured once, not again by the caller)."""
    import onnx

    from edgetl.export.onnx_export import frontend_nodes
    from edgetl.quantize.onnx_qdq import QdqScheme, layer_nodes, prepare, quantize_qdq, shape_nodes, tail_nodes
    from edgetl.quantize.sensitivity import rank_layers

    scheme = QdqScheme.for_target(target, method, cpu)
    prepared = prepare(model, work / "prepared.onnx")
    cache = work / "calibration.json"
    fp32_accuracy = ref.fp32_accuracy
    attempts: list[dict] = []
    measured: list[tuple] = []  # (accuracy, parity, disagreement) of the last attempt: the model at `dst`
    graph = onnx.load(str(prepared))
    # a speech model's log-mel front-end, shape arithmetic, and what follows the last weighted layer
    kept_float = frontend_nodes(graph) + shape_nodes(graph) + tail_nodes(graph)
    layers = {name: nodes for name, nodes in layer_nodes(graph).items() if name not in kept_float}

    def attempt(exclude: list[str]) -> bool:
        """Whether INT8 with `exclude` in float is accepted (the rule the gate applies)."""
        nodes = kept_float + [n for layer in exclude for n in layers[layer]]
        quantize_qdq(prepared, dst, calib, scheme, nodes, cache)
        write_artifact_card(dst, card)  # the runner reads the target from the card
        accuracy, parity, disagreement = _measure_int8(dst, ref.fp32_logits, val, max_drop)
        measured[:] = [(accuracy, parity, disagreement)]
        drop = fp32_accuracy - accuracy
        attempts.append({"float_layers": len(exclude), "accuracy": accuracy, "drop": drop,
                         "agreement": parity.agreement, "agreement_needed": parity_needed(max_drop, fp32_accuracy)})
        agree = headings(parity.task)[1]
        progress.info(f"  {len(exclude)} layer(s) in float: {get_task(parity.task).metric_title} {accuracy:.4f} "
                      f"(drop {100 * drop:.2f} pt), "
                      f"{agree} {parity.agreement:.1%} on {parity.n} samples")
        # Without a bound the model is written as it is (the gate alone judges it after).
        return max_drop is None or (drop <= max_drop and parity.passed)

    progress.info(f"calibrating on {len(calib)} samples ({scheme.method}, {scheme.activations} activations"
                  f"{', 7-bit weights for ' + scheme.cpu + ' CPUs' if scheme.reduce_range else ''})")
    if attempt([]):
        return [], attempts, scheme, measured[0]
    progress.info(f"INT8 does not meet --max-drop {100 * max_drop:.2f} pt and its agreement with FP32: ranking "
                  "layers by quantization error")
    ranked = [name for name, _ in rank_layers(prepared, dst, calib.x[:sensitivity_samples]) if name in layers]
    k = 1
    while True:
        k = min(k, len(ranked))
        if attempt(ranked[:k]):
            warn_if_mostly_float(target, k, len(ranked), max_drop,
                                 ", or use --cpu vnni if every device has VNNI/AMX" if scheme.reduce_range else "")
            return ranked[:k], attempts, scheme, measured[0]
        if k == len(ranked):
            break
        k *= 2
    tried = ", ".join(f"{a['float_layers']} in float: drop {100 * a['drop']:.2f} pt, agreement {a['agreement']:.1%}"
                      for a in attempts)
    needed = (f"a drop of at most {100 * max_drop:.2f} pt and top-1 agreement of at least "
              f"{attempts[-1]['agreement_needed']:.0%} with FP32")
    raise AccuracyDropError(
        f"INT8 for {target} meets its rule ({needed}) with no number of its {len(ranked)} layers in float; "
        f"tried {tried}",
        hint="allow a larger --max-drop, try --calibration entropy or percentile, or calibrate on more "
             "representative data (--calib, --samples)")


@dataclasses.dataclass
class _Job:
    """One quantization: its settings, the FP32 model and card, where it goes."""

    model: Path
    settings: QuantizeSettings
    card: ModelCard
    out: Path
    cpu: CpuTarget
    overwrite: bool = False


@dataclasses.dataclass
class _Reference:
    """What INT8 is judged against: the calibration and bound samples, FP32's answers."""

    calib: Samples
    val: Samples  # labels, or FP32's own answers for an adapted run's unlabelled target samples
    kind: str  # "labels" | "fp32"
    fp32_logits: np.ndarray
    fp32_accuracy: float


@dataclasses.dataclass
class _Int8:
    """The INT8 model in the work folder, its card, and how it scored."""

    path: Path
    card: ModelCard
    record: dict  # the card's source.quantization
    float_layers: list[str]
    attempts: list[dict]
    accuracy: float = float("nan")
    parity: ParityResult | None = None
    disagreement: float = float("nan")  # share of all bound samples whose answer differs from FP32's


def quantize(model, target: str | None = None, settings: QuantizeSettings | None = None, out=None,
             overwrite: bool = False, **options) -> QuantizeResult:
    """Quantize the FP32 ONNX `model` for `target`; see the module docstring. `settings`
    (or its fields as keyword options): QuantizeSettings. The steps: prepare (every check
    before any work), reference (FP32 on the bound samples), post-training INT8, QAT when
    that cannot hold the bound and --qat allows it, the bound, then the model moved into
    place with its card."""
    started = time.perf_counter()
    if settings is None:
        settings = QuantizeSettings.of(target=target, **options)
    else:
        settings = QuantizeSettings.of(settings.replace(target=target) if target else settings)
    job = _prepare(Path(model), settings, out, overwrite)
    with using_threads(settings.threads) as threads, library_threads(threads):
        ref = _reference(job)
        work = temp_dir_beside(job.out)
        try:
            int8 = _post_training(job, ref, work)
            int8.record["threads"] = threads
            if settings.qat and ref.fp32_accuracy - int8.accuracy > settings.max_drop + 1e-9:
                _quantization_aware(job, ref, int8)
            _check_bound(job, ref, int8)
            _publish(job, ref, int8, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return QuantizeResult(job.out, settings.target, ref.fp32_accuracy, int8.accuracy, len(ref.val), int8.float_layers,
                          int8.attempts, int8.parity, time.perf_counter() - started, int8.record["method"], ref.kind,
                          _interval(job, ref, int8))


def _prepare(model: Path, s: QuantizeSettings, out, overwrite: bool) -> _Job:
    cpu_kind = cpu_target(s.cpu)
    if "cpu" in BACKENDS[s.target].devices:  # the kind of x86 CPU matters where the model runs on one
        warn_if_host_differs(cpu_kind)
    if s.max_drop is None:
        log.warning("INT8 accuracy is not bounded (--max-drop none): the model is written whatever it loses; "
                    "only the parity gate's 90% top-1 agreement with FP32 is checked")
    card = _load_fp32(model, s.target)
    out = Path(out) if out else model.with_name(model.stem + DEFAULT_SUFFIX[s.target])
    if out.suffix.lower() != TARGETS[s.target]:
        raise ConfigError(f"--out for {s.target} must end in {TARGETS[s.target]}, got {out.name}",
                          hint=f"e.g. --out {out.with_suffix(TARGETS[s.target])}")
    out = check_output(out, MODEL_OUTPUT, overwrite, {"input model": model, "calibration data": s.calib,
                                                 "validation data": s.val, "data set": card.source.get("data")})
    return _Job(model, s, card, out, cpu_kind, overwrite)


def _reference(job: _Job) -> _Reference:
    s = job.settings
    calib = calibration_samples(job.card, s.calib, s.samples, s.seed)
    val = bound_samples(job.card, s.val, s.calib, s.samples, s.seed)
    kind = "labels" if val.labels is not None else "fp32"
    task = task_of(job.card)
    # accuracy moves in steps of one answer (mAP has no such step)
    if s.max_drop is not None and 1 / len(val) > s.max_drop and (task.metric == "accuracy" or kind == "fp32"):
        log.warning(f"with {len(val)} validation samples one changed answer is {100 / len(val):.2f} pt, "
                    f"more than --max-drop {100 * s.max_drop:.2f} pt: INT8 may lose no answer at all "
                    "(pass --val with more labelled samples for a finer bound)")
    progress.info(f"measuring FP32 {task.metric_title} on {len(val)} validation samples" if kind == "labels" else
                  f"bounding INT8 by its agreement with FP32 on {len(val)} unlabelled target samples "
                  "held out from calibration")
    fp32_logits = _logits(job.model, val.x)
    if kind == "fp32":  # an accuracy drop against FP32's own answers bounds the drop against any labels
        val = dataclasses.replace(val, labels=task.predictions(fp32_logits))
    return _Reference(calib, val, kind, fp32_logits, _accuracy(fp32_logits, val.labels, task, list(job.card.labels)))


def _post_training(job: _Job, ref: _Reference, work: Path) -> _Int8:
    """Post-training INT8 in the work folder (layers kept in float to hold the bound)."""
    s, path = job.settings, work / job.out.name
    card = dataclasses.replace(job.card, precision="int8", metrics=dict(job.card.metrics), build=build_fingerprint())
    record = {"target": s.target, "max_drop": s.max_drop,
              "cpu": job.cpu.to_dict() if "cpu" in BACKENDS[s.target].devices else None,
              "calibration": {"data": ref.calib.source, "samples": len(ref.calib), "seed": s.seed},
              "validation": {"data": ref.val.source, "n": len(ref.val), "reference": ref.kind}}
    card.source = {**job.card.source, "fp32_model": str(job.model.resolve()), "quantization": record}
    float_layers, attempts, scheme, measured = QUANTIZERS[BACKENDS[s.target].quantizer](job, ref, path, work, card)
    record.update(settings=scheme, float_layers=float_layers, attempts=attempts, method="post-training")
    write_artifact_card(path, card)
    int8 = _Int8(path, card, record, float_layers, attempts)
    int8.accuracy, int8.parity, int8.disagreement = measured or _measure_int8(path, ref.fp32_logits, ref.val,
                                                                              s.max_drop)
    return int8


def _nncf(job: _Job, ref: _Reference, path: Path, work: Path, card: ModelCard):
    """OpenVINO's INT8 IR by NNCF (accuracy control keeps layers in float under the bound)."""
    from edgetl.quantize.openvino import quantize_openvino

    s = job.settings
    progress.info(f"NNCF {'accuracy-controlled ' if s.max_drop is not None else ''}quantization on "
                  f"{len(ref.calib)} calibration samples ({s.nncf_options.preset} preset)")
    task = task_of(job.card)
    float_layers, searched = quantize_openvino(job.model, path, ref.calib, s.nncf_options, ref.val, s.max_drop,
                                               cpu=job.cpu, task=task, labels=list(job.card.labels))
    if s.max_drop is not None:
        warn_if_mostly_float(s.target, len(float_layers), searched, s.max_drop, ", or --qat")
    ranking = {"ranking_samples": min(task.ranking_samples, len(ref.val))} if s.max_drop is not None else {}
    return float_layers, [], {**s.nncf_options.to_dict(), **ranking}, None


def warn_if_mostly_float(target: str, kept: int, total: int, max_drop: float, remedy: str = "") -> None:
    """An INT8 model that holds its bound only with most of its layers in float keeps little
    of INT8's speed, and can be slower than FP32 (conversions at every boundary: an adapted
    digits IR with 52 of 60 operations in float ran 5.5 ms against FP32's 1.9 ms)."""
    if total and 2 * kept > total:
        log.warning(f"INT8 for {target} holds --max-drop {100 * max_drop:.2f} pt only with {kept} of {total} "
                    "layers in float, so little of INT8's speed is left (bench says whether it is slower than FP32): "
                    f"allow a larger --max-drop or calibrate on more representative data{remedy}")


def _qdq(job: _Job, ref: _Reference, path: Path, work: Path, card: ModelCard):
    """A Q/DQ ONNX model for the target, layers kept in float by sensitivity until the bound holds."""
    s = job.settings
    float_layers, attempts, scheme, measured = _qdq_with_budget(job.model, path, work, s.target, s.method, ref.calib,
                                                                ref.val, ref, s.max_drop, card, job.cpu)
    return float_layers, attempts, scheme.to_dict(), measured


# The ways an INT8 model is made, named by the backend table's `quantizer`: each returns
# (layers kept in float, attempts, the scheme's settings, (accuracy, parity) if measured).
QUANTIZERS = {"nncf": _nncf, "qdq": _qdq}


def _quantization_aware(job: _Job, ref: _Reference, int8: _Int8) -> None:
    """Fine-tune the run with fake quantization (openvino), in place of the PTQ model."""
    from edgetl.quantize.qat import qat_openvino

    s = job.settings
    ptq_drop = ref.fp32_accuracy - int8.accuracy
    progress.info(f"post-training INT8 loses {100 * ptq_drop:.2f} pt, above --max-drop {100 * s.max_drop:.2f} pt: "
                  "quantization-aware fine-tuning")
    int8.attempts.append({"method": "post-training", "float_layers": len(int8.float_layers), "accuracy": int8.accuracy,
                          "drop": ptq_drop})
    report = qat_openvino(job.card, int8.path, ref.calib, s.qat_options, s.seed, job.cpu)
    int8.float_layers = []
    int8.record.update(method="quantization-aware", float_layers=int8.float_layers,
                       qat={**report, "needed_because": f"post-training INT8 lost {100 * ptq_drop:.2f} pt"})
    write_artifact_card(int8.path, int8.card)
    int8.accuracy, int8.parity, int8.disagreement = _measure_int8(int8.path, ref.fp32_logits, ref.val, s.max_drop)
    int8.attempts.append({"method": "quantization-aware", "float_layers": 0, "accuracy": int8.accuracy,
                          "drop": ref.fp32_accuracy - int8.accuracy})


def _interval(job: _Job, ref: _Reference, int8: _Int8) -> list[float] | None:
    """The drop's 95% interval where the metric moves by answers (accuracy; mAP does not)."""
    if task_of(job.card).metric != "accuracy":
        return None
    return list(drop_interval(ref.fp32_accuracy - int8.accuracy, int8.disagreement, len(ref.val)))


def _check_bound(job: _Job, ref: _Reference, int8: _Int8) -> None:
    s = job.settings
    drop = ref.fp32_accuracy - int8.accuracy
    if s.max_drop is not None and drop > s.max_drop + 1e-9:
        lost = (f"loses {100 * drop:.2f} pt" if ref.kind == "labels" else
                f"changes {100 * (1 - int8.accuracy):.2f}% of FP32's answers on held-out target samples")
        raise AccuracyDropError(
            f"INT8 for {s.target} {lost} ({len(int8.float_layers)} layers in float), above --max-drop "
            f"{100 * s.max_drop:.2f} pt",
            hint="allow a larger --max-drop" + (", or more --qat-epochs" if s.qat else ", or fine-tune with --qat"))
    agreement_only = int8.parity.failures and all("top-1 agreement" in f for f in int8.parity.failures)
    if agreement_only:  # NNCF's search holds the drop alone; the rule also asks for agreement
        needed = parity_needed(s.max_drop, ref.fp32_accuracy)
        raise AccuracyDropError(
            f"INT8 for {s.target} holds the drop ({100 * drop:.2f} pt with {len(int8.float_layers)} layers in float) "
            f"but agrees with FP32 on {int8.parity.agreement:.1%} of {int8.parity.n} samples, below the "
            f"{needed:.0%} its acceptance rule asks for (what a drop of at most --max-drop allows)",
            hint="allow a larger --max-drop, " + ("more --qat-epochs" if s.qat else "fine-tune with --qat")
                 + ", or calibrate on more representative data (--calib, --samples)")


def _publish(job: _Job, ref: _Reference, int8: _Int8, work: Path) -> None:
    """The figures into the card, the parity gate, then the model's files into place."""
    int8.parity.artifact = str(job.out)
    if ref.kind == "labels":
        int8.card.metrics.update(accuracy=int8.accuracy, fp32_accuracy=ref.fp32_accuracy)
    else:  # no target labels: the run's own accuracy figures stay; 1 - agreement bounds the target loss
        int8.card.metrics.update(target_agreement=int8.accuracy)
    drop = ref.fp32_accuracy - int8.accuracy
    int8.card.metrics.update(accuracy_drop=drop, parity=int8.parity.to_dict(), agreement=1 - int8.disagreement,
                             accuracy_drop_ci95=_interval(job, ref, int8))
    write_artifact_card(int8.path, int8.card)
    raise_on_failures([int8.parity])
    publish({f: job.out.parent / f.name for f in work.iterdir() if f.name.startswith(job.out.stem + ".")}, MODEL_OUTPUT,
            job.overwrite)


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


def parity_needed(max_drop: float | None, fp32_accuracy: float) -> float:
    """The top-1 agreement the INT8 parity gate asks for (see int8_min_agreement)."""
    return int8_min_agreement(max_drop, fp32_accuracy, Tolerance.for_precision("int8").min_agreement)


def _measure_int8(path: Path, fp32_logits: np.ndarray, val: Samples, max_drop: float | None
                  ) -> tuple[float, ParityResult, float]:
    """Accuracy on the whole validation split, INT8 parity against the FP32 model, and the
    share of the split's samples whose answer differs from FP32's (what the drop's
    uncertainty follows), with one load of the INT8 model. Parity is top-1 agreement (and
    both accuracies), not max-abs; the agreement needed follows --max-drop
    (`int8_min_agreement`)."""
    from edgetl.runtime import open_runner

    card = read_card(path)
    task, labels = task_of(card), list(card.labels)
    tolerance = dataclasses.replace(Tolerance.for_precision("int8"), min_agreement=parity_needed(
        max_drop, _accuracy(fp32_logits, val.labels, task, labels)))
    step = max(1, len(val) // PARITY_SAMPLES)
    idx = np.arange(0, len(val), step)[:PARITY_SAMPLES]
    with open_runner(path) as runner:
        int8_logits = runner.infer_all(val.x, 64)
        accuracy = _accuracy(int8_logits, val.labels, task, labels)
        disagreement = float(1 - task.agree(fp32_logits, int8_logits).mean()) if len(int8_logits) else 0.0
        # Batch 1 on every parity sample, not the first 8: INT8 may flip near-ties, and one
        # flip in 8 would read as 12.5% of answers changed.
        return accuracy, compare(fp32_logits[idx], runner, val.x[idx], _rows(val.labels, idx), tolerance,
                                 single_samples=len(idx)), disagreement


__all__ = ["CPU_TARGETS", "DEFAULT_MAX_DROP", "TARGETS", "AccuracyDropError", "QuantizeResult", "quantize"]
