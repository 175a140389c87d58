"""Progress bars and messages for long work; `quiet()` hides them (the CLI's --quiet)."""
from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_state = {"quiet": False}
console = Console(stderr=True, highlight=False, soft_wrap=True)


# Wider than any table: piped output (grep, logs, files) is never cut or wrapped.
PIPED_WIDTH = 10_000


def results_console(stderr: bool = False) -> Console:
    """A console for results: the terminal's width, or unlimited when piped."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, width=None if stream.isatty() else PIPED_WIDTH)


def print_table(table, console: Console | None = None, stderr: bool = False) -> None:
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
    return _state["quiet"]


def info(message: str, markup: bool = False) -> None:
    """A progress line. Plain text unless `markup`: messages carry paths and names, and
    rich would take "[tensorrt]" in them for a style and drop it."""
    if not _state["quiet"]:
        console.print(message, markup=markup)


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
