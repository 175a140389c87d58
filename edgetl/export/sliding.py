"""How a model's per-window module streams: as a chain of stages that each slide along
the frames. A stage's output column i depends on its input columns [i * stride, i *
stride + width) only (valid convolutions and poolings), so a stream computes each
column of each stage once, from the columns before it and the new ones: at a hop of one
window step, a new embedding costs one new column per stage instead of the whole window.
The speech embedding is four such stages, cut after each pooling that strides along the
frames (widths 6, 10, 10, 3; strides 2, 2, 2, 1). Measured on the exported graph itself
(column counts, then values), so the card never claims what the artifact does not do."""
from __future__ import annotations

import math

import numpy as np

from edgetl.runtime.artifacts import session_options
from edgetl.runtime.onnxruntime_runner import Cutter

CHECKED = 3  # columns compared against computing each alone


def stream_stages(proto, parts: dict, tensors: dict[str, str]) -> list[dict] | None:
    """The per-window module (from the `windows` tensor to the `embeddings`) as stages
    that slide, each {"from", "to": tensor names, "axis": its input's frame axis,
    "out_axis", "width", "stride"}, whose widths compose to the window's frames and whose
    strides multiply to the windows' step; cut after every node in the module that
    strides along the frames, else the whole module as one stage; None when it does not
    slide (e.g. it pools over the whole window)."""
    import onnx

    frames, step = parts["frames"], parts["step"]
    inferred = onnx.shape_inference.infer_shapes(proto)
    shape = _shape(inferred, tensors["windows"])
    if shape is None or frames not in shape[1:]:
        return None
    axis = shape.index(frames, 1)
    cutter = Cutter(inferred)  # the extractor names a cut's tensors by their value infos
    scope = next((n.name.split("/")[0] for n in proto.graph.node if tensors["embeddings"] in n.output), "")
    cuts = [n.output[0] for n in proto.graph.node
            if n.name.startswith(f"{scope}/") and _strides_frames(n) and n.output[0] != tensors["embeddings"]]
    for bounds in ([tensors["windows"], *cuts, tensors["embeddings"]], [tensors["windows"], tensors["embeddings"]]):
        stages, in_axis = [], axis
        for source, target in zip(bounds, bounds[1:]):
            stage = _stage(cutter, source, target, _shape(inferred, source), in_axis)
            if stage is None:
                break
            stages.append(stage)
            in_axis = stage["out_axis"]
        if len(stages) == len(bounds) - 1 and composes(stages, frames, step):
            return stages
    return None


def composes(stages: list[dict], frames: int, step: int) -> bool:
    """Whether the stages give one output per window of `frames` frames, one every `step`."""
    width, stride = 1, 1
    for s in stages:
        width += (s["width"] - 1) * stride
        stride *= s["stride"]
    return width == frames and stride == step


def _strides_frames(node) -> bool:
    """A convolution or pooling whose stride along the frames (its first spatial axis:
    the module's input is [batch, frames, bands] made an image) is over 1."""
    strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [])
    return node.op_type in ("Conv", "MaxPool", "AveragePool") and bool(strides) and strides[0] > 1


def _stage(cutter, source: str, target: str, template: list[int] | None, axis: int) -> dict | None:
    """Measure one stage: how many output columns each input length gives (from where
    the count reaches 2 and 3: its stride and width, away from a pooling's edge cases at
    one column), then that CHECKED columns computed together equal each computed alone."""
    if template is None:
        return None
    try:
        run = _part(cutter, source, target)
        size = max(template[axis], 8) * 2
        shape = [1 if i == 0 else d for i, d in enumerate(template)]
        shape[axis] = size
        piece = np.random.default_rng(0).uniform(-0.5, 4, shape).astype(np.float32)

        def out(start: int, length: int):
            return run(np.take(piece, range(start, start + length), axis=axis))
        shapes = {n: o.shape for n in range(1, size + 1) if (o := _try(out, 0, n)) is not None}
        varying = {i for i in range(1, len(template)) if len({sh[i] for sh in shapes.values() if len(sh) > i}) > 1}
        if len(varying) != 1:
            return None
        out_axis = varying.pop()
        first = {}  # columns -> the shortest input giving them
        for n, sh in shapes.items():
            first.setdefault(sh[out_axis], n)
        if 2 not in first or 3 not in first:
            return None
        stride = first[3] - first[2]
        width = first[2] - stride
        if stride < 1 or width < 1 or width + (CHECKED - 1) * stride > size:
            return None
        together = np.swapaxes(out(0, width + (CHECKED - 1) * stride), 0, out_axis)
        alone = np.concatenate([np.swapaxes(out(k * stride, width), 0, out_axis) for k in range(CHECKED)])
    except Exception:
        return None
    scale = max(float(np.abs(alone).max()), 1e-6)
    if together.shape != alone.shape or not np.allclose(together, alone, rtol=1e-4, atol=1e-4 * scale):
        return None
    return {"from": source, "to": target, "axis": axis, "out_axis": out_axis, "width": width, "stride": stride}


def _try(out, start: int, length: int):
    """The stage's output on that piece, or None when the piece is too short for it."""
    try:
        o = out(start, length)
    except Exception:
        return None
    return o if o.size and math.prod(o.shape) > 0 else None


def _part(cutter: Cutter, source: str, target: str):
    """The graph from `source` to `target`, any length along every axis, on one thread."""
    import onnxruntime as ort

    opts = session_options(1)
    opts.log_severity_level = 4  # the pieces too short for a kernel are expected failures
    session = ort.InferenceSession(cutter.cut([source], [target], any_length=True).SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {source: x})[0]


def _shape(inferred, name: str) -> list[int] | None:
    """The static sizes of a tensor (the batch axis may be symbolic), from shape inference."""
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if value.name == name:
            dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim]
            return dims if len(dims) > 1 and all(dims[1:]) else None
    return None


__all__ = ["composes", "stream_stages"]
