"""Static QDQ INT8 with onnxruntime.quantization, for two consumers:

- `onnxruntime`: the ORT CPU provider. Asymmetric uint8 activations, per-channel int8
  weights; for the portable CPU target (the default) the weights use 7 bits
  (reduce_range), because the AVX2 u8s8 kernels saturate their 16-bit intermediate sums
  otherwise (measured on an AVX2 CPU: an EfficientNet-Lite0 fine-tune falls from 98.9%
  to 78.9% with 8-bit weights, 98.3% with 7-bit); see quantize/cpu.py.
- `tensorrt`: explicit quantization as TensorRT 8.5+/10 consumes it. Symmetric int8
  activations and weights (zero points 0), per-channel weights on the output-channel
  axis, weights kept in float behind their own Q/DQ pair (TensorRT quantizes them with
  that scale), one Q/DQ pair per consumer so each fuses into its own layer.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
from pathlib import Path

from edgetl.core import progress
from edgetl.core.errors import ConfigError
from edgetl.data.samples import Samples
from edgetl.export.frontend_kernels import generate_kernels
from edgetl.export.onnx_export import FRONTEND_SCOPE
from edgetl.quantize.cpu import CpuTarget, cpu_target

log = logging.getLogger("edgetl")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclasses.dataclass(frozen=True)
class QdqScheme:
    """What quantize_static is asked for; recorded in the card."""

    target: str
    activations: str  # "uint8" | "int8"
    symmetric_activations: bool
    reduce_range: bool
    method: str
    cpu: str | None = None  # the CPU kind an onnxruntime model is made for (quantize/cpu.py)

    @classmethod
    def for_target(cls, target: str, method: str = "minmax", cpu: CpuTarget | str | None = None) -> QdqScheme:
        if method not in CALIBRATION_METHODS:
            raise ConfigError(f"unknown calibration method {method!r}", hint=f"use one of {', '.join(CALIBRATION_METHODS)}")
        if target == "tensorrt":  # TensorRT's own INT8 kernels: symmetric, full range, whatever the host
            return cls(target, "int8", True, False, method)
        cpu = cpu if isinstance(cpu, CpuTarget) else cpu_target(cpu)
        activations = "int8" if cpu.symmetric_activations else "uint8"
        return cls(target, activations, cpu.symmetric_activations, cpu.seven_bit_weights, method, cpu.name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Reader:
    """Feeds calibration samples one at a time: per-tensor statistics do not depend on
    the batch, and every histogram then has the same shape."""

    def __init__(self, samples: Samples, input_name: str, tick=None):
        self._it = iter(samples.batches(1))
        self._name, self._tick = input_name, tick

    def get_next(self):
        batch = next(self._it, None)
        if batch is not None and self._tick is not None:
            self._tick(1)
        return None if batch is None else {self._name: batch}


def prepare(src: Path, dst: Path) -> Path:
    """Shape inference and graph optimisation that quantization expects (ORT's pre-processing)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        except Exception as exc:  # ORT's symbolic shape inference misses some ops; ONNX's own suffices
            log.debug("symbolic shape inference failed (%s); using ONNX shape inference", exc)
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return dst


def _to_debug(record: logging.LogRecord) -> bool:
    """Log a record of onnxruntime.quantization in edgetl's log at debug level (True), or
    leave it alone (False)."""
    if f"onnxruntime{os.sep}quantization" not in record.pathname and not record.name.startswith("onnxruntime"):
        return False
    log.debug("onnxruntime.quantization: %s", record.getMessage())
    return True


class _KeepOff(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _to_debug(record)


class _ToDebug(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _to_debug(record)


@contextlib.contextmanager
def _quantizer_logs_at_debug():
    """onnxruntime.quantization logs through the root logger (`logging.warning`), which
    installs a stderr handler on the process the first time ('WARNING:root:Axis 1 is
    out-of-range for weight ...': a 1-D weight, such as a batch norm's after a ReLU, is
    quantized per tensor, as it must be). While it runs, its records go to edgetl's log
    at debug level instead, and the root logger is left as it was."""
    root, ort = logging.getLogger(), logging.getLogger("onnxruntime")
    keep_off, to_debug = _KeepOff(), _ToDebug()
    placeholder = logging.NullHandler()  # a root with a handler: `logging.warning` configures nothing
    root.addFilter(keep_off)
    root.addHandler(placeholder)
    ort.addHandler(to_debug)
    propagate, ort.propagate = ort.propagate, False
    try:
        yield
    finally:
        root.removeFilter(keep_off)
        root.removeHandler(placeholder)
        ort.removeHandler(to_debug)
        ort.propagate = propagate


def quantize_qdq(src: Path, dst: Path, samples: Samples, scheme: QdqScheme, exclude: list[str] = (),
                 cache: Path | None = None) -> None:
    """Write the QDQ model of `src` (already prepared) to `dst`. `cache` keeps the
    calibration ranges, so a retry with other layers excluded does not recalibrate."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    extra = {"WeightSymmetric": True, "ActivationSymmetric": scheme.symmetric_activations}
    if scheme.target == "tensorrt":
        # float weights behind Q/DQ, float biases (TensorRT has no int32 DQ), activations
        # such as ReLU kept as layers TensorRT fuses, one pair per consumer.
        extra.update(AddQDQPairToWeight=True, DedicatedQDQPair=True, QuantizeBias=False,
                     QDQKeepRemovableActivations=True, QDQOpTypePerChannelSupportToAxis={"MatMul": 1})
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[scheme.method]
    with contextlib.redirect_stdout(io.StringIO()), _quantizer_logs_at_debug(), progress.progress_bar() as bar:
        # calibrators print their settings; the quantizer logs through the root logger
        task = bar.add_task("calibration", total=len(samples), status="")
        reader = _Reader(samples, input_name, lambda n: bar.advance(task, n))
        quantize_static(
            str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=scheme.reduce_range, weight_type=QuantType.QInt8,
            activation_type=QuantType.QInt8 if scheme.activations == "int8" else QuantType.QUInt8,
            calibrate_method=method, nodes_to_exclude=list(exclude), extra_options=extra,
            calibration_cache_path=str(cache) if cache else None)
    model = onnx.load(str(dst))
    # ONNX Runtime's pre-processing folded the front-end's generated DFT kernels into weights
    changed = generate_kernels(model, FRONTEND_SCOPE) > 0
    changed |= share_slice_quantizers(model) > 0
    if scheme.target == "tensorrt":
        changed |= unquantize_outputs(model) > 0
    if changed:
        onnx.save(model, str(dst))


def share_slice_quantizers(model) -> int:
    """Give the slices of one tensor that a Concat joins one Q/DQ pair (the widest of
    theirs): ONNX Runtime calibrates each slice alone, so the speech embedding's three
    windows of the same frames got three scales, a frame was rounded differently in each
    window and a stream could not embed it once for all three (NNCF shares one quantizer
    among a Concat's inputs). Returns how many slices now share another's pair."""
    from onnx import numpy_helper

    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {i.name: i for i in model.graph.initializer}
    shared = 0
    for concat in [n for n in model.graph.node if n.op_type == "Concat"]:
        pairs = []
        for name in concat.input:
            dq = producers.get(name)
            q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            cut = producers.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            if cut is None or cut.op_type != "Slice" or len(dq.input) < 3 or dq.input[1] not in initializers:
                break
            pairs.append((q, dq, cut.input[0]))
        if len(pairs) != len(concat.input) or len(pairs) < 2 or len({source for _, _, source in pairs}) != 1:
            continue
        widest = max(pairs, key=lambda p: float(numpy_helper.to_array(initializers[p[1].input[1]]).max()))[1]
        for q, dq, _ in pairs:
            if dq.input[1:3] != widest.input[1:3]:
                q.input[1:3] = dq.input[1:3] = widest.input[1:3]
                shared += 1
    if shared:  # the pairs no node uses any more
        used = {i for n in model.graph.node for i in n.input}
        for unused in [i for i in model.graph.initializer if i.name not in used]:
            model.graph.initializer.remove(unused)
    return shared


def unquantize_outputs(model) -> int:
    """Remove the Q/DQ pair in front of each graph output (the logits): quantizing what
    leaves the network costs accuracy and saves nothing, and TensorRT then computes the
    last layer's output in float. Returns how many pairs were removed."""
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    removed = 0
    for output in model.graph.output:
        dq = producers.get(output.name)
        q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or consumers.get(q.output[0], 0) != 1:
            continue
        source = producers.get(q.input[0])
        if source is None or consumers.get(q.input[0], 0) != 1:
            continue  # the float tensor feeds something else too: keep the graph as it is
        source.output[list(source.output).index(q.input[0])] = output.name
        model.graph.node.remove(q)
        model.graph.node.remove(dq)
        removed += 1
    used = {name for node in model.graph.node for name in node.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:  # their scales and zero points
        model.graph.initializer.remove(init)
    return removed


def shape_nodes(model) -> list[str]:
    """The nodes that compute shapes, not activations: everything fed only by Shape/Size
    outputs and constants (e.g. the "same" padding a TF-style convolution computes from its
    input's size in a model exported with dynamic axes). Their float arithmetic must stay
    exact: quantized, the pads of such a model came out one pixel off and every feature
    map after them changed size."""
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    shaped: set[str] = set()
    names = []
    for node in graph.node:  # topological order
        if node.op_type == "Constant":
            constants.update(node.output)
            continue
        inputs = [i for i in node.input if i]
        from_shape = node.op_type in ("Shape", "Size") or (
            inputs and all(i in shaped or i in constants for i in inputs) and any(i in shaped for i in inputs))
        if from_shape:
            shaped.update(node.output)
            names.append(node.name)
    return names


def tail_nodes(model) -> list[str]:
    """The nodes after the last weighted layer on every path to the outputs: a detector's
    box decoding (anchor points plus distances times strides, sqrt of sigmoids), which
    would lose its pixels to 8-bit steps and gains nothing from INT8 (measured: an ONNX
    Runtime INT8 detector lost 23 mAP points with its decoding quantized)."""
    graph = model.graph
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    feeds_weighted = [False] * len(graph.node)
    for i in reversed(range(len(graph.node))):  # topological order: consumers come later
        node = graph.node[i]
        feeds_weighted[i] = any(graph.node[j].op_type in WEIGHTED_OPS or feeds_weighted[j]
                                for out in node.output for j in consumers.get(out, []))
    return [n.name for i, n in enumerate(graph.node) if not feeds_weighted[i] and n.op_type not in WEIGHTED_OPS]


def float_weighted_nodes(model) -> list[str]:
    """Weighted nodes (Conv, Gemm, MatMul) with an input that is not dequantized: they run in float."""
    producers = {out: node for node in model.graph.node for out in node.output}

    def dequantized(name: str) -> bool:
        return name in producers and producers[name].op_type == "DequantizeLinear"

    return [n.name for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and not (dequantized(n.input[0]) and dequantized(n.input[1]))]


def layer_nodes(model) -> dict[str, list[str]]:
    """Each weighted node with the nodes that follow it up to the next weighted node
    (activation, residual Add, pooling): what has to stay float for that layer to be float."""
    owner: dict[str, str] = {}  # tensor -> weighted node that produced it (directly or through followers)
    layers: dict[str, list[str]] = {}
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in WEIGHTED_OPS:
            layer = node.name
            layers[layer] = []
        else:
            layer = next((owner[i] for i in node.input if i in owner), None)
        if layer is not None:
            layers[layer].append(node.name)
            for out in node.output:
                owner[out] = layer
    return layers
