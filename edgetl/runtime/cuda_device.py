"""CUDA device facts, memory and a stream for the TensorRT path, without torch.

JetPack ships TensorRT with neither torch nor cuda-python, so the GPU is reached through
the system's own CUDA runtime first (`libcudart.so` by ctypes, runtime/cudart.py: the one
the driver and TensorRT were installed with, so no binding's CUDA version can be wrong),
trying each one found until one answers; then cuda-python; then a CUDA build of torch.
Why each one did not answer (a CUDA 13 runtime on a CUDA 12 driver answers
cudaErrorInsufficientDriver) is kept and said. Buffers for an engine's
tensors are allocated once and reused: device memory plus a pinned host mirror, so the
copies run asynchronously on the device's own stream as trtexec's do. `device_facts`
never fails: a build must not be lost after the engine exists because the GPU's name
could not be read.
"""
from __future__ import annotations

import ctypes
import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, BackendUnavailable

log = logging.getLogger("edgetl")
UNKNOWN = {"gpu": "unknown", "compute_capability": "unknown"}
INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver: the runtime is newer than the driver
_NO_RUNTIME = ("install the CUDA runtime the driver came with (JetPack, the CUDA toolkit, or pip install "
               "nvidia-cuda-runtime-cu12), or set EDGETL_CUDART to its libcudart.so")


def cuda_version(number: int) -> str:
    """CUDA's integer versions (12060) as people write them (12.6)."""
    return f"{number // 1000}.{number % 1000 // 10}"


def _cudart() -> Any:  # cuda-python's runtime module, or None
    for name in ("cuda.bindings.runtime", "cuda.cudart"):  # cuda-python 12.6+ and older layouts
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _system_runtimes() -> list[Any]:
    """The system's libcudart files that load here, most fitting first (runtime/cudart.py)."""
    from edgetl.runtime import cudart

    return cudart.load_all()[0]


def runtimes() -> list[tuple[Any, str]]:
    """Every CUDA runtime to reach the GPU through, in order, each with what it is: the
    system's libcudart files, then cuda-python."""
    found: list[tuple[Any, str]] = [(rt, f"libcudart {rt.path}") for rt in _system_runtimes()]
    module = _cudart()
    if module is not None:
        found.append((module, "cuda-python"))
    return found


def _torch_cuda() -> Any:  # torch with CUDA, or None
    try:
        torch = importlib.import_module("torch")  # optional: torch is not a runtime dependency
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def cuda_versions(cudart: Any) -> dict[str, str | None]:
    """The CUDA version the driver supports and the one cuda-python's runtime is; both calls
    answer even where the runtime is too new for the driver."""
    out: dict[str, str | None] = {}
    for key, call in (("driver_cuda", "cudaDriverGetVersion"), ("runtime_cuda", "cudaRuntimeGetVersion")):
        err, *value = getattr(cudart, call)()
        out[key] = cuda_version(int(value[0])) if int(err) == 0 and value and int(value[0]) > 0 else None
    return out


def is_tegra() -> bool:
    """A Jetson (Tegra): JetPack's CUDA has no minor-version compatibility."""
    if Path("/etc/nv_tegra_release").is_file():
        return True
    try:
        return b"tegra" in Path("/proc/device-tree/compatible").read_bytes()
    except OSError:
        return False


def mismatch(versions: dict[str, Any], tegra: bool | None = None, via: str = "cuda-python") -> tuple[str, str] | None:
    """Why the runtime `via` (cuda-python, or "libcudart PATH") cannot run on this driver,
    and the remedy; or None. On x86 CUDA runs a runtime of the driver's major version or
    older (minor-version compatibility); a Jetson has none: the runtime's major.minor must
    not be newer than JetPack's (cuda-bindings 12.9 links the 12.9 runtime statically,
    which JetPack 6's 12.6 driver refuses)."""
    driver, runtime = versions.get("driver_cuda"), versions.get("runtime_cuda")
    if not driver:
        return "no NVIDIA driver answers", "is there a GPU? check nvidia-smi"
    tegra = is_tegra() if tegra is None else tegra
    binding = via == "cuda-python"
    if tegra and runtime:
        have, need = tuple(map(int, runtime.split("."))), tuple(map(int, driver.split(".")))
        if have > need:
            return (f"{via}'s CUDA {runtime} runtime is newer than this Jetson's CUDA {driver}, and a Jetson runs no "
                    "newer runtime minor", (f"pip install 'cuda-python>={driver},<{need[0]}.{need[1] + 1}' "
                                            "(JetPack's CUDA), or upgrade JetPack") if binding else
                    "set EDGETL_CUDART to JetPack's own /usr/local/cuda/lib64/libcudart.so, or upgrade JetPack")
    if runtime and int(runtime.split(".")[0]) > int(driver.split(".")[0]):
        major = int(driver.split(".")[0])
        return (f"{via}'s CUDA {runtime} runtime needs a newer driver than this one, which supports CUDA {driver}",
                f"pip install 'cuda-python>={major},<{major + 1}' (or update the NVIDIA driver)" if binding else
                f"set EDGETL_CUDART to a CUDA {major} runtime (pip install nvidia-cuda-runtime-cu{major}), or update "
                "the NVIDIA driver")
    return None


def _check(cudart: Any, result: Any, what: str, via: str = "cuda-python") -> Any:
    """CUDA calls (cuda-python's, or runtime/cudart.py's in its shape) return (error,
    value...); raise on an error, naming the runtime `via`; return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        try:
            name = cudart.cudaGetErrorName(err)[1]
            name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:
            name = "error"
        cause = mismatch(cuda_versions(cudart), via=via) if int(err) == INSUFFICIENT_DRIVER else None
        raise ArtifactError(f"CUDA {what} failed: {name} ({int(err)})" + (f"; {cause[0]}" if cause else ""),
                            hint=cause[1] if cause else
                            "check nvidia-smi and the CUDA driver; rebuild the engine on this device")
    return values[0] if len(values) == 1 else tuple(values)


class IOBuffer:
    """One tensor's device memory and its pinned host mirror, for up to `capacity` bytes;
    `host` is the mirror viewed with the current shape."""

    def __init__(self, address: int, host_memory: np.ndarray, capacity: int, keep: tuple[Any, ...] = ()):
        self.address, self.host_memory, self.capacity, self.keep = address, host_memory, capacity, keep
        self.host: np.ndarray = host_memory[:0]

    def shape_as(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.host = self.host_memory[:nbytes].view(dtype).reshape(shape)
        return self.host


class CudaDevice:
    """One GPU, made current: its facts, reusable tensor buffers, and a stream of its own."""

    def __init__(self, index: int = 0, found: list[tuple[Any, str]] | None = None):
        self.index = index
        # the runtime module (cuda-python's, or runtime/cudart.py's in its shape) or torch: typed by neither
        self.cudart: Any = None
        self.torch: Any = None
        self.cause: str | None = None
        self.via = ""  # what the GPU is reached through: "libcudart PATH", "cuda-python" or "torch"
        self.versions: dict[str, str | None] = {}
        self._facts: dict[str, str] | None = None
        self._stream: Any = None  # a cudaStream_t, or torch's stream's handle
        self._torch_stream: Any = None
        self._buffers: list[IOBuffer] = []
        causes: list[str] = []
        remedy = _NO_RUNTIME
        for runtime, via in runtimes() if found is None else found:  # `found`: the caller already looked
            try:
                versions = cuda_versions(runtime)
                self.versions = self.versions or versions
                _check(runtime, runtime.cudaSetDevice(index), f"cudaSetDevice({index})", via)
                self.cudart, self.via, self.versions = runtime, via, versions
                break
            except ArtifactError as exc:  # the first call failed: the next runtime, torch, then the error
                causes.append(f"{via}: {exc.message}")
                remedy = (mismatch(versions, via=via) or ("", exc.hint or _NO_RUNTIME))[1] if remedy == _NO_RUNTIME else remedy
            except (RuntimeError, OSError) as exc:  # bindings before 12.9 raise when libcuda cannot be loaded
                causes.append(f"{via} cannot load the CUDA driver ({str(exc).splitlines()[0][:160] or exc!r})")
        # the runtimes passed over (or, when none answered, why not)
        self.cause = "; ".join(causes) or (None if self.cudart else "no CUDA runtime found (no libcudart, no cuda-python)")
        if self.cudart is None:
            self.torch = _torch_cuda()
            if self.torch is None:
                raise BackendUnavailable(f"cannot reach the GPU: {self.cause}; and no CUDA build of torch to fall "
                                         "back on", hint=remedy)
            log.warning("GPU memory through torch: %s", self.cause)
            self.via = "torch"
            self.torch.cuda.set_device(index)

    @property
    def stream(self) -> Any:
        """A stream of its own (not the legacy default one), made when first used."""
        if self._stream is None:
            if self.cudart:
                self._stream = self._ok(self.cudart.cudaStreamCreate(), "stream creation")
            else:
                self._torch_stream = self.torch.cuda.Stream(device=self.index)
                self._stream = self._torch_stream.cuda_stream
        return self._stream

    def _ok(self, result: Any, what: str) -> Any:
        return _check(self.cudart, result, what, self.via)

    def set_current(self) -> None:
        if self.cudart:
            self._ok(self.cudart.cudaSetDevice(self.index), f"cudaSetDevice({self.index})")
        else:
            self.torch.cuda.set_device(self.index)

    def facts(self) -> dict[str, str]:
        """GPU name and compute capability, read once."""
        if self._facts is None:
            if self.cudart:
                props = self._ok(self.cudart.cudaGetDeviceProperties(self.index), "device query")
                name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
                self._facts = {"gpu": name.split("\x00")[0], "compute_capability": f"{props.major}.{props.minor}"}
            else:
                props = self.torch.cuda.get_device_properties(self.index)
                self._facts = {"gpu": str(props.name), "compute_capability": f"{props.major}.{props.minor}"}
        return dict(self._facts)

    def buffer(self, nbytes: int) -> IOBuffer:
        """Device memory and a pinned host mirror of `nbytes`, kept until `free` or `close`."""
        nbytes = max(1, int(nbytes))
        if self.cudart:
            address = int(self._ok(self.cudart.cudaMalloc(nbytes), "cudaMalloc"))
            try:
                pinned = int(self._ok(self.cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
            except ArtifactError:
                self.cudart.cudaFree(address)
                raise
            host = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(pinned))
            buf = IOBuffer(address, host, nbytes, keep=(pinned,))
        else:
            device = self.torch.empty(nbytes, dtype=self.torch.uint8, device=f"cuda:{self.index}")
            pinned = self.torch.empty(nbytes, dtype=self.torch.uint8, pin_memory=True)
            buf = IOBuffer(device.data_ptr(), pinned.numpy(), nbytes, keep=(device, pinned))
        self._buffers.append(buf)
        return buf

    def free(self, buf: IOBuffer) -> None:
        if buf in self._buffers:
            self._buffers.remove(buf)
            if self.cudart:
                self.cudart.cudaFree(buf.address)
                self.cudart.cudaFreeHost(buf.keep[0])
            empty = np.zeros(0, np.uint8)  # nothing left to view: the memory is the system's again
            buf.keep, buf.host, buf.host_memory = (), empty, empty

    def to_device(self, buf: IOBuffer) -> None:
        """Copy the host mirror (as shaped) to the device, asynchronously on the stream."""
        if self.cudart:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._ok(self.cudart.cudaMemcpyAsync(buf.address, buf.host.ctypes.data, buf.host.nbytes, kind,
                                                            self.stream), "copy to GPU")
        else:
            self.stream  # noqa: B018 - made on first use
            with self.torch.cuda.stream(self._torch_stream):
                buf.keep[0][:buf.host.nbytes].copy_(buf.keep[1][:buf.host.nbytes], non_blocking=True)

    def to_host(self, buf: IOBuffer) -> None:
        """Copy the device memory into the host mirror (as shaped); valid after `synchronize`."""
        if self.cudart:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._ok(self.cudart.cudaMemcpyAsync(buf.host.ctypes.data, buf.address, buf.host.nbytes, kind,
                                                            self.stream), "copy from GPU")
        else:
            self.stream  # noqa: B018
            with self.torch.cuda.stream(self._torch_stream):
                buf.keep[1][:buf.host.nbytes].copy_(buf.keep[0][:buf.host.nbytes], non_blocking=True)

    def synchronize(self) -> None:
        if self.cudart:
            self._ok(self.cudart.cudaStreamSynchronize(self.stream), "stream synchronize")
        else:
            self.stream  # noqa: B018
            self._torch_stream.synchronize()

    def close(self) -> None:
        """Free every buffer and the stream."""
        for buf in list(self._buffers):
            self.free(buf)
        if self.cudart and self._stream is not None:
            self.cudart.cudaStreamDestroy(self._stream)
        self._stream = None


def device_facts(index: int = 0) -> dict[str, str]:
    """GPU name and compute capability, with that GPU made current for what follows (a
    build); "unknown" with a warning, never an error."""
    try:
        device = CudaDevice(index)
        facts = device.facts()
        device.close()
        return facts
    except Exception as exc:
        log.warning("could not read the GPU's name and compute capability (%s); the card records 'unknown'",
                    getattr(exc, "message", exc))
        return dict(UNKNOWN)


def gpu_report(index: int = 0) -> dict[str, Any]:
    """What `doctor` says about the GPU: found or not, through which CUDA runtime (and
    every runtime found, in the order tried), its facts, the driver's and the runtime's CUDA
    versions and whether they go together, and the remedy when not."""
    report: dict[str, Any] = {"found": False, "via": None, **UNKNOWN, "driver_cuda": None, "runtime_cuda": None,
                    "compatible": None, "problem": None, "runtimes": [], "passed_over": None}
    found = runtimes()
    report["runtimes"] = [via for _, via in found]
    try:
        device = CudaDevice(index, found)  # the same runtimes, not loaded a second time
    except Exception as exc:
        message, hint = getattr(exc, "message", str(exc)), getattr(exc, "hint", None)
        report["problem"] = f"{message}; {hint}" if hint else message
        for runtime, via in found[:1]:  # the versions of the runtime tried first
            try:
                report.update(cuda_versions(runtime))
            except Exception:
                pass
            report["compatible"] = (mismatch(report, via=via) is None) if report["driver_cuda"] else None
        return report
    report.update(found=True, via=device.via, **device.facts(), **device.versions)
    report["compatible"] = True if device.cudart is not None else None
    report["passed_over"] = device.cause  # runtimes that did not answer before the one used
    if device.cudart is None:
        report["problem"] = device.cause
    device.close()
    return report
