"""Latency of one Runner on one prepared batch: warm-up excluded, perf_counter_ns around
each call, no outlier clipping (the tail is the point)."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.runtime.measured import time_function  # the one timing loop (the runtime times targets too)

if TYPE_CHECKING:
    from edgetl.runtime.runner import Runner


@dataclasses.dataclass
class LatencyStats:
    batch: int
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    throughput: float  # items per second at this batch

    @classmethod
    def from_ns(cls, timings_ns: Sequence[int], batch: int) -> LatencyStats:
        ms = np.asarray(timings_ns, np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])  # linear interpolation between order statistics
        return cls(batch, len(ms), float(p50), float(p90), float(p99), float(ms.mean()), float(ms.std()),
                   float(batch * 1e3 / ms.mean()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def time_calls(runner: Runner, x: np.ndarray, warmup: int = 10, iters: int = 100, min_time_s: float = 0.0) -> list[int]:
    """Nanoseconds of each `runner.infer(x)` call (`time_function`)."""
    x = runner.checked_input(x)  # in the model's own dtype (float32, or uint8 pixels), checked once, not timed
    return time_function(lambda: runner.infer(x), warmup, iters, min_time_s)


def measure(runner: Runner, x: np.ndarray, warmup: int = 10, iters: int = 100, min_time_s: float = 0.0) -> LatencyStats:
    return LatencyStats.from_ns(time_calls(runner, x, warmup, iters, min_time_s), len(x))
