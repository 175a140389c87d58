"""Independent stages (the INT8 targets) run at the same time, each in its own process,
when the cores and the free memory allow.

Each target computes with its own thread count (its `threads`, else half the usable
cores), so as many run at once as the usable cores hold whole, and no more than the
memory available holds at MEMORY_EACH apiece (a Lite0 quantization with accuracy control
peaked at 3.1 GB, benchmarks/cpu_efficiency.py). A process of its own because torch,
ONNX Runtime and OpenVINO each keep one thread count per process; spawned, not forked,
so no lock or thread pool of the parent is copied mid-use. A child's lines start with its
stage's name; its errors come back whole (type, message and hint).
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from edgetl.core import progress
from edgetl.core.errors import EdgeTLError
from edgetl.core.outputs import remove_outputs_on_sigterm
from edgetl.core.threads import resolve_threads, usable_cores

MEMORY_EACH = 4 << 30


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def slots(threads: list[int | None], memory: int | None = None) -> int:
    """How many of these stages run at once: whole cores each, MEMORY_EACH each."""
    each = max(resolve_threads(t) for t in threads)
    by_cores = usable_cores() // each
    memory = available_memory() if memory is None else memory
    by_memory = len(threads) if memory is None else memory // MEMORY_EACH
    return max(1, min(len(threads), by_cores, by_memory))


def _child_start(quiet: bool) -> None:
    remove_outputs_on_sigterm()  # stopped by the parent: unwinds, and leaves no half-written model
    progress.set_quiet(quiet)
    log = logging.getLogger("edgetl")
    log.addHandler(progress.LevelLines())
    log.propagate = False
    log.setLevel(logging.WARNING)


Work = Callable[[], tuple[list[Path], dict[str, Any]]]


@dataclasses.dataclass
class Outcome:
    """What a stage run in a child came back with: its outputs and figures, or the user
    error it stopped on; and its time either way."""

    outputs: list[Path]
    figures: dict[str, Any]
    seconds: float
    error: EdgeTLError | None = None


def _in_child(work: Work, prefix: str) -> Outcome:
    progress.set_prefix(prefix)
    started = time.perf_counter()
    try:
        outputs, figures = work()
    except EdgeTLError as exc:  # the parent records it as failed, with the time it took
        return Outcome([], {}, time.perf_counter() - started, exc)
    return Outcome(outputs, figures, time.perf_counter() - started)


class SideBySide:
    """A pool of `n` spawned processes; `submit(name, work)` runs a picklable `work()`
    there and its future gives an Outcome (any other exception is raised by the future)."""

    def __init__(self, n: int):
        self.pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_child_start, initargs=(progress.is_quiet(),))

    def submit(self, name: str, work: Work) -> Future[Outcome]:
        return self.pool.submit(_in_child, work, f"{name}: ")

    def __enter__(self) -> SideBySide:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None:  # interrupted or terminated here: the children stop too, instead of being waited for
            stop = getattr(self.pool, "terminate_workers", None)  # Python 3.14
            if stop is not None:
                stop()
            else:
                for child in list(getattr(self.pool, "_processes", {}).values()):
                    child.terminate()
        self.pool.shutdown(wait=kind is None, cancel_futures=True)


__all__ = ["MEMORY_EACH", "Outcome", "SideBySide", "available_memory", "slots"]
