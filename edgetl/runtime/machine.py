"""The machine a measurement ran on: CPU model and the instruction sets that change INT8
speed (AVX2, AVX-512, VNNI), cores, memory, GPU; recorded with every benchmark result."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path

# The flags that change what a backend computes or how fast: INT8 saturation without
# VNNI, OpenVINO's default bf16 where AVX-512 BF16 or AMX exists.
_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "neon", "asimd")


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


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags (x86 `flags`, ARM `Features`); empty where unknown."""
    return set(next((line.split(":", 1)[1].split() for line in _cpuinfo().splitlines()
                     if line.startswith(("flags", "Features"))), []))


def machine_info() -> dict:
    flags = cpu_flags()
    memory_gib = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"cpu": cpu_name(), "cpu_flags": [f for f in _FLAGS if f in flags], "cores": os.cpu_count(),
            "memory_gib": memory_gib, "machine": platform.machine(), "os": platform.platform(), "gpus": gpu_names()}


def gpu_names() -> list[str]:
    """NVIDIA GPUs as nvidia-smi names them (empty without a driver); no torch needed."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


_VERSIONED = ("edgetl", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "torch", "torchvision", "timm",
              "onnx", "tensorrt")


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a measurement (read from package
    metadata, so nothing heavy is imported)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions
