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


def cpu_facts() -> dict:
    flags = cpu_flags()
    kinds = {}
    for name, target in CPU_TARGETS.items():
        kinds[name] = "exact" if exact_here(target) else \
            "wrong answers: 8-bit weights saturate without VNNI (use quantize --cpu portable)"
    return {"model": cpu_name(), "arch": platform.machine(), "kind": cpu_kind(),
            "isa": {name: any(f in flags for f in names) for name, names in ISA.items()},
            "int8_models": kinds, "usable_cores": usable_cores(), "default_threads": default_threads()}


def _onnxruntime() -> dict:
    ort = importlib.import_module("onnxruntime")
    return {"devices": list(ort.get_available_providers())}


def _openvino() -> dict:
    ov = importlib.import_module("openvino")
    core = ov.Core()
    out = {"devices": list(core.available_devices)}
    try:
        out["cpu_precisions"] = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        # What OpenVINO would run an FP32 model's float layers in by default; edgetl sets f32.
        out["cpu_default_precision"] = core.get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    except Exception as exc:
        out["cpu_precisions"] = f"unreadable: {exc}"
    return out


def _tensorrt(gpu: dict) -> dict:
    trt = importlib.import_module("tensorrt")
    out = {"version": trt.__version__, "dla_cores": None}
    if gpu.get("found"):
        try:
            out["dla_cores"] = int(trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores)
        except Exception as exc:
            out["dla_cores"] = f"unreadable: {exc}"
    return out


def gpu_facts() -> dict:
    driver = nvidia_driver()
    if driver is None and not gpu_names():
        return {"found": False, "problem": "no NVIDIA GPU or driver on this machine"}
    from edgetl.runtime.cuda_device import gpu_report

    return {"driver": driver, **gpu_report(0)}


def backend_facts(gpu: dict) -> dict:
    readers = {"onnxruntime": _onnxruntime, "openvino": _openvino, "tensorrt": lambda: _tensorrt(gpu),
               "torch": lambda: {}}
    packages = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "openvino": ("openvino",),
                "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"), "torch": ("torch",)}
    out = {}
    for backend, read in readers.items():
        version = next((v for v in map(_version, packages[backend]) if v), None)
        problem = backend_problem(backend)
        entry = {"installed": installed(backend), "version": version, "runs": problem is None, "problem": problem}
        if entry["installed"]:
            try:
                entry.update(read())
            except Exception as exc:
                entry.update(runs=False, problem=f"installed but cannot be loaded: {exc}")
        out[backend] = entry
    if out["tensorrt"]["runs"] and gpu.get("problem") and not gpu.get("found"):
        out["tensorrt"].update(runs=False, problem=gpu["problem"])
    return out


def doctor() -> dict:
    gpu = gpu_facts()
    return {"edgetl": __version__, "python": platform.python_version(), "cpu": cpu_facts(),
            "backends": backend_facts(gpu), "gpu": gpu}


__all__ = ["doctor"]
