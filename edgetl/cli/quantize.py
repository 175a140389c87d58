"""edgetl quantize / build-engine: INT8 for OpenVINO, ONNX Runtime and TensorRT."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edgetl.errors import ConfigError
from edgetl.quantize import CPU_TARGETS, DEFAULT_MAX_DROP
from edgetl.quantize.cpu import DEFAULT_CPU


def _max_drop(ctx, param, value: str) -> float | None:
    if value.strip().lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"--max-drop takes a fraction (0.01 = one point) or none, got {value!r}",
                          hint="e.g. --max-drop 0.01") from None


def print_int8_table(results) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgetl.progress import print_table

    unlabelled = results[0].reference == "fp32"
    title = (f"INT8 vs FP32 ({results[0].n} unlabelled target samples: accuracy is agreement with FP32's answers)"
             if unlabelled else f"INT8 vs FP32 ({results[0].n} validation samples)")
    table = Table(title=title, title_justify="left")
    for col in ("artifact", "target", "method", "FP32 acc", "INT8 acc", "drop (pt)", "top-1 agree", "layers in float",
                "time"):
        table.add_column(col, justify="left" if col in ("artifact", "target", "method") else "right")
    for r in results:
        table.add_row(escape(r.out.name), r.target, "QAT" if r.method == "quantization-aware" else "PTQ", f"{r.fp32_accuracy:.4f}",
                      f"{r.int8_accuracy:.4f}", f"{100 * r.drop:.2f}", f"{r.parity.agreement:.2%}",
                      str(len(r.float_layers)), f"{r.seconds:.0f}s")
    print_table(table, stderr=True)
    for r in results:
        if r.method == "quantization-aware":
            ptq = next(a for a in r.attempts if a.get("method") == "post-training")
            click.echo(f"{r.out.name}: quantization-aware fine-tuning was needed (post-training INT8 lost "
                       f"{100 * ptq['drop']:.2f} pt)", err=True)
        if r.float_layers:
            click.echo(f"{r.out.name}: kept in float: {', '.join(r.float_layers)}", err=True)


@click.command("quantize")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", type=click.Choice(["openvino", "onnxruntime", "tensorrt"]), required=True)
@click.option("--calib", type=click.Path(), default=None,
              help="Calibration data (images or clips): a data set folder (labels ignored) or a flat folder. Default: the run's train split.")
@click.option("--val", type=click.Path(), default=None, help="Labelled data for the --max-drop bound. Default: the run's val split; for a run adapted to other data, agreement with FP32 on unlabelled target samples held out from calibration.")
@click.option("--max-drop", default=str(DEFAULT_MAX_DROP), show_default=True, callback=_max_drop,
              metavar="FRACTION|none", help="Largest accuracy loss allowed, as a fraction (0.01 = one point); layers fall back to float to hold "
                   "it. 'none' writes the model whatever it loses.")
@click.option("--cpu", type=click.Choice(list(CPU_TARGETS)), default=DEFAULT_CPU, show_default=True,
              help="openvino/onnxruntime: the CPU kind the model will run on. portable: the same answers on every x86 "
                   "CPU (7-bit weights); vnni: only CPUs with VNNI/AMX (8-bit weights, wrong on AVX2-only CPUs); arm.")
@click.option("--samples", type=int, default=300, show_default=True, help="Calibration samples.")
@click.option("--calibration", "method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="Range estimation for the QDQ targets.")
@click.option("--preset", type=click.Choice(["performance", "mixed"]), default="performance", show_default=True,
              help="NNCF preset (openvino): mixed = asymmetric activations.")
@click.option("--bias-correction", is_flag=True, help="NNCF (openvino): full bias correction instead of the fast one.")
@click.option("--ignore", multiple=True, help="NNCF (openvino): node name kept in float (repeatable).")
@click.option("--qat", is_flag=True,
              help="openvino: when post-training INT8 cannot hold --max-drop, fine-tune the run with fake quantization.")
@click.option("--qat-epochs", type=int, default=3, show_default=True, help="Epochs of quantization-aware fine-tuning.")
@click.option("--qat-lr", type=float, default=None, help="QAT learning rate [default: a tenth of the run's, at most 1e-4].")
@click.option("--device", default="auto", show_default=True, help="Where QAT trains: auto, cpu, cuda.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Default: MODEL.int8.xml / MODEL.int8.onnx / MODEL.qdq.onnx")
@click.option("--overwrite", is_flag=True, help="Replace an existing edgetl model at --out (nothing else is replaced).")
def quantize_cmd(model, target, calib, val, max_drop, cpu, samples, method, preset, bias_correction, ignore, qat,
                 qat_epochs, qat_lr, device, out, overwrite):
    """INT8 MODEL.onnx for a target, calibrated on the run's own data, within --max-drop."""
    from edgetl.quantize import quantize
    from edgetl.quantize.openvino import NncfOptions
    from edgetl.quantize.qat import QatOptions

    options = NncfOptions(preset=preset, fast_bias_correction=not bias_correction, ignored=tuple(ignore))
    result = quantize(model, target, calib=calib, val=val, max_drop=max_drop, samples=samples, out=out,
                      method=method, nncf_options=options, qat=qat, cpu=cpu, overwrite=overwrite,
                      qat_options=QatOptions(epochs=qat_epochs, lr=qat_lr, device=device))
    print_int8_table([result])
    click.echo(f"wrote {result.out}")
    if target == "tensorrt":
        click.echo(f"next, on the device: edgetl build-engine {result.out} --precision int8")


