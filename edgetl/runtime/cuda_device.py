"""CUDA device facts, memory and streams for the TensorRT path, without torch.

JetPack ships TensorRT with neither torch nor cuda-python, so this takes cuda-python (the
`tensorrt` extra installs it) and falls back to a CUDA build of torch when that is what
the machine has. `device_facts` never fails: a build must not be lost after the engine
exists because the GPU's name could not be read.
"""
from __future__ import annotations

import importlib
import logging

import numpy as np

from edgetl.errors import ArtifactError, BackendUnavailable

log = logging.getLogger("edgetl")
UNKNOWN = {"gpu": "unknown", "compute_capability": "unknown"}


def _cudart():
    for name in ("cuda.bindings.runtime", "cuda.cudart"):  # cuda-python 12.6+ and older layouts
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _torch_cuda():
    try:
        torch = importlib.import_module("torch")  # optional: torch is not a runtime dependency
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _check(result, what: str):
    """cuda-python calls return (error, value...); raise on an error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise ArtifactError(f"CUDA {what} failed ({err})", hint="check nvidia-smi and the CUDA driver; rebuild the engine")
    return values[0] if len(values) == 1 else tuple(values)


class CudaDevice:
    """One GPU, made current: its facts, device buffers for numpy arrays, and a stream of its own."""

    def __init__(self, index: int = 0):
        self.index = index
        self.cudart, self.torch = _cudart(), None
        if self.cudart is None:
            self.torch = _torch_cuda()
            if self.torch is None:
                raise BackendUnavailable("neither cuda-python nor a CUDA build of torch is installed to reach the GPU",
                                         hint="pip install 'edgetl[tensorrt]' (installs cuda-python)")
        self.set_current()
        self._stream = None

    @property
    def stream(self):
        """A stream of its own (not the legacy default one), made when first used."""
        if self._stream is None:
            if self.cudart:
                self._stream = _check(self.cudart.cudaStreamCreate(), "stream creation")
            else:
                self.stream_obj = self.torch.cuda.Stream(device=self.index)
                self._stream = self.stream_obj.cuda_stream
        return self._stream

    def _torch_stream(self):
        self.stream  # noqa: B018 - made on first use
        return self.stream_obj

    def set_current(self) -> None:
        if self.cudart:
            _check(self.cudart.cudaSetDevice(self.index), f"cudaSetDevice({self.index})")
        else:
            self.torch.cuda.set_device(self.index)

    def facts(self) -> dict:
        if self.cudart:
            props = _check(self.cudart.cudaGetDeviceProperties(self.index), "device query")
            name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
            return {"gpu": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}
        props = self.torch.cuda.get_device_properties(self.index)
        return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}"}

    def empty(self, shape: tuple[int, ...], dtype: np.dtype):
        """A device buffer; returns (address, handle) where the handle keeps it alive."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if self.cudart:
            ptr = _check(self.cudart.cudaMalloc(max(1, nbytes)), "cudaMalloc")
            return int(ptr), _Buffer(self.cudart, ptr, tuple(shape), np.dtype(dtype))
        t = self.torch.empty(tuple(shape), dtype=_torch_dtype(self.torch, dtype), device=f"cuda:{self.index}")
        return t.data_ptr(), t

    def upload(self, array: np.ndarray):
        address, handle = self.empty(array.shape, array.dtype)
        if self.cudart:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            _check(self.cudart.cudaMemcpyAsync(address, array.ctypes.data, array.nbytes, kind, self.stream), "copy to GPU")
        else:
            with self.torch.cuda.stream(self._torch_stream()):
                handle.copy_(self.torch.from_numpy(array), non_blocking=False)
        return address, handle

    def download(self, handle) -> np.ndarray:
        if self.cudart:
            out = np.empty(handle.shape, handle.dtype)
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            _check(self.cudart.cudaMemcpyAsync(out.ctypes.data, handle.ptr, out.nbytes, kind, self.stream), "copy from GPU")
            self.synchronize()
            return out
        self.synchronize()
        return handle.cpu().numpy()

    def synchronize(self) -> None:
        if self.cudart:
            _check(self.cudart.cudaStreamSynchronize(self.stream), "stream synchronize")
        else:
            self._torch_stream().synchronize()


class _Buffer:
    def __init__(self, cudart, ptr, shape, dtype):
        self.cudart, self.ptr, self.shape, self.dtype = cudart, ptr, shape, dtype

    def __del__(self):
        try:
            self.cudart.cudaFree(self.ptr)
        except Exception:  # interpreter shutdown
            pass


def _torch_dtype(torch, dtype):
    return {np.dtype("float32"): torch.float32, np.dtype("float16"): torch.float16, np.dtype("int32"): torch.int32,
            np.dtype("int64"): torch.int64, np.dtype("int8"): torch.int8, np.dtype("uint8"): torch.uint8,
            np.dtype("bool"): torch.bool}[np.dtype(dtype)]


def device_facts(index: int = 0) -> dict:
    """GPU name and compute capability, or "unknown" with a warning (never an error)."""
    try:
        return CudaDevice(index).facts()
    except Exception as exc:  # noqa: BLE001 - facts are for the card; the build must go on
        log.warning("could not read the GPU's name and compute capability (%s); the card records 'unknown'",
                    getattr(exc, "message", exc))
        return dict(UNKNOWN)
