"""edgetl demo: the default recipe on built-in data, offline, start to finish."""
from __future__ import annotations

from pathlib import Path

import click

DEMO_BACKBONE = "efficientnet_lite0"


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=int, default=6, show_default=True)
@click.option("--input-size", type=int, default=64, show_default=True)
def demo_cmd(out, epochs, input_size):
    """Digits -> fine-tune the packaged EfficientNet-Lite0 -> evaluate -> export (ONNX, OpenVINO) behind the parity gate."""
    from edgetl import progress
    from edgetl.cli.evaluate import print_report
    from edgetl.data.digits import make_digits
    from edgetl.evaluation import evaluate
    from edgetl.export import export_run
    from edgetl.export.parity import print_table
    from edgetl.finetune import finetune

    out = Path(out)
    data, run = out / "digits", out / "run"
    progress.info(f"[bold]1/4[/] writing scikit-learn's handwritten digits to {data}")
    make_digits(data, size=input_size, overwrite=True)
    progress.info(f"[bold]2/4[/] fine-tuning {DEMO_BACKBONE} (ImageNet weights shipped in a pip package)")
    result = finetune(data, DEMO_BACKBONE, run, overwrite=True, strategy="full", epochs=epochs,
                      input_size=input_size, hflip=False)
    progress.info("[bold]3/4[/] evaluating the best checkpoint on the test split")
    report = evaluate(run, data, split="test")
    print_report(report)
    progress.info("[bold]4/4[/] exporting to ONNX and OpenVINO IR, checked against PyTorch on real samples")
    exported = export_run(run, run / "model.onnx", openvino=True)
    print_table(exported.parity)
    click.echo(f"\nrun: {result.out} (model.pt, edgetl.json, history.json, curves.png, model.onnx, model.xml/.bin)")
    click.echo(f"val accuracy {result.val_accuracy:.4f}, test accuracy {report.accuracy:.4f}")


COMMANDS = [demo_cmd]
