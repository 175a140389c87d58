"""edgetl export: ONNX (and OpenVINO IR) from a run, behind the parity gate."""
from __future__ import annotations

import click

from edgetl.cli import options
from edgetl.export.settings import ExportSettings


@click.command("export")
@click.argument("run", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Default: RUN/model.onnx")
@options.from_settings(ExportSettings, data={"type": click.Path()})
@options.overwrite("existing edgetl models at --out")
def export_cmd(run, out, overwrite, **settings):
    """Export RUN to ONNX (dynamic batch by default) and check it against PyTorch."""
    from edgetl.export import export_run
    from edgetl.export.parity import print_table

    result = export_run(run, out, ExportSettings(**settings), overwrite=overwrite)
    print_table(result.parity)
    click.echo(f"wrote {result.onnx} ({result.info['exporter']} exporter, opset {result.info['opset']}"
               f"{', slimmed' if result.info.get('slimmed') else ''})")
    if result.openvino:
        click.echo(f"wrote {result.openvino}")


COMMANDS = [export_cmd]
