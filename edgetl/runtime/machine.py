"""The machine's facts: CPU model and the instruction sets that change what INT8 computes
and how fast (AVX2, AVX-512, VNNI, BF16, AMX, NEON), cores, memory, GPUs, library
versions; the kinds of CPU an INT8 model is made for, and whether this one computes
each exactly; which backends can run here and why not. Recorded with every benchmark
result, and read by `doctor`, `verify` and a bundle choosing its target. Torch-free."""
from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

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


def machine_info() -> dict[str, Any]:
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


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a measurement: edgetl, numpy and
    each backend's (the backend table's `versions`), read from package metadata, so
    nothing heavy is imported."""
    from edgetl.runtime.backend_table import BACKENDS

    versions = {"python": platform.python_version()}
    for name in dict.fromkeys(["edgetl", "numpy", *(v for b in BACKENDS.values() for v in b.versions)]):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


# ------------------------------------------------------------ what an INT8 model needs

@dataclasses.dataclass(frozen=True)
class CpuTarget:
    """The kind of CPU an INT8 model is made for (quantize --cpu; quantize/cpu.py says why)."""

    name: str
    seven_bit_weights: bool  # weights in [-64, 64]: products summed in int16 pairs cannot saturate
    symmetric_activations: bool  # int8 activations with zero point 0 (ARM's dot-product kernels)
    description: str

    @property
    def overflow_fix(self) -> str:
        """NNCF's OverflowFix value that gives these weights (NNCF's own default,
        first_layer_only, is right on no CPU: see quantize/cpu.py)."""
        return "enable" if self.seven_bit_weights else "disable"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "overflow_fix": self.overflow_fix}


CPU_TARGETS = {
    "portable": CpuTarget("portable", True, False,
                          "any x86-64 CPU (AVX2 without VNNI included) and ARM: 7-bit weights, so the result is the "
                          "same on every CPU"),
    "vnni": CpuTarget("vnni", False, False,
                      "x86 CPUs with VNNI or AMX (AVX512-VNNI, AVX-VNNI): full 8-bit weights; loses accuracy on "
                      "AVX2-only CPUs"),
    "arm": CpuTarget("arm", False, True, "ARM CPUs: symmetric int8 activations, full 8-bit weights"),
}


def cpu_has_vnni() -> bool:
    """True where 8-bit dot products accumulate without saturation (AVX-512 VNNI / AVX-VNNI / AMX)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def host_is_arm() -> bool:
    return platform.machine().lower() in ("arm64", "aarch64")


def exact_here(target: CpuTarget) -> bool:
    """Whether this CPU computes a model of that kind as it was measured: 8-bit weights
    saturate only in the pairwise int16 sums of x86 CPUs without VNNI."""
    return target.seven_bit_weights or host_is_arm() or cpu_has_vnni()


def cpu_kind() -> str:
    """arm, vnni (x86 with VNNI or AMX), avx2 (x86 without them) or x86."""
    if host_is_arm():
        return "arm"
    if cpu_has_vnni():
        return "vnni"
    return "avx2" if "avx2" in cpu_flags() else "x86"


# ------------------------------------------------------------ which backends run here

def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version, or "jetson" on a Jetson, or None without one
    (read from files, so no CUDA library is loaded)."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        return next((w for w in text.split() if w[:1].isdigit() and "." in w), "unknown")
    except OSError:
        pass
    return "jetson" if Path("/etc/nv_tegra_release").is_file() else None


def installed(backend: str) -> bool:
    from edgetl.runtime.backend_table import BACKENDS  # the machine's facts load without the table

    return importlib.util.find_spec(BACKENDS[backend].package) is not None


def backend_problem(backend: str) -> str | None:
    """Why `backend` cannot run on this machine (with the remedy), or None."""
    from edgetl.runtime.backend_table import BACKENDS

    if not installed(backend):
        return f"{backend} is not installed: {BACKENDS[backend].install}"
    if backend == "tensorrt" and nvidia_driver() is None and not gpu_names():
        return "no NVIDIA GPU or driver on this machine"
    return None
