"""A stand-in for cuda-python's `cuda.bindings.runtime` where no GPU is: the same names,
tuple returns and error codes. Device and pinned memory are real host memory, so copies
are real; it records every allocation and refuses copies between the wrong kinds of
memory (a pageable host buffer where pinned was promised)."""
from __future__ import annotations

import ctypes
import enum
import types

import numpy as np


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


OK = cudaError_t.cudaSuccess
DRIVER = 12060  # what the driver supports (JetPack 6: CUDA 12.6)
RUNTIME = 12080  # what this runtime is
TEGRA = False  # a Jetson: no minor-version compatibility
GPU = (b"Orin (fake)", 8, 7)  # name, compute capability
DEVICE: dict[int, np.ndarray] = {}  # address -> memory
PINNED: dict[int, np.ndarray] = {}
CALLS: list[tuple] = []
STREAMS: set[int] = set()


def reset(driver: int = 12060, runtime: int = 12080, tegra: bool = False, gpu: tuple = (b"Orin (fake)", 8, 7)) -> None:
    """A driver and runtime of these CUDA versions; `tegra`: a Jetson, which has no
    minor-version compatibility (a 12.9 runtime on JetPack 6's 12.6 driver is refused)."""
    global DRIVER, RUNTIME, TEGRA, GPU
    DRIVER, RUNTIME, TEGRA, GPU = driver, runtime, tegra, gpu
    for table in (DEVICE, PINNED, STREAMS):
        table.clear()
    CALLS.clear()


def install(monkeypatch) -> None:
    """This stand-in as cuda-python's runtime, and no system libcudart (a machine may
    have one: it would be tried first)."""
    from edgetl.runtime import cuda_device

    monkeypatch.setattr(cuda_device, "_cudart", lambda: __import__("fake_cudart"))
    monkeypatch.setattr(cuda_device, "_system_runtimes", list)


def _too_new() -> bool:
    if TEGRA:
        return RUNTIME // 10 > DRIVER // 10  # major and minor
    return RUNTIME // 1000 > DRIVER // 1000


def cudaGetErrorName(err):
    return OK, cudaError_t(err).name.encode()


def cudaDriverGetVersion():
    return OK, DRIVER


def cudaRuntimeGetVersion():
    return OK, RUNTIME


def cudaSetDevice(index):
    CALLS.append(("cudaSetDevice", index))
    if _too_new():
        return (cudaError_t.cudaErrorInsufficientDriver,)
    return (OK,) if index == 0 else (cudaError_t.cudaErrorInvalidValue,)


def cudaGetDeviceProperties(index):
    CALLS.append(("cudaGetDeviceProperties", index))
    return OK, types.SimpleNamespace(name=GPU[0] + b"\x00" * 200, major=GPU[1], minor=GPU[2])


def _alloc(table, nbytes, what):
    memory = np.zeros(nbytes, np.uint8)
    address = memory.ctypes.data
    table[address] = memory
    CALLS.append((what, nbytes))
    return OK, address


def cudaMalloc(nbytes):
    return _alloc(DEVICE, nbytes, "cudaMalloc")


def cudaMallocHost(nbytes):
    return _alloc(PINNED, nbytes, "cudaMallocHost")


def cudaFree(address):
    CALLS.append(("cudaFree", address))
    return (OK,) if DEVICE.pop(address, None) is not None else (cudaError_t.cudaErrorInvalidValue,)


def cudaFreeHost(address):
    CALLS.append(("cudaFreeHost", address))
    return (OK,) if PINNED.pop(address, None) is not None else (cudaError_t.cudaErrorInvalidValue,)


def _inside(table, address, nbytes) -> bool:
    return any(start <= address and address + nbytes <= start + m.nbytes for start, m in table.items())


def cudaMemcpyAsync(dst, src, nbytes, kind, stream):
    to_device = kind == cudaMemcpyKind.cudaMemcpyHostToDevice
    device, host = (dst, src) if to_device else (src, dst)
    if stream not in STREAMS or not _inside(DEVICE, device, nbytes) or not _inside(PINNED, host, nbytes):
        return (cudaError_t.cudaErrorInvalidValue,)
    ctypes.memmove(dst, src, nbytes)
    CALLS.append(("cudaMemcpyAsync", kind, nbytes))
    return (OK,)


def cudaStreamCreate():
    stream = 4000 + len(STREAMS)
    STREAMS.add(stream)
    return OK, stream


def cudaStreamSynchronize(stream):
    CALLS.append(("cudaStreamSynchronize", stream))
    return (OK,) if stream in STREAMS else (cudaError_t.cudaErrorInvalidValue,)


def cudaStreamDestroy(stream):
    STREAMS.discard(stream)
    return (OK,)


def view(address: int, dtype, shape) -> np.ndarray:
    """Device memory at `address` as an array (for the fake engine)."""
    start = next(s for s, m in DEVICE.items() if s <= address < s + m.nbytes)
    offset = address - start
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return DEVICE[start][offset:offset + nbytes].view(dtype).reshape(shape)


def count(call: str) -> int:
    return sum(c[0] == call for c in CALLS)
