"""edgetl cache: what the cache folder holds, and clearing it."""
from __future__ import annotations

import datetime
import json
import time

import click

from edgetl.core.disk_cache import KINDS, size_text


def _when(seconds: float | None) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M") if seconds else "-"


@click.group("cache", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout, for scripts.")
@click.pass_context
def cache_cmd(ctx, as_json):
    """Show what the cache folder holds (EDGETL_CACHE_DIR, else ~/.cache/edgetl): each kind
    of entry with its size and last use, and the bound the sample store is kept under
    (EDGETL_CACHE_MAX_GB). Everything in it can be made again."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from edgetl.core import disk_cache, progress
    from edgetl.core.paths import cache_dir

    summary = disk_cache.usage()
    limit, free = disk_cache.max_bytes(), disk_cache.free_bytes(cache_dir())
    if as_json:
        click.echo(json.dumps({"folder": str(cache_dir()), "samples_max_bytes": limit, "disk_free_bytes": free,
                               "kinds": summary}, indent=2))
        return
    table = Table(title=f"edgetl cache: {cache_dir()}", title_justify="left")
    for col, justify in (("kind", "left"), ("entries", "right"), ("size", "right"), ("last used", "left"),
                         ("what", "left")):
        table.add_column(col, justify=justify)
    for kind, held in summary.items():
        table.add_row(kind, str(held["entries"]), size_text(held["bytes"]), _when(held["last_used"]),
                      disk_cache.KINDS[kind])
    progress.print_table(table)
    click.echo(f"The sample store is kept under {size_text(limit)} (EDGETL_CACHE_MAX_GB) and leaves "
               f"{size_text(disk_cache.RESERVE_BYTES)} of the disk free ({size_text(free)} free now), the entries used "
               "longest ago removed first; `edgetl cache clear` removes entries now.")


@cache_cmd.command("clear")
@click.option("--kind", "kinds", type=click.Choice([*KINDS, "all"]), multiple=True, default=("all",), show_default=True,
              help="What to remove (repeat for several).")
@click.option("--older-than", type=click.FloatRange(min=0), default=None, metavar="DAYS",
              help="Only entries unused for this many days.")
def clear_cmd(kinds, older_than):
    """Remove cache entries. Samples are decoded again, engines built again and an
    interrupted run's checkpoint is gone (its `finetune --resume` starts over)."""
    from edgetl.core import disk_cache

    started = time.time()
    removed = disk_cache.clear(kinds, older_than=older_than)
    freed = sum(e.bytes for e in removed)
    by_kind = ", ".join(f"{kind} {sum(e.kind == kind for e in removed)}" for kind in disk_cache.chosen_kinds(kinds))
    click.echo(f"removed {len(removed)} entries ({by_kind}), {size_text(freed)} freed in {time.time() - started:.1f} s")

COMMANDS = [cache_cmd]
