"""How many CPU threads a computation uses when `--threads` is not given.

Never the libraries' default (every core): on a shared 2-core AMD EPYC, torch ran
EfficientNet-Lite0 at 224 px in 1,052 ms per image with 2 threads and in 160 ms with 1
(OpenMP workers spin while the other core serves someone else), and ONNX Runtime left
to its default ran a streaming detector 3.25x slower than with one thread. Half of the
cores this process may use, at least one, leaves room for the rest of the machine; on
an idle machine `--threads` with every core is faster, and every report records the
count used.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar

# The count a command asked for, while it runs: what `threads=None` means inside it
# (every runner a stage opens, the libraries' own sessions in quantization).
_current: ContextVar[int | None] = ContextVar("edgetl_threads", default=None)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    return max(1, usable_cores() // 2)


def resolve_threads(threads: int | None) -> int:
    """`threads` as given, else the running command's count, else the default."""
    return int(threads) if threads else (_current.get() or default_threads())


@contextlib.contextmanager
def using_threads(threads: int | None) -> Iterator[int]:
    """Within this block, `threads=None` means `threads` (resolved); yields the count."""
    n = resolve_threads(threads)
    token = _current.set(n)
    try:
        yield n
    finally:
        _current.reset(token)


HELP = "[default: half of the usable cores, at least 1]"