@click.command("build-engine")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "best"]), default="best", show_default=True,
              help="int8/best on the QDQ model from `quantize --target tensorrt` (its Q/DQ layers in INT8); "
                   "fp16/fp32/best on the float model.")
@click.option("--batch", default=None,
              help="Optimization profile MIN:OPT:MAX (default 1:8:32); with --dla one static batch N (default 1).")
@click.option("--dla", type=int, default=None, help="DLA core (Jetson), with GPU fallback; static shapes, FP16/INT8.")
@click.option("--workspace", type=int, default=1024, show_default=True, help="Builder workspace in MB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None,
              help="Timing cache file, read and updated (default: beside the engine).")
@click.option("--device", default="cuda:0", show_default=True, help="The GPU to build for: cuda:N.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Default: MODEL.engine")
@click.option("--print-trtexec", is_flag=True, help="Only print the equivalent trtexec command.")
@click.option("--tensorrt-version", default=None,
              help="With --print-trtexec: the device's TensorRT (default: the installed one, else 10.3 as on JetPack 6).")
@click.option("--overwrite", is_flag=True, help="Replace an existing edgetl engine at --out.")
def build_engine_cmd(model, precision, batch, dla, workspace, timing_cache, device, out, print_trtexec,
                     tensorrt_version, overwrite):
    """Build a TensorRT engine from an ONNX model (needs TensorRT), with its card."""
    import importlib.metadata

    from edgetl.errors import ConfigError
    from edgetl.quantize.tensorrt_engine import (BatchProfile, EngineSpec, _frontend_layers, build_engine, check_spec,
                                                 plan_build, trtexec_command)

    if not (device.startswith("cuda:") and device[5:].isdigit()) and device != "cuda":
        raise ConfigError(f"--device {device!r} is not a GPU", hint="--device cuda:0")
    model = Path(model)
    out = Path(out) if out else model.with_suffix(".engine")
    spec = EngineSpec(model, out, precision, dla_core=dla, workspace_mb=workspace, device=int(device[5:] or 0),
                      timing_cache=Path(timing_cache) if timing_cache else out.with_name("timing.cache"))
    card, qdq = check_spec(spec)  # the card says whether the model has a static batch
    spec = dataclasses.replace(spec, batch=BatchProfile.parse(batch, card.input["shape"][0], dla=dla is not None))
    if not tensorrt_version:
        try:
            tensorrt_version = importlib.metadata.version("tensorrt")
        except importlib.metadata.PackageNotFoundError:
            tensorrt_version = None
    plan = plan_build(spec, card, qdq, tensorrt_version, _frontend_layers(model))
    command = trtexec_command(spec, plan)
    if print_trtexec:
        for note in plan.notes:
            click.echo(f"# {note}", err=True)
        click.echo(command)
        return
    info = build_engine(spec, overwrite=overwrite)
    click.echo(f"wrote {out} (TensorRT {info['version']}, {info['gpu']}, compute capability "
               f"{info['compute_capability']})")
    if "dla_eligible_layers" in info:
        click.echo(f"DLA core {info['dla_core']}: {info['dla_eligible_layers']} of {info['layers']} layers eligible for "
                   "the DLA (the builder decides the placement; trtexec --dumpLayerInfo shows it)")
    click.echo(f"same build with trtexec: {command}")


COMMANDS = [quantize_cmd, build_engine_cmd]
