"""edgetl import: a model edgetl did not train gets a card, then every command takes it."""
from __future__ import annotations

import click

from edgetl.cli import options
from edgetl.importer.settings import ImportSettings


@click.command("import")
@click.argument("model", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The folder to write: model.onnx (and model.xml) with the card, and edgetl.json.")
@options.from_settings(ImportSettings)
@options.overwrite("an existing edgetl folder at --out")
def import_cmd(model, out, overwrite, **settings):
    """Import MODEL (.onnx, OpenVINO .xml, TorchScript .pt, torch.export .pt2) trained
    elsewhere: its labels and preprocessing go into a card, checked against the graph;
    then evaluate, quantize, bench, package, verify and predict take OUT as a run."""
    from edgetl.importer.job import import_model

    result = import_model(model, out, ImportSettings(**settings), overwrite=overwrite)
    card, pre = result.card, result.card.preprocessing
    takes = (f"{pre['layout']} {pre['channels']}, {pre['crop']} to {pre['size'][0]}x{pre['size'][1]}"
             if card.modality == "image" else f"{pre['sample_rate']} Hz mono, {pre['window']} samples")
    click.echo(f"imported {model}: {len(card.labels)} labels, input {card.input['name']} "
               f"{'x'.join('N' if d is None else str(d) for d in card.input['shape'])} {card.input['dtype']} {takes}")
    for check in result.parity:
        click.echo(f"  {check['artifact']} on {check['backend']}: max-abs {check['max_abs']:.2e} against the source, "
                   f"{'detections' if card.task == 'detection' else 'top-1'} agreement {check['agreement']:.1%} on "
                   f"{check['n']} samples")
    for note in result.assumed:
        click.echo(f"  assumed: {note}")
    if result.accuracy is not None:
        from edgetl.task import task_of

        click.echo(f"  val {task_of(card).metric_title} {result.accuracy:.4f}")
    click.echo(f"wrote {result.out}: " + ", ".join(m.name for m in result.models))


COMMANDS = [import_cmd]
