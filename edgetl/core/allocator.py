"""glibc's allocator, told to keep the memory it frees.

By default glibc serves every allocation above a threshold (128 KiB, raised dynamically up
to 32 MiB) with its own mmap and returns it to the kernel on free, and trims the heap's
top beyond 128 KiB. edgetl's work is batches of the same large buffers over and over
(images, activations, ONNX Runtime and OpenVINO inputs), so each batch faulted its buffers
in again, page by page: measured on a 2-core EPYC, a Lite0 probe at 224 px spent 42% of
its CPU time in the kernel (6.25 M minor page faults). Served from the heap and kept, the
same buffers are reused: faults fell 5 to 24 times, wall time 20-65%, peak RSS within a few
per cent (benchmarks/cpu_efficiency.py).

Applied once per process through mallopt(3), glibc's own interface, when edgetl is
imported with `EDGETL_MALLOC=keep`; by default glibc's own settings stay: with the heap
serving every buffer, peak RSS is not repeatable on a busy CPU (the sample-cache memory
test's work, three runs each of 250 and 1,250 samples: 780-847 MB, the smaller set as
often above the larger, where glibc's defaults give 756-758 MB every time; one arena or
a 256 MB threshold did not steady it, and without the top pad the larger set peaked
34-70 MB above the smaller), so keeping memory is a choice for
training on a machine with memory to spare until that is solved. What was applied is recorded
(bench's settings). Elsewhere than glibc (musl, macOS) nothing is changed.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import Any

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
# Below 1 GiB an allocation comes from the heap; up to 1 GiB free at its top stays mapped;
# the heap grows 64 MiB at a time (address space: pages are only resident once written).
KEEP = {"mmap_threshold": 1 << 30, "trim_threshold": 1 << 30, "top_pad": 64 << 20}
_OPTIONS = {"mmap_threshold": _M_MMAP_THRESHOLD, "trim_threshold": _M_TRIM_THRESHOLD, "top_pad": _M_TOP_PAD}
CHOICES = ("keep", "system")

_applied: dict[str, Any] | None = None


def keep_freed_memory() -> dict[str, Any]:
    """Apply the allocator settings once (see the module docstring); what this process runs with."""
    global _applied
    if _applied is not None:
        return _applied
    choice = os.environ.get("EDGETL_MALLOC", "system").strip().lower() or "system"
    if choice not in CHOICES:
        logging.getLogger("edgetl").warning("EDGETL_MALLOC=%s is not one of %s: glibc's defaults (the default)",
                                            choice[:40], ", ".join(CHOICES))
        choice = "system"
    _applied = {"allocator": "system default"}
    if choice == "keep" and sys.platform.startswith("linux"):
        try:
            mallopt = ctypes.CDLL(None).mallopt  # the process's own libc
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        except (OSError, AttributeError):  # not glibc
            return _applied
        if all(mallopt(_OPTIONS[name], value) == 1 for name, value in KEEP.items()):
            _applied = {"allocator": "glibc, freed memory kept", **KEEP}
    return _applied


__all__ = ["CHOICES", "KEEP", "keep_freed_memory"]
