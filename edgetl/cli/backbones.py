"""edgetl backbones: the registry, with parameters, feature size, input size, offline weights."""
from __future__ import annotations

import contextlib
import dataclasses
import json

import click


def _millions(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f}M"


@click.command("backbones")
@click.option("--modality", type=click.Choice(["image", "audio"]), default=None, help="Only this modality.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def backbones_cmd(modality, as_json):
    """List the registered backbones (timm:NAME accepts any timm model)."""
    from rich.table import Table

    from edgetl.backbones import list_backbones
    from edgetl.core import progress

    busy = progress.console.status("reading the registry (once; later listings come from a cache)", spinner="dots")
    with busy if not progress.is_quiet() and progress.console.is_terminal else contextlib.nullcontext():
        infos = list_backbones(modality)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        return
    table = Table(title="edgetl backbones", title_justify="left")
    for col in ("name", "modality", "family", "params", "features", "input", "offline weights"):
        table.add_column(col, justify="right" if col in ("params", "features", "input") else "left")
    for i in infos:
        table.add_row(i.name, i.modality, i.family, _millions(i.params), str(i.feature_dim or "?"),
                      str(i.input_size or "?"), "yes" if i.offline_weights else "no")
    progress.print_table(table)
    click.echo("Any timm model works as timm:NAME; --weights none or PATH works for every entry.")


COMMANDS = [backbones_cmd]
