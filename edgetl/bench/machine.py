"""The machine a measurement ran on: CPU model and the instruction sets that change INT8
speed (AVX2, AVX-512, VNNI), cores, memory, GPU; recorded with every benchmark result."""
from __future__ import annotations

import os
import platform
from pathlib import Path

_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "neon", "asimd")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    info = _cpuinfo()
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines()
                  if line.startswith(("flags", "Features"))), [])
    memory_gib = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"cpu": cpu_name(), "cpu_flags": [f for f in _FLAGS if f in flags], "cores": os.cpu_count(),
            "memory_gib": memory_gib, "machine": platform.machine(), "os": platform.platform()}
