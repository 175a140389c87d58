"""TensorRT backend: a serialized engine plus its card beside it (`model.engine.json`).

An engine only runs on the TensorRT version and GPU architecture it was built for, so
the card records both and loading checks them first: a mismatch is a clear "rebuild"
error, never a deserialization crash. `tensorrt` is imported only here, lazily; device
memory comes from torch (CUDA build) or cuda-python, whichever is installed.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

import numpy as np

from edgetl.card import ModelCard
from edgetl.errors import ArtifactError, BackendUnavailable, ConfigError
from edgetl.runtime.artifacts import engine_card_path, read_engine_card  # noqa: F401  (engine_card_path: public here too)
from edgetl.runtime.base import Runner

log = logging.getLogger("edgetl")


def gpu_info(index: int = 0) -> dict:
    """Name and compute capability of CUDA device `index`."""
    try:
        torch = importlib.import_module("torch")  # optional: torch is not a runtime dependency
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(index)
            return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}"}
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendUnavailable("no CUDA device found (neither torch with CUDA nor cuda-python sees one)",
                                     hint="run on a machine with an NVIDIA GPU, or pip install cuda-python") from None
    err, props = cudart.cudaGetDeviceProperties(index)
    if int(err) != 0:
        raise BackendUnavailable(f"no CUDA device {index} ({err})", hint="check nvidia-smi, or pass --device cuda:0")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}


def check_compatible(built: dict, here: dict, engine: Path) -> None:
    """Refuse an engine built with another TensorRT version or for another GPU architecture."""
    rebuild = f"rebuild it here: edgetl build-engine {built.get('onnx', 'MODEL.onnx')} --out {engine}"
    if built.get("version") != here["version"]:
        raise ArtifactError(f"{engine.name} was built with TensorRT {built.get('version')}; "
                            f"this machine has TensorRT {here['version']}", hint=rebuild)
    if built.get("compute_capability") != here["compute_capability"]:
        raise ArtifactError(f"{engine.name} was built for {built.get('gpu')} (compute capability "
                            f"{built.get('compute_capability')}); this GPU is {here['gpu']} "
                            f"(compute capability {here['compute_capability']})", hint=rebuild)
    if built.get("gpu") != here["gpu"]:
        log.warning("%s was built on %s and runs on %s (same architecture); latency may differ, rebuild for best speed",
                    engine.name, built.get("gpu"), here["gpu"])


class TensorRTRunner(Runner):
    backend = "tensorrt"

    @classmethod
    def load(cls, path: Path, device: str = "cuda", threads: int | None = None,
             precision_hint: str = "f32") -> "TensorRTRunner":
        import tensorrt as trt

        card = read_engine_card(path)
        index = int(device.split(":")[1]) if device.startswith("cuda:") else 0  # "cpu" (the default) -> GPU 0
        check_compatible(card.source.get("tensorrt", {}), {"version": trt.__version__, **gpu_info(index)}, path)
        runner = cls(path, card, f"cuda:{index}", threads)
        # TensorRT fixes the precision when it builds the engine (build-engine --precision).
        runner.inference_precision = card.source.get("tensorrt", {}).get("inference_precision", "f32")
        runner._torch = _torch_cuda()
        runner._logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(runner._logger).deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ArtifactError(f"TensorRT could not deserialize {path}", hint=f"rebuild it: edgetl build-engine ... --out {path}")
        runner.engine, runner.context = engine, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        runner.input_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        runner.output_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        runner.batch_range = tuple(engine.get_tensor_profile_shape(runner.input_name, 0)[i][0] for i in (0, 2))
        return runner

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        low, high = self.batch_range
        if not low <= len(batch) <= high:
            raise ConfigError(f"batch {len(batch)} is outside the engine's profile ({low} to {high})",
                              hint="rebuild with --batch MIN:OPT:MAX covering it")
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=torch.float32,
                          device=self.device)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream(x.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ArtifactError(f"TensorRT failed to run {self.path.name}", hint="see the TensorRT log above; rebuild the engine on this device")
        stream.synchronize()
        return out.cpu().numpy()

    def close(self) -> None:
        self.context = self.engine = None


def _torch_cuda():
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        raise BackendUnavailable("the tensorrt runner moves tensors with torch (CUDA build)",
                                 hint="pip install torch") from None
    if not torch.cuda.is_available():
        raise BackendUnavailable("torch sees no CUDA device for TensorRT", hint="install a CUDA build of torch, or run on the GPU machine")
    return torch
