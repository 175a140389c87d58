"""Structural rules of an explicit-quantization (QDQ) ONNX model for TensorRT.

TensorRT 8.5+/10 builds INT8 layers only from Q/DQ pairs it can fuse: symmetric int8
(zero point 0), positive scales, a dequantized data input and per-channel weights on the
output-channel axis for every weighted layer that is meant to run in INT8.
"""
from __future__ import annotations

import numpy as np


def _weight_axis(node) -> int:
    """The output-channel axis of a weighted node's second input."""
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return 1
    return 0  # Conv


def tensorrt_qdq_violations(model, float_nodes: set[str] = frozenset()) -> list[str]:
    """Every rule the QDQ `model` breaks, as readable lines (empty when TensorRT-ready).
    `float_nodes`: weighted nodes deliberately kept in float (not checked)."""
    from onnx import TensorProto, numpy_helper

    from edgetl.quantize.onnx_qdq import WEIGHTED_OPS

    inits = {t.name: t for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    problems = []

    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or node.input[2] not in inits:
            problems.append(f"{node.name}: no constant zero point")
            continue
        zero = inits[node.input[2]]
        if zero.data_type != TensorProto.INT8:
            problems.append(f"{node.name}: zero point is {TensorProto.DataType.Name(zero.data_type)}, not INT8")
        elif np.any(numpy_helper.to_array(zero) != 0):
            problems.append(f"{node.name}: non-zero zero point (asymmetric)")
        scale = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
        if scale is None or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{node.name}: scale missing, non-finite or not positive")

    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS or node.name in float_nodes:
            continue
        data = producers.get(node.input[0])
        if data is None or data.op_type != "DequantizeLinear":
            problems.append(f"{node.name} ({node.op_type}): data input is not dequantized")
        weight_dq = producers.get(node.input[1])
        if weight_dq is None or weight_dq.op_type != "DequantizeLinear":
            if node.input[1] in inits or node.op_type != "MatMul":
                problems.append(f"{node.name} ({node.op_type}): weight is not dequantized")
            continue
        weight_src = weight_dq.input[0]
        q = producers.get(weight_src)
        weight_name = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else weight_src
        if weight_name not in inits:
            continue  # an activation-activation MatMul: per-tensor is right
        weight = inits[weight_name]
        axis = _weight_axis(node)
        scale = numpy_helper.to_array(inits[weight_dq.input[1]])
        dq_axis = next((a.i for a in weight_dq.attribute if a.name == "axis"), 1)
        channels = weight.dims[axis]
        if scale.size != channels or (scale.size > 1 and dq_axis != axis):
            problems.append(f"{node.name} ({node.op_type}): weight scales are not per-channel on axis {axis} "
                            f"({scale.size} scales, axis {dq_axis}, {channels} channels)")
    return problems
