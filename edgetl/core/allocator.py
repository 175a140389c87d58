"""How freed memory comes back: the choice applied once per process, when edgetl is imported.

edgetl's work is batches of the same large buffers over and over (images, activations,
ONNX Runtime and OpenVINO inputs). glibc serves every allocation above a threshold
(128 KiB, raised dynamically up to 32 MiB) with its own mmap and returns it to the kernel
on free, so each batch faulted its buffers in again, 4 KiB at a time: measured on a
2-core EPYC, a Lite0 probe at 224 px spent 28-44% of its CPU time in the kernel.

`EDGETL_MALLOC` chooses (benchmarks/cpu_efficiency.py measures all three):
- `hugepages` (the default): torch puts every tensor of 2 MiB or more on transparent huge
  pages (torch's own `THP_MEM_ALLOC_ENABLE`, read at its first allocation, so it is set
  before torch is imported), one fault per 2 MiB instead of 512: faults fell 10-13x, the
  probe's kernel share from 28% to 16% and bench's from 14% to 3%, at +2% peak RSS (+6-10%
  for a full fine-tune, whose kernel share barely moves: each batch's fresh pages are still
  zeroed). Where the kernel offers no huge pages (`never`), or torch was imported before
  edgetl, nothing changes.
- `keep`: glibc told through mallopt(3) to serve buffers under 1 GiB from the heap and keep
  up to 1 GiB freed at its top, so batches reuse the pages themselves (training 2-6% in the
  kernel) at +17-18% peak RSS, and a peak that is not repeatable on a busy CPU (the
  sample-cache memory test's work: 780-847 MB against 756-758 MB every time with glibc's
  defaults; one arena or a 256 MB threshold did not steady it): for training on a machine
  with memory to spare.
- `system`: nothing changed.

What was applied is recorded (bench's settings). Elsewhere than Linux/glibc nothing is changed.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path
from typing import Any

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
# Below 1 GiB an allocation comes from the heap; up to 1 GiB free at its top stays mapped;
# the heap grows 64 MiB at a time (address space: pages are only resident once written).
KEEP = {"mmap_threshold": 1 << 30, "trim_threshold": 1 << 30, "top_pad": 64 << 20}
_OPTIONS = {"mmap_threshold": _M_MMAP_THRESHOLD, "trim_threshold": _M_TRIM_THRESHOLD, "top_pad": _M_TOP_PAD}
CHOICES = ("hugepages", "keep", "system")
DEFAULT = "hugepages"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")

_applied: dict[str, Any] | None = None


def transparent_huge_pages() -> str | None:
    """The kernel's mode (`always`, `madvise` or `never`), None where it has none."""
    try:
        text = THP_MODE.read_text()
    except OSError:
        return None
    chosen = text[text.find("[") + 1:text.find("]")] if "[" in text else ""
    return chosen or None


def _huge_pages_for_torch() -> dict[str, Any] | None:
    mode = transparent_huge_pages()
    if mode not in ("always", "madvise"):
        return None
    chosen = os.environ.get("THP_MEM_ALLOC_ENABLE")
    if chosen is not None:
        if chosen.strip() in ("", "0"):
            return None  # the user turned it off
    elif "torch" in sys.modules:
        return None  # torch read the variable at its first allocation already
    else:
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
    return {"allocator": "system default, torch tensors of 2 MiB and more on transparent huge pages",
            "transparent_huge_pages": mode}


def _keep_freed() -> dict[str, Any] | None:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own libc
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        return None
    if all(mallopt(_OPTIONS[name], value) == 1 for name, value in KEEP.items()):
        return {"allocator": "glibc, freed memory kept", **KEEP}
    return None


def configure_allocator() -> dict[str, Any]:
    """Apply `EDGETL_MALLOC` once (see the module docstring); what this process runs with."""
    global _applied
    if _applied is not None:
        return _applied
    choice = os.environ.get("EDGETL_MALLOC", DEFAULT).strip().lower() or DEFAULT
    if choice not in CHOICES:
        logging.getLogger("edgetl").warning("EDGETL_MALLOC=%s is not one of %s: %s (the default)",
                                            choice[:40], ", ".join(CHOICES), DEFAULT)
        choice = DEFAULT
    applied = None
    if sys.platform.startswith("linux"):
        applied = _huge_pages_for_torch() if choice == "hugepages" else _keep_freed() if choice == "keep" else None
    _applied = applied or {"allocator": "system default"}
    return _applied


__all__ = ["CHOICES", "DEFAULT", "KEEP", "configure_allocator", "transparent_huge_pages"]
