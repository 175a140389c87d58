"""The speech front-end's DFT kernels as a few graph operations instead of weights.

The STFT's kernels (514 x 512 floats: a megabyte, two thirds of an INT8 speech model)
follow from three numbers: the DFT size, the window length and the bin count. Export
replaces the initializer that holds them by operations that compute them from those
numbers (Range, Mul, Div, Floor, Sub, Cos, Sin, Concat, Unsqueeze: what ONNX Runtime,
OpenVINO and TensorRT all run; each folds them back into a constant in memory when it
loads the model). The phase k*n is reduced modulo n_fft exactly in float32 (k*n stays
under 2**24, and dividing by a power of two is exact), so the cosines are as precise as
the stored float32 kernels. The nodes are named in the front-end's scope: quantization
keeps them in float and TensorRT in FP32 like the rest of the front-end.
"""
from __future__ import annotations

import math

import numpy as np


def _const(name: str, value) -> onnx.NodeProto:  # noqa: F821
    from onnx import helper, numpy_helper

    array = np.asarray(value)
    array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
    return helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(array, name))


def kernel_nodes(output: str, n_fft: int, win_length: int, scope: str) -> list:
    """Nodes computing dft_kernels(n_fft, win_length) (backbones/frontend.py) into `output`,
    named in `scope`."""
    from onnx import helper

    p = f"{scope}/dft/{output}/"
    left = (n_fft - win_length) // 2
    nodes = [_const(p + "zero", 0.0), _const(p + "one", 1.0), _const(p + "n_fft", float(n_fft)),
             _const(p + "bins", float(n_fft // 2 + 1)), _const(p + "win", float(win_length)),
             _const(p + "phase", 2 * math.pi / n_fft), _const(p + "hann_phase", 2 * math.pi / win_length),
             _const(p + "half", 0.5), _const(p + "axis1", [1]),
             _const(p + "pad_left", np.zeros(left)), _const(p + "pad_right", np.zeros(n_fft - win_length - left))]

    def node(op, inputs, out, **attrs):
        nodes.append(helper.make_node(op, [i if i.startswith(p) or i == output else p + i for i in inputs],
                                      [out if out == output else p + out], name=p + out, **attrs))

    node("Range", ["zero", "n_fft", "one"], "n")                   # [n_fft]
    node("Range", ["zero", "bins", "one"], "k_row")                # [bins]
    node("Unsqueeze", ["k_row", "axis1"], "k")                     # [bins, 1]
    node("Mul", ["k", "n"], "kn")                                  # exact integers
    node("Div", ["kn", "n_fft"], "turns")
    node("Floor", ["turns"], "whole")
    node("Mul", ["whole", "n_fft"], "wrapped")
    node("Sub", ["kn", "wrapped"], "kn_mod")                       # k*n mod n_fft, exact
    node("Mul", ["kn_mod", "phase"], "angle")
    node("Range", ["zero", "win", "one"], "m")
    node("Mul", ["m", "hann_phase"], "hann_angle")
    node("Cos", ["hann_angle"], "hann_cos")
    node("Mul", ["hann_cos", "half"], "hann_half")
    node("Sub", ["half", "hann_half"], "hann")                     # periodic Hann
    node("Concat", ["pad_left", "hann", "pad_right"], "window", axis=0)
    node("Cos", ["angle"], "cos")
    node("Sin", ["angle"], "sin")
    node("Mul", ["cos", "window"], "real")
    node("Mul", ["sin", "window"], "sin_windowed")
    node("Neg", ["sin_windowed"], "imaginary")
    node("Concat", ["real", "imaginary"], "rows", axis=0)
    node("Unsqueeze", ["rows", "axis1"], output)                   # [2 * bins, 1, n_fft]
    return nodes


def _spec_of(values: np.ndarray) -> tuple[int, int] | None:
    """(n_fft, win_length) when `values` are dft_kernels of them (within the float32
    rounding of the generating nodes, which a folding tool may have computed): the first
    row is the window itself (cos 0 = 1), whose periodic Hann starts with one zero."""
    from edgetl.backbones.frontend import dft_kernels

    if values.ndim != 3 or values.shape[1] != 1 or values.shape[0] != 2 * (values.shape[2] // 2 + 1):
        return None
    n_fft, nonzero = values.shape[2], int(np.count_nonzero(values[0, 0]))
    spec = (n_fft, nonzero + 1)
    return spec if np.allclose(dft_kernels(*spec), values, rtol=0, atol=2e-6) else None


def _drop_folded(proto, names: set[str]) -> None:
    """What is left of generating nodes a tool folded (their constants, now initializers
    and perhaps graph inputs): the new nodes take those names again."""
    for initializer in [i for i in proto.graph.initializer if i.name in names]:
        proto.graph.initializer.remove(initializer)
    for value in [v for v in proto.graph.input if v.name in names]:
        proto.graph.input.remove(value)
    for node in [n for n in proto.graph.node if set(n.output) & names]:
        proto.graph.node.remove(node)


def generate_kernels(proto, scope: str) -> int:
    """Replace every initializer of the convolutions of the front-end (`scope`) that holds DFT kernels
    (dft_kernels' values exactly) by the nodes computing them; returns the bytes no longer
    stored. Export calls it after slimming and quantization after ONNX Runtime's
    pre-processing, which both fold the nodes back into weights."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in proto.graph.initializer}
    saved = 0
    for conv in [n for n in proto.graph.node if n.op_type == "Conv" and n.name.startswith(f"{scope}/")]:
        weight = initializers.pop(conv.input[1], None)
        if weight is None:
            continue
        values = numpy_helper.to_array(weight)
        spec = _spec_of(values)
        if spec is None:
            continue
        proto.graph.initializer.remove(weight)
        nodes = kernel_nodes(weight.name, *spec, scope)
        _drop_folded(proto, {o for n in nodes for o in n.output})
        for i, node in enumerate(nodes):
            proto.graph.node.insert(i, node)
        saved += values.nbytes
    return saved


def generate_kernels_openvino(model, scope: str) -> int:
    """The same for an OpenVINO model made straight from torch (quantization-aware
    training's convert_model stores the kernels as a constant, with the front-end's
    input scale multiplied in): every constant holding DFT kernels times a number is
    replaced by the generating operations, read from kernel_nodes' ONNX (OpenVINO's ONNX
    reader keeps them as operations; saving does not fold them), times that number.
    Returns the bytes no longer stored."""
    import tempfile
    from pathlib import Path

    import onnx
    import openvino as ov
    import openvino.opset13 as ops
    from onnx import TensorProto, helper

    saved = 0
    for const in [op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]:
        shape = const.get_output_partial_shape(0)
        if shape.rank.get_length() != 3 or not shape.is_static or shape[1].get_length() != 1:
            continue
        values = np.asarray(const.get_data())
        scale = float(values[0, 0].max()) if values.dtype == np.float32 and values.size else 0.0
        spec = _spec_of(values / scale) if scale > 0 else None  # the first row is the window, whose peak is 1
        if spec is None:
            continue
        graph = helper.make_graph(kernel_nodes("kernels", *spec, scope), "dft_kernels", [],
                                  [helper.make_tensor_value_info("kernels", TensorProto.FLOAT, list(values.shape))])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        with tempfile.TemporaryDirectory() as tmp:
            onnx.save(proto, str(Path(tmp) / "kernels.onnx"))
            kernels = ov.Core().read_model(str(Path(tmp) / "kernels.onnx")).get_results()[0].input_value(0)
        if scale != 1.0:
            kernels = ops.multiply(kernels, ops.constant(np.float32(scale))).output(0)
        for target in list(const.output(0).get_target_inputs()):
            target.replace_source_output(kernels)
        saved += values.nbytes
    if saved:
        model.validate_nodes_and_infer_types()
    return saved


__all__ = ["generate_kernels", "generate_kernels_openvino", "kernel_nodes"]
