"""edgetl evaluate: accuracy, per-class accuracy and confusion matrix of an artifact."""
from __future__ import annotations

import json

import click

from edgetl.runtime.base import PRECISION_HINTS


def print_report(report) -> None:
    from rich.table import Table

    from rich.markup import escape

    from edgetl.progress import print_table, results_console

    console = results_console()
    console.print(f"[bold]{escape(report.artifact)}[/] on {report.split} ({report.n} samples, backend {report.backend}, "
                  f"runs in {report.inference_precision}): accuracy [bold]{report.accuracy:.4f}[/]")
    per = Table(title="per-class accuracy", title_justify="left")
    per.add_column("class")
    per.add_column("accuracy", justify="right")
    per.add_column("n", justify="right")
    for i, label in enumerate(report.labels):
        acc = report.per_class[label]
        per.add_row(escape(label), "-" if acc is None else f"{acc:.3f}", str(sum(report.confusion[i])))
    print_table(per, console)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    cm.add_column("")
    for label in report.labels:
        cm.add_column(escape(label), justify="right")
    for i, label in enumerate(report.labels):
        cells = [(f"[bold]{v}[/]" if i == j else (str(v) if v else "[dim]·[/]")) for j, v in enumerate(report.confusion[i])]
        cm.add_row(escape(label), *cells)
    print_table(cm, console)


@click.command("evaluate")
@click.argument("artifact", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help="Data set folder (or a flat folder of classes).")
@click.option("--split", default="val", show_default=True, help="train | val | test")
@click.option("--backend", default="auto", show_default=True, help="auto picks the artifact's backend.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--precision-hint", type=click.Choice(PRECISION_HINTS), default="f32", show_default=True,
              help="openvino: compute the float operations in this precision (bf16/f16 only where the CPU has it).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (accuracy, n, backend, ...).")
def evaluate_cmd(artifact, data, split, backend, device, batch_size, precision_hint, as_json):
    """Evaluate ARTIFACT (a run directory, or an exported model) on a data split."""
    from edgetl.evaluation import evaluate

    report = evaluate(artifact, data, split=split, backend=backend, device=device, batch_size=batch_size,
                      precision_hint=precision_hint)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        print_report(report)


COMMANDS = [evaluate_cmd]
