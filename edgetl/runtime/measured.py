"""Latencies measured on this machine, so that `auto` picks the target that is fastest here.

`edgetl verify` times each target it runs on its own backend (batch 1, a reference file,
the median of 20 calls after 3 warm-up calls) and keeps the figures outside the bundle,
whose files are checksummed: in the cache folder, keyed by the bundle's manifest and this
machine's CPU and GPUs. A bundle opened with `auto` then runs the fastest measured target
among those this machine can run; without figures for all of them, the backend table's
preference order decides, and the message says which it was. (On one AVX2 EPYC, ONNX
Runtime INT8 measured faster than OpenVINO INT8 in six runs out of six, which the
preference order puts second.) Torch-free.
"""
from __future__ import annotations

import functools
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.atomic import write_atomic
from edgetl.core.paths import cache_dir
from edgetl.runtime.bundle import MANIFEST, Bundle, sha256
from edgetl.runtime.machine import cpu_name, gpu_names

FOLDER = "measured"


@functools.cache
def _machine() -> str:
    """This machine's CPU and GPUs (nvidia-smi asked once per process)."""
    return hashlib.sha256("|".join([cpu_name(), *gpu_names()]).encode()).hexdigest()[:8]


def _state(bundle: Bundle) -> Path:
    return cache_dir() / FOLDER / f"{sha256(bundle.root / MANIFEST)[:16]}-{_machine()}.json"


def measured(bundle: Bundle) -> dict[str, float]:
    """Each target's batch-1 p50 (ms) measured here; {} when none was (or the file is not
    one this version wrote: a cache entry is never trusted as it comes)."""
    try:
        data = json.loads(_state(bundle).read_text())
        return {t: float(v) for t, v in data["p50_ms"].items() if t in bundle.targets and float(v) > 0}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def record(bundle: Bundle, target: str, p50_ms: float) -> None:
    figures = {**measured(bundle), target: round(p50_ms, 4)}
    state = {"kind": "edgetl measured latencies", "cpu": cpu_name(), "gpus": gpu_names(), "p50_ms": figures,
             "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = _state(bundle)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(state, indent=1) + "\n")


def time_function(call: Callable[[], Any], warmup: int = 10, iters: int = 100, min_time_s: float = 0.0) -> list[int]:
    """Nanoseconds of each `call()`: `warmup` untimed calls, then at least `iters` calls
    and at least `min_time_s` seconds."""
    for _ in range(warmup):
        call()
    timings: list[int] = []
    started = time.perf_counter_ns()
    while len(timings) < iters or (time.perf_counter_ns() - started) / 1e9 < min_time_s:
        t0 = time.perf_counter_ns()
        call()
        timings.append(time.perf_counter_ns() - t0)
    return timings


def p50_ms(runner: Any, x: np.ndarray, warmup: int = 3, iters: int = 20) -> float:
    """The median of `iters` timed calls of `runner.infer(x)` after `warmup` untimed ones."""
    x = runner.checked_input(x)
    return statistics.median(time_function(lambda: runner.infer(x), warmup, iters)) / 1e6


def fastest(bundle: Bundle, runnable: list[str]) -> tuple[str, str] | None:
    """The fastest measured of `runnable` and how it compares, when every one of them was
    measured here; None otherwise (the preference order decides)."""
    figures = measured(bundle)
    if len(runnable) < 2 or not all(t in figures for t in runnable):
        return None
    best = min(runnable, key=lambda t: figures[t])
    others = ", ".join(f"{t} {figures[t]:.2f} ms" for t in runnable if t != best)
    return best, f"the fastest measured here: {figures[best]:.2f} ms against {others}"


__all__ = ["fastest", "measured", "p50_ms", "record", "time_function"]
