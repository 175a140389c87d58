"""edgetl export: ONNX (and OpenVINO IR) from a run, behind the parity gate."""
from __future__ import annotations

import click


@click.command("export")
@click.argument("run", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Default: RUN/model.onnx")
@click.option("--opset", type=int, default=None, help="ONNX opset (default 18).")
@click.option("--static-batch", type=int, default=None, help="Fix the batch size (some edge compilers need it).")
@click.option("--openvino", is_flag=True, help="Also write OpenVINO IR (.xml/.bin) beside the ONNX file.")
@click.option("--fp16", is_flag=True, help="With --openvino: FP16 weights.")
@click.option("--atol", type=float, default=None, help="Allowed max-abs error relative to the logit range (1e-3).")
@click.option("--data", type=click.Path(), default=None, help="Validation data for the parity check (default: the run's).")
@click.option("--overwrite", is_flag=True, help="Replace existing edgetl models at --out (nothing else is replaced).")
def export_cmd(run, out, opset, static_batch, openvino, fp16, atol, data, overwrite):
    """Export RUN to ONNX (dynamic batch by default) and check it against PyTorch."""
    from edgetl.export import export_run
    from edgetl.export.parity import print_table

    result = export_run(run, out, opset=opset, static_batch=static_batch, openvino=openvino, fp16=fp16, atol=atol,
                        data=data, overwrite=overwrite)
    print_table(result.parity)
    click.echo(f"wrote {result.onnx} ({result.info['exporter']} exporter, opset {result.info['opset']}"
               f"{', slimmed' if result.info.get('slimmed') else ''})")
    if result.openvino:
        click.echo(f"wrote {result.openvino}")


COMMANDS = [export_cmd]
