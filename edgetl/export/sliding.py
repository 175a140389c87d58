"""Whether a model's per-window module slides: fed the frames of several windows `step`
frames apart in one piece, it gives each window's embedding in one pass (a stack of
valid convolutions and poolings whose strides along the frames multiply to `step`, as
the speech embedding's). Measured on the exported graph itself, so the card never
claims what the artifact does not do."""
from __future__ import annotations

import numpy as np

WINDOWS = 3  # windows in the trial piece: enough to see every pooling's alignment repeat


def sliding_axis(proto, parts: dict, tensors: dict[str, str]) -> int | None:
    """The axis of the module's output along which a piece of `frames + step * (n - 1)`
    frames gives the n windows' embeddings (equal to embedding each window alone), or
    None when the module does not slide (e.g. it pools over the whole window)."""
    import onnxruntime as ort
    from onnx.utils import Extractor

    frames, step = parts["frames"], parts["step"]
    shape = _shape(proto, tensors["windows"])
    if shape is None or frames not in shape[1:]:
        return None
    axis = shape.index(frames, 1)
    try:
        sub = Extractor(proto).extract_model([tensors["windows"]], [tensors["embeddings"]])
        for i, value in enumerate([*sub.graph.input, *sub.graph.output]):
            for j, dim in enumerate(value.type.tensor_type.shape.dim):
                dim.dim_param = f"d{i}_{j}"  # any length along every axis
        del sub.graph.value_info[:]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        session = ort.InferenceSession(sub.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        piece_shape = [1 if i == 0 else d for i, d in enumerate(shape)]
        piece_shape[axis] = frames + step * (WINDOWS - 1)
        # log-mel-like values (the speech front-end's lie in about 0..4)
        piece = np.random.default_rng(0).uniform(0, 4, piece_shape).astype(np.float32)
        alone = np.concatenate([session.run(None, {tensors["windows"]: np.take(
            piece, range(k * step, k * step + frames), axis=axis)})[0] for k in range(WINDOWS)])
        together = session.run(None, {tensors["windows"]: piece})[0]
    except Exception:  # noqa: BLE001 - ONNX Runtime's own kinds: a module that cannot take a longer piece does not slide
        return None
    for out_axis in range(1, together.ndim):
        if together.shape[out_axis] != WINDOWS or alone.shape[out_axis] != 1:
            continue
        each = np.swapaxes(together, 0, out_axis)
        if each.shape == alone.shape and np.allclose(each, alone, rtol=1e-4, atol=1e-4 * np.abs(alone).max()):
            return out_axis
    return None


def _shape(proto, name: str) -> list[int] | None:
    """The static sizes of a tensor (the batch axis may be symbolic), by shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if value.name == name:
            dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim]
            return dims if all(dims[1:]) else None
    return None


__all__ = ["sliding_axis"]
