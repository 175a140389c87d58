"""Progress bars and messages for long work; `quiet()` hides them (the CLI's --quiet)."""
from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_state = {"quiet": False}
console = Console(stderr=True, highlight=False, soft_wrap=True)


def results_console(stderr: bool = False) -> Console:
    """A console for result tables: the terminal's width, or wide enough in logs."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, width=None if stream.isatty() else 160)


def set_quiet(flag: bool) -> None:
    _state["quiet"] = flag


def is_quiet() -> bool:
    return _state["quiet"]


def info(message: str) -> None:
    if not _state["quiet"]:
        console.print(message)


class _Silent:
    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass

    def remove_task(self, *a, **k):
        pass


@contextlib.contextmanager
def progress_bar():
    """A rich Progress (transient, on stderr) or a silent stand-in when quiet."""
    if _state["quiet"] or not sys.stderr.isatty():
        # Non-interactive: no live bars (CI logs); callers print per-epoch lines instead.
        yield _Silent()
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console,
                  transient=True) as bar:
        yield bar
