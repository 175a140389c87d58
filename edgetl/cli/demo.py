"""edgetl demo: the default recipe on built-in data, offline, start to finish."""
from __future__ import annotations

from pathlib import Path

import click

DEMO_BACKBONE = "efficientnet_lite0"
DEMO_MAX_DROP = 0.01


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=int, default=6, show_default=True)
@click.option("--input-size", type=int, default=64, show_default=True)
def demo_cmd(out, epochs, input_size):
    """Digits -> fine-tune the packaged EfficientNet-Lite0 -> evaluate -> export (ONNX, OpenVINO) behind the
    parity gate -> INT8 for OpenVINO, ONNX Runtime and TensorRT within a 1-point drop -> every artifact
    benchmarked on every backend (table, JSON, accuracy-vs-latency plot)."""
    from rich.markup import escape

    from edgetl import progress
    from edgetl.bench.harness import bench
    from edgetl.cli.evaluate import print_report
    from edgetl.cli.quantize import print_int8_table
    from edgetl.data.digits import make_digits
    from edgetl.evaluation import evaluate
    from edgetl.export import export_run
    from edgetl.export.parity import print_table
    from edgetl.finetune import finetune
    from edgetl.quantize import quantize

    out = Path(out)
    data, run = out / "digits", out / "run"
    progress.info(f"[bold]1/6[/] writing scikit-learn's handwritten digits to {escape(str(data))}", markup=True)
    make_digits(data, size=input_size, overwrite=True)
    progress.info(f"[bold]2/6[/] fine-tuning {DEMO_BACKBONE} (ImageNet weights shipped in a pip package)", markup=True)
    result = finetune(data, DEMO_BACKBONE, run, overwrite=True, strategy="full", epochs=epochs,
                      input_size=input_size, hflip=False)
    progress.info("[bold]3/6[/] evaluating the best checkpoint on the test split", markup=True)
    report = evaluate(run, data, split="test")
    print_report(report)
    progress.info("[bold]4/6[/] exporting to ONNX and OpenVINO IR, checked against PyTorch on real samples", markup=True)
    exported = export_run(run, run / "model.onnx", openvino=True)
    print_table(exported.parity)
    progress.info(f"[bold]5/6[/] INT8 for every target, calibrated on the training split, at most {DEMO_MAX_DROP:.0%} "
                  "accuracy lost on the validation split", markup=True)
    int8 = {target: quantize(exported.onnx, target, max_drop=DEMO_MAX_DROP) for target in ("openvino", "onnxruntime",
                                                                                          "tensorrt")}
    print_int8_table(list(int8.values()))
    progress.info("[bold]6/6[/] benchmarking every artifact of the run on its backend (test split, batch 1)", markup=True)
    benchmark = bench([run], split="test", batches=(1,), iters=100)
    benchmark.print_table()
    plot = benchmark.plot(out / "bench.png")
    benchmark.write_json(out / "bench.json")
    click.echo(f"\nrun: {result.out} (model.pt, edgetl.json, history.json, curves.png, model.onnx, model.xml/.bin, "
               f"{', '.join(r.out.name for r in int8.values())})")
    click.echo(f"benchmark: {out / 'bench.json'}, accuracy vs latency plot: {plot}")
    click.echo(f"val accuracy {result.val_accuracy:.4f}, test accuracy {report.accuracy:.4f}")
    click.echo(f"on an NVIDIA device: edgetl build-engine {int8['tensorrt'].out} --precision int8")


COMMANDS = [demo_cmd]
