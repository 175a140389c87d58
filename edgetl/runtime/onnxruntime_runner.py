"""ONNX Runtime backend: CPU by default; CUDA / TensorRT execution providers on request
when the installed build has them."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.card import ModelCard
from edgetl.core.errors import BackendUnavailable
from edgetl.runtime.artifacts import ONNX_CARD_KEY, card_from_onnx_metadata, onnx_session, session_options
from edgetl.runtime.runner import Runner, quantizer_before
from edgetl.runtime.signature import TensorSpec, bare_card

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def emulates_tensorrt(card: ModelCard, provider: str) -> bool:
    return provider != "TensorrtExecutionProvider" and card.source.get("quantization", {}).get("target") == "tensorrt"


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"
    _cutter: Cutter | None = None  # the model indexed for cutting parts, made on the first part
    session: Any  # onnxruntime.InferenceSession
    input_name: str
    _opts: Any  # the session's onnxruntime.SessionOptions, reused for the parts cut from it
    _providers: list[Any]
    _signature: tuple[list[TensorSpec], list[TensorSpec]]

    @classmethod
    def resolve_device(cls, device: str) -> str:
        import onnxruntime as ort

        if device == "auto":
            return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        return device

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision_hint: str = "f32", bare: bool = False) -> OnnxRuntimeRunner:
        import onnxruntime as ort

        kind = device.split(":")[0]
        provider = _PROVIDERS.get(kind)
        if provider is None:
            raise BackendUnavailable(f"onnxruntime has no device {device!r}", hint=f"use one of {', '.join(_PROVIDERS)}")
        if provider not in ort.get_available_providers():
            raise BackendUnavailable(f"this onnxruntime build has no {provider}",
                                     hint="pip install onnxruntime-gpu, or use --device cpu")
        opts = session_options(threads)
        # The CPU provider computes float ops in f32; the CUDA provider would use TF32
        # matrix units on Ampere and newer by default, so that is switched off.
        first = (provider, {"use_tf32": 0}) if provider == "CUDAExecutionProvider" else provider
        providers: list[Any] = [first] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
        session = onnx_session(path, opts, providers)
        signature = ([_spec(a) for a in session.get_inputs()], [_spec(a) for a in session.get_outputs()])
        meta = session.get_modelmeta().custom_metadata_map
        card = bare_card(*signature) if bare and ONNX_CARD_KEY not in meta else card_from_onnx_metadata(meta, path)
        if emulates_tensorrt(card, provider):
            # A QDQ model made for TensorRT, run on the CPU: without graph optimisations the
            # Q/DQ nodes stay separate float ops, computing exactly the quantized values
            # TensorRT computes, instead of the CPU's int8 kernels, whose symmetric-int8
            # path saturates on x86 without VNNI.
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            session = onnx_session(path, opts, providers)
        runner = cls(path, card, device, threads)
        runner.session, runner._opts, runner._providers = session, opts, providers
        runner.input_name = session.get_inputs()[0].name
        runner._signature = signature
        return runner

    def infer_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, feeds)
        return {o.name: v for o, v in zip(self.session.get_outputs(), outputs)}

    @classmethod
    def facts(cls, gpu: dict[str, Any]) -> dict[str, Any]:
        import onnxruntime as ort

        return {"devices": list(ort.get_available_providers())}

    def compute(self, batch: np.ndarray) -> np.ndarray:
        output: np.ndarray = self.session.run(None, {self.input_name: batch})[0]
        return output

    def part(self, inputs: list[str], outputs: list[str], any_length: bool = False) -> Callable[..., Any] | None:
        try:  # cutting a graph needs the onnx package (in edgetl[train]; the runtime can do without)
            import onnx
        except ImportError:
            return None
        try:
            if self._cutter is None:  # the file read and indexed once for every part
                self._cutter = Cutter(onnx.load(str(self.path)))
            sub = self._cutter.cut(inputs, outputs, any_length)
            session = onnx_session(sub.SerializeToString(), self._opts, self._providers)
        except Exception:  # a graph that does not cut there: the whole model still runs
            return None
        return lambda *arrays: session.run(outputs, dict(zip(inputs, arrays)))


class Cutter:
    """An ONNX model indexed once (its value infos, producers and initializers) for
    cutting many parts from it: a streaming detector cuts seven, export's measurement of
    the stages five. A tensor cut at needs a value info (an exported model has them;
    else infer the shapes first)."""

    def __init__(self, model: Any) -> None:  # an onnx.ModelProto
        from onnx.utils import Extractor

        self.extractor = Extractor(model)
        self.producers = {out: node for node in model.graph.node for out in node.output}
        self.initializers = {i.name: i for i in model.graph.initializer}

    def cut(self, inputs: list[str], outputs: list[str], any_length: bool = False) -> Any:
        """The sub-graph from the tensors `inputs` to `outputs`, each input rounded as the
        whole model rounds it before the cut (INT8); `any_length`: every axis of the
        inputs and outputs free."""
        sub = self.extractor.extract_model(inputs, outputs)
        for name in inputs:
            requantize_input(sub, name, self._quantizer_before(name))
        if any_length:  # shapes inferred for the whole model's input no longer hold
            for i, value in enumerate([*sub.graph.input, *sub.graph.output]):
                for j, dim in enumerate(value.type.tensor_type.shape.dim):
                    dim.dim_param = f"d{i}_{j}"
            del sub.graph.value_info[:]
        return sub

    def _quantizer_before(self, name: str) -> tuple[Any, Any] | None:
        """The (scale, zero point) initializers of the Q/DQ pair every value of tensor
        `name` last went through (runner.quantizer_before), or None."""
        from onnx import numpy_helper

        producers, initializers = self.producers, self.initializers

        def is_pair(node: Any) -> bool:  # a DequantizeLinear of a QuantizeLinear
            return node.op_type == "DequantizeLinear" and getattr(producers.get(node.input[0]), "op_type", "") == \
                "QuantizeLinear"

        def ranges(dq: Any) -> tuple[Any, ...]:
            values = [initializers.get(i) for i in dq.input[1:3]]
            if len(values) != 2 or any(v is None for v in values):
                return ()
            arrays = [numpy_helper.to_array(v) for v in values if v is not None]
            return tuple((a.dtype.str, a.ravel().tolist()) for a in arrays) if all(a.size == 1 for a in arrays) else ()
        dq = quantizer_before(producers.get(name), lambda n: n.op_type, lambda n: [producers.get(i) for i in n.input],
                              is_pair, ranges)
        return None if dq is None else tuple(initializers[i] for i in dq.input[1:3])


def requantize_input(sub: Any, name: str, quantizer: tuple[Any, Any] | None) -> None:
    """Round a part's input `name` through the Q/DQ pair (`quantizer`: its scale and zero
    point initializers) the whole model rounds it through before the cut."""
    if quantizer is None:
        return
    from onnx import helper

    rounded = f"{name}/requantized"
    for node in sub.graph.node:
        node.input[:] = [rounded if i == name else i for i in node.input]
    scale, zero = (f"{name}/{q.name}" for q in quantizer)
    for copy_name, q in zip((scale, zero), quantizer):
        copy = sub.graph.initializer.add()
        copy.CopyFrom(q)
        copy.name = copy_name
    sub.graph.node.insert(0, helper.make_node("DequantizeLinear", [f"{name}/q", scale, zero], [rounded],
                                              name=f"{name}/requantize_dq"))
    sub.graph.node.insert(0, helper.make_node("QuantizeLinear", [name, scale, zero], [f"{name}/q"],
                                              name=f"{name}/requantize_q"))


# ONNX Runtime's element types, as numpy names them
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64",
              "tensor(bool)": "bool"}


def _spec(arg: Any) -> TensorSpec:  # an onnxruntime.NodeArg
    return TensorSpec(arg.name, tuple(d if isinstance(d, int) else None for d in arg.shape),
                      _ORT_TYPES.get(arg.type, arg.type))
