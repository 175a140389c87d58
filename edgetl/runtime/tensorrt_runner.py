"""TensorRT backend: a serialized engine plus its card beside it (`model.engine.json`).

An engine only runs on the TensorRT version and GPU architecture it was built for, so
the card records both and loading checks them first: a mismatch is a clear "rebuild"
error, never a deserialization crash. `tensorrt` is imported only here, lazily; device
memory, streams and GPU facts come from runtime/cuda_device.py (cuda-python, or a CUDA
build of torch). Every I/O tensor is bound by name with the dtype the engine declares.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from edgetl.core.errors import ArtifactError, ConfigError
from edgetl.runtime.artifacts import engine_card_path, read_engine_card
from edgetl.runtime.runner import Runner
from edgetl.runtime.signature import TensorSpec, bare_card

if TYPE_CHECKING:
    from edgetl.core.card import ModelCard
    from edgetl.runtime.cuda_device import CudaDevice, IOBuffer

T = TypeVar("T")

log = logging.getLogger("edgetl")


def check_compatible(built: dict[str, Any], here: dict[str, Any], engine: Path) -> None:
    """Refuse an engine built with another TensorRT version or for another GPU architecture."""
    rebuild = f"rebuild it here: edgetl build-engine {built.get('onnx', 'MODEL.onnx')} --out {engine}"
    if built.get("version") != here["version"]:
        raise ArtifactError(f"{engine.name} was built with TensorRT {built.get('version')}; "
                            f"this machine has TensorRT {here['version']}", hint=rebuild)
    if "unknown" in (built.get("compute_capability"), here["compute_capability"]):
        log.warning("%s: the GPU it was built for or this GPU is unknown; it runs only if they are the same architecture",
                    engine.name)
    elif built.get("compute_capability") != here["compute_capability"]:
        raise ArtifactError(f"{engine.name} was built for {built.get('gpu')} (compute capability "
                            f"{built.get('compute_capability')}); this GPU is {here['gpu']} "
                            f"(compute capability {here['compute_capability']})", hint=rebuild)
    if built.get("gpu") != here["gpu"]:
        log.warning("%s was built on %s and runs on %s (same architecture); latency may differ, rebuild for best speed",
                    engine.name, built.get("gpu"), here["gpu"])


class TensorRTRunner(Runner):
    backend = "tensorrt"
    gpu: CudaDevice | None
    _logger: Any  # tensorrt's Logger, Runtime, ICudaEngine and IExecutionContext: imported lazily
    runtime: Any
    engine: Any
    context: Any
    inputs: list[str]
    outputs: list[str]
    dtypes: dict[str, np.dtype[Any]]
    batch_ranges: dict[str, tuple[int, int]]
    buffers: dict[str, IOBuffer]
    _signature: tuple[list[TensorSpec], list[TensorSpec]]

    @classmethod
    def resolve_device(cls, device: str) -> str:
        return "cuda" if device == "auto" else device

    @classmethod
    def facts(cls, gpu: dict[str, Any]) -> dict[str, Any]:
        import tensorrt as trt

        out: dict[str, Any] = {"version": trt.__version__, "dla_cores": None}
        if gpu.get("found"):
            try:
                out["dla_cores"] = int(trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores)
            except Exception as exc:
                out["dla_cores"] = f"unreadable: {exc}"
        return out

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision_hint: str = "f32", bare: bool = False) -> TensorRTRunner:
        import tensorrt as trt

        from edgetl.runtime.cuda_device import CudaDevice

        # an engine without its card (built by trtexec): where it was built is not known, so
        # TensorRT itself says whether it loads here (the error names the rebuild)
        card: ModelCard | None = None if bare and not engine_card_path(path).is_file() else read_engine_card(path)
        built = card.source.get("tensorrt", {}) if card else {}
        index = int(device.split(":")[1]) if device.startswith("cuda:") else 0  # "cpu" (the default) -> GPU 0
        gpu = CudaDevice(index)  # sets the device before anything is deserialized
        try:
            if card is not None:
                check_compatible(built, {"version": trt.__version__, **gpu.facts()}, path)
            runner = cls._made(path, card, built, gpu, threads)
        except BaseException:
            gpu.close()  # nothing holds the device's memory and stream any more
            raise
        return runner

    @classmethod
    def _made(cls, path: Path, card: ModelCard | None, built: dict[str, Any], gpu: CudaDevice,
              threads: int | None) -> TensorRTRunner:
        """The engine deserialized on `gpu`, its tensors read, as a runner (`card` None: an
        engine without one, described by its own signature)."""
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        # An engine may hold layers of TensorRT's plugin library: registered before deserializing
        trt.init_libnvinfer_plugins(logger, "")
        rebuild = f"rebuild it on this device: edgetl build-engine {built.get('onnx', 'MODEL.onnx')} --out {path}"
        runtime = needed(trt.Runtime(logger), "a TensorRT runtime", rebuild)
        if built.get("dla_core") is not None:
            runtime.DLA_core = int(built["dla_core"])  # the core the engine was built for
        engine = needed(runtime.deserialize_cuda_engine(path.read_bytes()), f"the engine in {path.name}", rebuild)
        context = needed(engine.create_execution_context(), "an execution context", rebuild)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        specs = [[TensorSpec(n, tuple(None if d < 0 else int(d) for d in engine.get_tensor_shape(n)), dtypes[n].name)
                  for n in group] for group in (inputs, outputs)]
        signature = (specs[0], specs[1])
        runner = cls(path, card if card is not None else bare_card(*signature), f"cuda:{gpu.index}", threads)
        # TensorRT fixes the precision when it builds the engine (build-engine --precision).
        runner.inference_precision = built.get("inference_precision", "f32")
        runner.gpu, runner._logger, runner.runtime, runner.engine, runner.context = gpu, logger, runtime, engine, context
        runner.inputs, runner.outputs, runner.dtypes, runner._signature = inputs, outputs, dtypes, signature
        runner.batch_ranges, runner.buffers = {}, {}
        for name in inputs:
            if tuple(engine.get_tensor_shape(name))[0] == -1:  # a dynamic batch: the profile's range
                low, _, high = engine.get_tensor_profile_shape(name, 0)
                runner.batch_ranges[name] = (int(low[0]), int(high[0]))
            else:
                fixed = int(tuple(engine.get_tensor_shape(name))[0])
                runner.batch_ranges[name] = (fixed, fixed)
        return runner

    @property
    def batch_range(self) -> tuple[int, int]:
        return self.batch_ranges[self.inputs[0]]

    def checked_input(self, batch: Any) -> np.ndarray:
        if len(self.inputs) != 1:  # before the card's shape: one array cannot feed this engine at all
            raise ConfigError(f"{self.path.name} takes {len(self.inputs)} inputs ({', '.join(self.inputs)})",
                              hint="call infer_named({name: array, ...}) with every input")
        return super().checked_input(batch)

    def compute(self, batch: np.ndarray) -> np.ndarray:
        out = self.infer_named({self.inputs[0]: batch})
        return out[self.outputs[0]].astype(np.float32)

    def infer_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every input by name (cast to the engine's dtype); every output by name."""
        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise ConfigError(f"missing input(s) {', '.join(missing)} for {self.path.name}",
                              hint=f"pass {', '.join(self.inputs)}")
        for name in self.inputs:
            array = np.asarray(feeds[name])
            low, high = self.batch_ranges[name]
            if not low <= len(array) <= high:
                raise ConfigError(f"batch {len(array)} is outside the engine's profile ({low} to {high})",
                                  hint="rebuild with --batch MIN:OPT:MAX covering it")
            if not self.context.set_input_shape(name, tuple(array.shape)):
                raise ConfigError(f"TensorRT refused the shape {tuple(array.shape)} for input {name}",
                                  hint="pass inputs shaped as the model's card says")
            buf = self._bound(name, tuple(array.shape))
            buf.host[...] = array  # cast to the engine's dtype, into pinned memory
            self._gpu.to_device(buf)
        for name in self.outputs:
            self._bound(name, tuple(self.context.get_tensor_shape(name)))
        if not self.context.execute_async_v3(self._gpu.stream):
            raise ArtifactError(f"TensorRT failed to run {self.path.name}",
                                hint="see the TensorRT log above; rebuild the engine on this device")
        for name in self.outputs:
            self._gpu.to_host(self.buffers[name])
        self._gpu.synchronize()
        return {name: self.buffers[name].host.copy() for name in self.outputs}  # the buffers are reused

    @property
    def _gpu(self) -> CudaDevice:
        if self.gpu is None:
            raise ArtifactError(f"{self.path.name} was closed", hint="open it again")
        return self.gpu

    def _bound(self, name: str, shape: tuple[int, ...]) -> IOBuffer:
        """The tensor's buffer shaped for this call, bound to the context; memory is
        allocated only when a call needs more than any before it (trtexec allocates once)."""
        nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
        buf = self.buffers.get(name)
        if buf is None or buf.capacity < nbytes:
            if buf is not None:
                self._gpu.free(buf)
            buf = self.buffers[name] = self._gpu.buffer(nbytes)
            self.context.set_tensor_address(name, buf.address)
        buf.shape_as(shape, self.dtypes[name])
        return buf

    def close(self) -> None:
        self.context = self.engine = self.runtime = None  # the context goes before the memory it reads
        gpu = getattr(self, "gpu", None)
        if gpu is not None:
            gpu.close()
            self.gpu = None
        self.buffers = {}


def needed(value: T | None, what: str, hint: str = "see the TensorRT log above") -> T:
    """TensorRT answers None where it cannot make something; say what, not AttributeError later."""
    if value is None:
        raise ArtifactError(f"TensorRT could not create {what}", hint=hint)
    return value
