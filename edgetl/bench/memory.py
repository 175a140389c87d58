"""Resident memory of this process: the peak while one backend ran.

Linux keeps a high-water mark (VmHWM) that writing "5" to /proc/self/clear_refs resets,
so each backend's peak is measured on its own even though every backend runs in this
process. Elsewhere the process-lifetime peak (getrusage) is the best available.
"""
from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def reset_peak() -> bool:
    """Start a new peak-RSS window; False where the OS cannot (the peak is then cumulative)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mib() -> float | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def peak_rss_mib() -> float:
    """The resident high-water mark since the last reset_peak() (or since start)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
