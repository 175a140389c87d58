"""Progress bars and messages for long work; `quiet()` hides them (the CLI's --quiet)."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

_state: dict[str, Any] = {"quiet": False, "prefix": ""}
console = Console(stderr=True, highlight=False, soft_wrap=True)


# Wider than any table: piped output (grep, logs, files) is never cut or wrapped.
PIPED_WIDTH = 10_000


def results_console(stderr: bool = False) -> Console:
    """A console for results: the terminal's width, or unlimited when piped."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, width=None if stream.isatty() else PIPED_WIDTH)


def print_table(table: Table, console: Console | None = None, stderr: bool = False) -> None:
    """Print a result table. In a terminal, long cells wrap instead of being cut with an
    ellipsis; piped, it is plain aligned text at full width, one row per line, which grep
    and awk read."""
    from rich import box

    console = console or results_console(stderr)
    if console.is_terminal:
        for column in table.columns:
            column.no_wrap, column.overflow = False, "fold"
    else:
        table.box, table.show_edge, table.pad_edge = box.SIMPLE, False, False
        for column in table.columns:
            column.no_wrap = True
        if table.title:  # a title would wrap to the table's width
            console.print(table.title)
            table.title = None
    console.print(table)


def set_quiet(flag: bool) -> None:
    _state["quiet"] = flag


def is_quiet() -> bool:
    return bool(_state["quiet"])


def set_prefix(prefix: str) -> None:
    """Work that shares the terminal with other processes (stages side by side): every
    line starts with `prefix` (the stage's name), and progress is plain lines, as in a log,
    since two live bars would draw over each other."""
    _state["prefix"] = prefix


def _live() -> bool:
    return sys.stderr.isatty() and not _state["prefix"]


def info(message: str, markup: bool = False) -> None:
    """A progress line. Plain text unless `markup`: messages carry paths and names, and
    rich would take "[tensorrt]" in them for a style and drop it."""
    if not _state["quiet"]:
        console.print(escape(_state["prefix"]) + message if markup else _state["prefix"] + message, markup=markup)


class LevelLines(logging.Handler):
    """edgetl's warnings as one line each on stderr: `warning: ...` (with the prefix)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{_state['prefix']}{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr, flush=True)


class _Silent:
    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        pass

    def advance(self, *a: Any, **k: Any) -> None:
        pass

    def remove_task(self, *a: Any, **k: Any) -> None:
        pass


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _Lines:
    """Progress for a log (stderr not a terminal): a plain line per task at least every
    `every` seconds, with the time spent and an estimate of what remains, and one when a
    task that took that long ends; short work stays quiet, and nothing live garbles a log."""

    def __init__(self, every: float):
        self.every = every
        self.tasks: dict[int, dict[str, Any]] = {}

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        task = len(self.tasks) + 1
        now = time.monotonic()
        self.tasks[task] = {"description": description, "total": total, "done": 0, "start": now, "said": now}
        return task

    def update(self, task: int, advance: float = 0, **fields: Any) -> None:
        if advance:
            self.advance(task, advance)

    def advance(self, task: int, amount: float = 1) -> None:
        t = self.tasks.get(task)
        if t is None:
            return
        t["done"] += amount
        now, total = time.monotonic(), t["total"]
        elapsed = now - t["start"]
        finished = bool(total) and t["done"] >= total
        if (finished and elapsed >= self.every) or (not finished and now - t["said"] >= self.every):
            t["said"] = now
            if finished:
                line = f"{t['description']}: {t['done']:g}/{total:g} in {_clock(elapsed)}"
            elif total:
                left = elapsed * (total - t["done"]) / max(t["done"], 1e-9)
                line = (f"{t['description']}: {t['done']:g}/{total:g} ({100 * t['done'] / total:.0f}%), "
                        f"{_clock(elapsed)} so far, about {_clock(left)} left")
            else:
                line = f"{t['description']}: {t['done']:g} so far, {_clock(elapsed)}"
            console.print(_state["prefix"] + line, markup=False)

    def remove_task(self, task: int) -> None:
        self.tasks.pop(task, None)


@contextlib.contextmanager
def library_progress() -> Iterator[None]:
    """Around a library that draws its own progress bars on stdout (NNCF's rich bars):
    they follow edgetl's rule. In a terminal they are drawn on stderr, where edgetl's are,
    so stdout keeps only results; in a log (stderr not a terminal) or when quiet they are
    not drawn: edgetl says what runs before and prints the result after."""
    if _state["quiet"] or not _live():
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def progress_bar() -> Iterator[Any]:
    """A rich Progress (transient, on stderr) in a terminal; plain lines in a log (every
    EDGETL_PROGRESS_SECONDS, 30 by default); nothing when quiet."""
    if _state["quiet"]:
        yield _Silent()
        return
    if not _live():
        yield _Lines(float(os.environ.get("EDGETL_PROGRESS_SECONDS", "30")))
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console,
                  transient=True) as bar:
        yield bar
