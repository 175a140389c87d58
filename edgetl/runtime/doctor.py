"""What this machine can run, and why not: the facts `edgetl doctor` prints (and
`--json` gives scripts). The CPU and the instruction sets that change what INT8 computes,
which kind of INT8 CPU model (quantize --cpu) runs exactly here, every backend with its
version and devices, OpenVINO's CPU precisions, the GPU with its driver's and runtime's
CUDA versions and whether they go together, TensorRT and its DLA cores. Torch-free; it
never fails, a fact it cannot read is said as such.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import platform
from typing import Any

from edgetl._version import __version__
from edgetl.core.threads import default_threads, usable_cores
from edgetl.runtime.machine import (
    CPU_TARGETS,
    backend_problem,
    cpu_flags,
    cpu_kind,
    cpu_name,
    exact_here,
    gpu_names,
    installed,
    nvidia_driver,
)

ISA = {  # what doctor names -> the /proc/cpuinfo flags that give it
    "avx2": ("avx2",), "avx512": ("avx512f",), "vnni": ("avx512_vnni", "avx_vnni"),
    "bf16": ("avx512_bf16", "amx_bf16"), "amx": ("amx_int8", "amx_tile"), "neon": ("asimd", "neon"),
    "dotprod": ("asimddp",),
}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_facts() -> dict[str, Any]:
    flags = cpu_flags()
    kinds = {}
    for name, target in CPU_TARGETS.items():
        kinds[name] = "exact" if exact_here(target) else \
            "wrong answers: 8-bit weights saturate without VNNI (use quantize --cpu portable)"
    return {"model": cpu_name(), "arch": platform.machine(), "kind": cpu_kind(),
            "isa": {name: any(f in flags for f in names) for name, names in ISA.items()},
            "int8_models": kinds, "usable_cores": usable_cores(), "default_threads": default_threads()}


def gpu_facts() -> dict[str, Any]:
    driver = nvidia_driver()
    if driver is None and not gpu_names():
        return {"found": False, "problem": "no NVIDIA GPU or driver on this machine"}
    from edgetl.runtime.cuda_device import gpu_report

    return {"driver": driver, **gpu_report(0)}


def backend_facts(gpu: dict[str, Any]) -> dict[str, Any]:
    """Every backend of the table: installed, version, whether it runs here and why not,
    and what its Runner reads of the library (`Runner.facts`)."""
    from edgetl.runtime.backend_table import BACKENDS

    out = {}
    for backend, info in BACKENDS.items():
        version = next((v for v in map(_version, info.versions or (info.package,)) if v), None)
        problem = backend_problem(backend)
        entry = {"installed": installed(backend), "version": version, "runs": problem is None, "problem": problem}
        if entry["installed"]:
            try:
                runner = getattr(importlib.import_module(info.module), info.runner) if info.module else None
                entry.update(runner.facts(gpu) if runner else {})
            except Exception as exc:
                entry.update(runs=False, problem=f"installed but cannot be loaded: {exc}")
        out[backend] = entry
    if out["tensorrt"]["runs"] and gpu.get("problem") and not gpu.get("found"):
        out["tensorrt"].update(runs=False, problem=gpu["problem"])
    return out


def doctor() -> dict[str, Any]:
    gpu = gpu_facts()
    return {"edgetl": __version__, "python": platform.python_version(), "cpu": cpu_facts(),
            "backends": backend_facts(gpu), "gpu": gpu}


__all__ = ["doctor"]
