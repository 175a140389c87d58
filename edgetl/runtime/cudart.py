"""The system's CUDA runtime (`libcudart.so`) through ctypes, as Polygraphy reaches it.

The runtime that the driver and TensorRT were installed with (JetPack's on a Jetson, the
toolkit's or the pip wheel's on x86) is the one that fits the device: no Python binding
to pin, and no second runtime of another CUDA version statically linked into it. Its few
calls are shaped as cuda-python's `cuda.bindings.runtime` answers them (a tuple: the
error code, then the values), so runtime/cuda_device.py takes either. Torch-free.

Where it is looked for, first found first: $EDGETL_CUDART (a file), the CUDA toolkit's
folders (/usr/local/cuda and $CUDA_HOME; on a Jetson its targets/aarch64-linux/lib),
$LD_LIBRARY_PATH, the NVIDIA pip wheels beside edgetl (nvidia-cuda-runtime-cu12, and the
CUDA 13 layout), the system's library folders, then the loader's own search.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import sys
import types
from pathlib import Path
from typing import Any

Result = tuple[Any, ...]  # (error code, values...), as cuda-python returns them
_NAME_BYTES = 256  # cudaDeviceProp starts with char name[256] in every CUDA version
_PROP_BYTES = 16384  # more than any cudaDeviceProp (about 1 KB in CUDA 12)
COMPUTE_MAJOR, COMPUTE_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor / Minor


class cudaMemcpyKind(enum.IntEnum):  # CUDA's names, as cuda-python spells them
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


def candidates() -> list[Path]:
    """Where a libcudart may be, most fitting first (see the module's docstring)."""
    folders: list[Path] = []
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            folders += [Path(home) / "lib64", Path(home) / "lib", Path(home) / "targets" / "aarch64-linux" / "lib",
                        Path(home) / "targets" / "x86_64-linux" / "lib"]
    folders += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    for site in sys.path:
        if site.endswith("site-packages"):
            folders += [Path(site) / "nvidia" / "cuda_runtime" / "lib", Path(site) / "nvidia" / "cu13" / "lib"]
    folders += [Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib64"),
                Path("/usr/lib")]
    found: list[Path] = []
    explicit = os.environ.get("EDGETL_CUDART")
    if explicit:
        found.append(Path(explicit))
    for folder in folders:
        try:
            names = sorted((p for p in folder.glob("libcudart.so*") if p.is_file()), key=lambda p: (len(p.name), p.name))
        except OSError:
            continue
        found += [p for p in names if p not in found]
    return found


class CtypesRuntime:
    """The calls edgetl makes, on a loaded libcudart; `path` says which one."""

    def __init__(self, library: ctypes.CDLL, path: str):
        self.lib, self.path = library, path
        self.cudaMemcpyKind = cudaMemcpyKind
        lib = library
        lib.cudaGetErrorName.restype = ctypes.c_char_p
        lib.cudaGetErrorName.argtypes = [ctypes.c_int]
        for name, args in (("cudaDriverGetVersion", [ctypes.POINTER(ctypes.c_int)]),
                           ("cudaRuntimeGetVersion", [ctypes.POINTER(ctypes.c_int)]),
                           ("cudaSetDevice", [ctypes.c_int]),
                           ("cudaDeviceGetAttribute", [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int]),
                           ("cudaMalloc", [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]),
                           ("cudaMallocHost", [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]),
                           ("cudaFree", [ctypes.c_void_p]), ("cudaFreeHost", [ctypes.c_void_p]),
                           ("cudaMemcpyAsync", [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                                ctypes.c_void_p]),
                           ("cudaStreamCreate", [ctypes.POINTER(ctypes.c_void_p)]),
                           ("cudaStreamSynchronize", [ctypes.c_void_p]), ("cudaStreamDestroy", [ctypes.c_void_p])):
            function = getattr(lib, name)
            function.restype, function.argtypes = ctypes.c_int, args
        # CUDA 12 headers map cudaGetDeviceProperties to the _v2 symbol; older runtimes have only the first
        self._properties = getattr(lib, "cudaGetDeviceProperties_v2", None) or lib.cudaGetDeviceProperties
        self._properties.restype, self._properties.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]

    def _int(self, call: Any, *args: Any) -> Result:
        value = ctypes.c_int(0)
        return call(ctypes.byref(value), *args), value.value

    def _pointer(self, call: Any, *args: Any) -> Result:
        value = ctypes.c_void_p(None)
        return call(ctypes.byref(value), *args), value.value or 0

    def cudaGetErrorName(self, err: int) -> Result:
        return 0, self.lib.cudaGetErrorName(int(err)) or b"unknown error"

    def cudaDriverGetVersion(self) -> Result:
        return self._int(self.lib.cudaDriverGetVersion)

    def cudaRuntimeGetVersion(self) -> Result:
        return self._int(self.lib.cudaRuntimeGetVersion)

    def cudaSetDevice(self, index: int) -> Result:
        return (self.lib.cudaSetDevice(int(index)),)

    def cudaGetDeviceProperties(self, index: int) -> Result:
        """The name (the struct's first field) and the compute capability (asked as
        attributes: the struct's later layout changes between CUDA versions)."""
        raw = ctypes.create_string_buffer(_PROP_BYTES)
        err = self._properties(raw, int(index))
        if err:
            return err, None
        err, major = self._int(self.lib.cudaDeviceGetAttribute, COMPUTE_MAJOR, int(index))
        if err:
            return err, None
        err, minor = self._int(self.lib.cudaDeviceGetAttribute, COMPUTE_MINOR, int(index))
        return err, types.SimpleNamespace(name=raw.raw[:_NAME_BYTES], major=major, minor=minor)

    def cudaMalloc(self, nbytes: int) -> Result:
        return self._pointer(self.lib.cudaMalloc, ctypes.c_size_t(nbytes))

    def cudaMallocHost(self, nbytes: int) -> Result:
        return self._pointer(self.lib.cudaMallocHost, ctypes.c_size_t(nbytes))

    def cudaFree(self, address: int) -> Result:
        return (self.lib.cudaFree(ctypes.c_void_p(address)),)

    def cudaFreeHost(self, address: int) -> Result:
        return (self.lib.cudaFreeHost(ctypes.c_void_p(address)),)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: int, stream: int | None) -> Result:
        return (self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes),
                                         int(kind), ctypes.c_void_p(stream)),)

    def cudaStreamCreate(self) -> Result:
        return self._pointer(self.lib.cudaStreamCreate)

    def cudaStreamSynchronize(self, stream: int | None) -> Result:
        return (self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)),)

    def cudaStreamDestroy(self, stream: int | None) -> Result:
        return (self.lib.cudaStreamDestroy(ctypes.c_void_p(stream)),)


def load_all() -> tuple[list[CtypesRuntime], str]:
    """Every libcudart that loads here, most fitting first (one per file, however many
    links lead to it), and what was tried when none does."""
    tried, loaded, seen = [], [], set()
    paths = [str(p) for p in candidates()]
    fallback = ctypes.util.find_library("cudart")
    for path in [*paths, *([fallback] if fallback and fallback not in paths else [])]:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            loaded.append(CtypesRuntime(ctypes.CDLL(path), path))
        except (OSError, AttributeError) as exc:  # not loadable here, or not a CUDA runtime
            tried.append(f"{path} ({str(exc).splitlines()[0][:80]})")
    return loaded, ("no libcudart found" if not tried else "no libcudart loads: " + "; ".join(tried[:3]))


__all__ = ["CtypesRuntime", "candidates", "cudaMemcpyKind", "load_all"]
