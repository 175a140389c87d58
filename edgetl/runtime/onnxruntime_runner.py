"""ONNX Runtime backend: CPU by default; CUDA / TensorRT execution providers on request
when the installed build has them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.card import ModelCard
from edgetl.errors import BackendUnavailable
from edgetl.runtime.artifacts import card_from_onnx_metadata, onnx_session
from edgetl.runtime.runner import Runner

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def emulates_tensorrt(card: ModelCard, provider: str) -> bool:
    return provider != "TensorrtExecutionProvider" and card.source.get("quantization", {}).get("target") == "tensorrt"


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    @classmethod
    def resolve_device(cls, device: str) -> str:
        import onnxruntime as ort

        if device == "auto":
            return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        return device

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision_hint: str = "f32") -> "OnnxRuntimeRunner":
        import onnxruntime as ort

        kind = device.split(":")[0]
        provider = _PROVIDERS.get(kind)
        if provider is None:
            raise BackendUnavailable(f"onnxruntime has no device {device!r}", hint=f"use one of {', '.join(_PROVIDERS)}")
        if provider not in ort.get_available_providers():
            raise BackendUnavailable(f"this onnxruntime build has no {provider}",
                                     hint="pip install onnxruntime-gpu, or use --device cpu")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        # The CPU provider computes float ops in f32; the CUDA provider would use TF32
        # matrix units on Ampere and newer by default, so that is switched off.
        first = (provider, {"use_tf32": 0}) if provider == "CUDAExecutionProvider" else provider
        providers = [first] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
        session = onnx_session(path, opts, providers)
        card = card_from_onnx_metadata(session.get_modelmeta().custom_metadata_map, path)
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
        return runner

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def part(self, inputs: list[str], outputs: list[str], any_length: bool = False):
        try:  # cutting a graph needs the onnx package (in edgetl[train]; the runtime can do without)
            import onnx
            from onnx.utils import Extractor
        except ImportError:
            return None
        try:
            sub = Extractor(onnx.load(str(self.path))).extract_model(inputs, outputs)
            if any_length:  # every axis free; shapes inferred for the whole model's input no longer hold
                for i, value in enumerate([*sub.graph.input, *sub.graph.output]):
                    for j, dim in enumerate(value.type.tensor_type.shape.dim):
                        dim.dim_param = f"d{i}_{j}"
                del sub.graph.value_info[:]
            session = onnx_session(sub.SerializeToString(), self._opts, self._providers)
        except Exception:  # a graph that does not cut there: the whole model still runs
            return None
        return lambda *arrays: session.run(outputs, dict(zip(inputs, arrays)))
