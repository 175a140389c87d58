"""Which layers lose most when quantized? Measured on calibration data by running the
float and the QDQ model side by side and comparing every weighted layer's output.

A layer's score is the signal-to-quantization-noise ratio (dB) lost across it: SQNR of
the input it consumes (after its Q/DQ) minus SQNR of the output it passes on (after
that output's Q/DQ), both against the float model. Error already present at the input is
not the layer's fault, so accumulated error does not push late layers to the top.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.quantize.onnx_qdq import WEIGHTED_OPS

CEILING_DB = 60.0  # an exact tensor has infinite SQNR: count it as 60 dB


RANK_BYTES = 2 << 20  # input bytes per run: every intermediate tensor of the chunk is held at once


def _db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-30) / noise))


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    ref = reference.astype(np.float64)
    return _db(float(np.sum(ref ** 2)), float(np.sum((ref - value) ** 2)))


def _session(model, names: list[str]):
    """A session of `model` that also outputs the tensors `names` (graph optimisations
    off, so every name survives)."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _chunks(x: np.ndarray):
    """`x` in runs small enough that every intermediate tensor of one run fits in memory:
    the memory of ranking is bounded by RANK_BYTES, not by the number of samples."""
    size = max(1, RANK_BYTES // max(1, x[0].nbytes)) if len(x) else 1
    for start in range(0, len(x), size):
        yield np.asarray(x[start:start + size], np.float32)


def _float_source(name: str, producers: dict) -> str:
    """The float tensor behind a dequantized input (DQ <- Q <- tensor), else `name`."""
    dq = producers.get(name)
    if dq is not None and dq.op_type == "DequantizeLinear":
        q = producers.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            return q.input[0]
    return name


def _dequantized(name: str, consumers: dict) -> str:
    """The tensor a later layer really sees: `name` after its Q -> DQ pair, if any (the
    quantization range may also do the work of a folded ReLU/Clip)."""
    for q in consumers.get(name, []):
        if q.op_type == "QuantizeLinear":
            for dq in consumers.get(q.output[0], []):
                if dq.op_type == "DequantizeLinear":
                    return dq.output[0]
    return name


def rank_layers(float_path: Path, qdq_path: Path, x: np.ndarray) -> list[tuple[str, float]]:
    """(node name, dB lost) for every weighted node of `qdq_path`, worst first.
    `float_path` is the float model the QDQ one was made from. A node's output may carry
    the name of an activation the quantizer folded into it (Conv+ReLU): the float model
    has that tensor too, so the comparison holds."""
    import onnx

    float_model, qdq_model = onnx.load(str(float_path)), onnx.load(str(qdq_path))
    float_tensors = {t for n in float_model.graph.node for t in n.output} | {i.name for i in float_model.graph.input}
    producers = {out: node for node in qdq_model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in qdq_model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    pairs = {}  # node -> (float input, input as consumed, float output, output as passed on)
    for node in qdq_model.graph.node:
        if node.op_type in WEIGHTED_OPS:
            src, out = _float_source(node.input[0], producers), node.output[0]
            passed_on = _dequantized(out, consumers)
            if out not in float_tensors:  # a graph output: the quantizer renamed the node's own output
                out = passed_on
            if src in float_tensors and out in float_tensors:
                pairs[node.name] = (src, node.input[0], out, passed_on)
    ref_names = sorted({t for p in pairs.values() for t in (p[0], p[2])})
    got_names = sorted({t for p in pairs.values() for t in (p[1], p[3])})
    ref_session, got_session = _session(float_model, ref_names), _session(qdq_model, got_names)
    feed_ref, feed_got = float_model.graph.input[0].name, qdq_model.graph.input[0].name
    # per node: signal and noise of its input and of its output, summed over the samples
    sums = {node: np.zeros(4) for node in pairs}
    for chunk in _chunks(x):
        ref = dict(zip(ref_names, ref_session.run(ref_names, {feed_ref: chunk})))
        got = dict(zip(got_names, got_session.run(got_names, {feed_got: chunk})))
        for node, (src, consumed, out, passed_on) in pairs.items():
            for i, (a, b) in enumerate(((src, consumed), (out, passed_on))):
                reference = ref[a].astype(np.float64)
                sums[node][2 * i] += float(np.sum(reference ** 2))
                sums[node][2 * i + 1] += float(np.sum((reference - got[b]) ** 2))
        del ref, got
    scores = []
    for node, (signal_in, noise_in, signal_out, noise_out) in sums.items():
        before = min(_db(signal_in, noise_in), CEILING_DB)
        after = min(_db(signal_out, noise_out), CEILING_DB)
        scores.append((node, before - after))
    unmeasured = [(n.name, float("nan")) for n in qdq_model.graph.node
                  if n.op_type in WEIGHTED_OPS and n.name not in pairs]
    return sorted(scores, key=lambda s: -s[1]) + unmeasured  # unmeasured last, but still listed
