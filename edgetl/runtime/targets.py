"""Which of a bundle's models this machine runs, and why not: one answer for `predict`,
`verify`, `bench` and `doctor`, from the machine's facts (runtime/machine.py).

A TensorRT target runs an engine built for this GPU and TensorRT version: the bundle's
own when it was built for them, else one from the engine cache (keyed by the QDQ
model's content, the TensorRT version, the compute capability and the GPU's name),
which `edgetl verify` fills on a device with TensorRT. An engine for another GPU or
TensorRT version is refused with that reason, never loaded. Without a usable engine
the target's QDQ model runs in ONNX Runtime.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from edgetl.core import progress
from edgetl.core.errors import ArtifactError, BackendUnavailable, ConfigError
from edgetl.core.paths import cache_dir
from edgetl.runtime.artifacts import read_engine_card
from edgetl.runtime.backend_table import BACKENDS, by_preference
from edgetl.runtime.bundle import Bundle, sha256
from edgetl.runtime.machine import CPU_TARGETS, backend_problem, exact_here
from edgetl.runtime.measured import fastest
from edgetl.runtime.tensorrt_runner import check_compatible


@functools.cache
def _gpu(device: int) -> tuple[tuple[str, Any], ...]:
    from edgetl.runtime.cuda_device import device_facts

    return tuple(device_facts(device).items())


def tensorrt_here(device: int = 0) -> dict[str, Any]:
    """The TensorRT version and GPU an engine must have been built for to run here (the
    GPU read once per process: choosing, opening and verifying a target all ask)."""
    import tensorrt as trt

    return {"version": trt.__version__, **dict(_gpu(device))}


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256(Path(path))


def engine_cache_path(model: Path, here: dict[str, Any]) -> Path:
    gpu = re.sub(r"[^a-z0-9]+", "-", here["gpu"].lower()).strip("-") or "gpu"
    name = f"trt{here['version']}-cc{here['compute_capability']}-{gpu}.engine"
    stat = model.stat()  # hashed once per file version, however often a command asks
    return cache_dir() / "engines" / _digest(str(model), stat.st_size, stat.st_mtime_ns)[:16] / name


def usable_engine(bundle: Bundle, here: dict[str, Any]) -> tuple[Path | None, list[str]]:
    """The bundle's engine or a cached one built for `here`, and why the others were refused."""
    entry = bundle.targets["tensorrt"]
    candidates = [bundle.root / entry.engine] if entry.engine else []
    candidates.append(engine_cache_path(bundle.root / entry.model, here))
    refusals: list[str] = []
    for engine in candidates:
        if not engine.is_file():
            continue
        try:
            check_compatible(read_engine_card(engine).source.get("tensorrt", {}), here, engine)
            return engine, refusals
        except ArtifactError as exc:
            refusals.append(exc.message)
    return None, refusals


def target_problem(bundle: Bundle, target: str) -> str | None:
    """Why this machine cannot run the target's model as packaged, or None."""
    problem = backend_problem(target)
    if problem or target != "tensorrt":
        return problem
    engine, refusals = usable_engine(bundle, tensorrt_here())
    if engine:
        return None
    return "; ".join([*refusals, f"no engine built for this GPU yet (edgetl verify {bundle.path} builds one)"])


def cpu_warning(card_source: dict[str, Any]) -> str | None:
    """Said when an INT8 CPU model was made for a kind of CPU this one is not."""
    kind = (card_source.get("quantization") or {}).get("cpu") or {}
    target = CPU_TARGETS.get(str(kind.get("name")))
    if target and not exact_here(target):
        return (f"this INT8 model was made for {target.name} CPUs; this CPU has no VNNI, so its 8-bit weights "
                "saturate and answers differ from what was measured (quantize with --cpu portable)")
    return None


def model_for(bundle: Bundle, target: str) -> tuple[Path, str]:
    """(model file, backend that loads it) for a target: a TensorRT target's usable engine,
    else its QDQ model on ONNX Runtime."""
    entry = bundle.targets[target]
    if target == "tensorrt" and backend_problem("tensorrt") is None:
        engine, _ = usable_engine(bundle, tensorrt_here())
        if engine:
            return engine, "tensorrt"
    return bundle.root / entry.model, BACKENDS[target].target_backend


def choose(bundle: Bundle, backend: str = "auto") -> str:
    """The target to run (see `pick`)."""
    return pick(bundle, backend)[0]


def pick(bundle: Bundle, backend: str = "auto") -> tuple[str, str]:
    """The target to run and why: the one asked for (which the bundle must have), or among
    those this machine can run the fastest measured here (runtime/measured.py), else the
    first by the backend table's preference; the targets passed over are said with their
    reason."""
    if backend != "auto":
        if backend not in bundle.targets:
            raise ConfigError(f"the bundle {bundle.path} has no {backend} model (it has: {', '.join(bundle.targets)})",
                              hint=f"pass --backend {' or '.join(bundle.targets)}, or package the run with "
                                   f"--targets {backend}")
        return backend, "asked for"
    problems = {t: target_problem(bundle, t) for t in by_preference(bundle.targets)}
    runnable = [t for t, why in problems.items() if why is None]
    if runnable:
        for target_skipped, why in problems.items():
            if why is not None:
                progress.info(f"not {target_skipped}: {why}")
        picked = fastest(bundle, runnable)
        if picked:
            return picked
        return runnable[0], ("the only one this machine runs" if len(runnable) < 2 else
                             "first by preference; `edgetl verify` measures which is fastest here")
    skipped = list(problems.items())
    hint = "pip install edgetl (ONNX Runtime) or 'edgetl[openvino]'; `edgetl doctor` says more"
    if "tensorrt" in bundle.targets and backend_problem("onnxruntime") is None:
        hint = ("pass --backend tensorrt to run its QDQ model in ONNX Runtime here (what TensorRT's INT8 computes), "
                "or package the run with --targets onnxruntime")
    raise BackendUnavailable("this machine can run none of the bundle's models: "
                             + "; ".join(f"{t}: {why}" for t, why in skipped), hint=hint)


__all__ = ["choose", "pick", "cpu_warning", "engine_cache_path", "model_for", "target_problem", "tensorrt_here",
           "usable_engine"]
