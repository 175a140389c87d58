"""edgetl quantize / build-engine: INT8 for OpenVINO, ONNX Runtime and TensorRT."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edgetl.cli import options
from edgetl.core.errors import ConfigError
from edgetl.deploy.settings import EngineSettings
from edgetl.quantize.settings import DEFAULT_MAX_DROP, NncfOptions, QatOptions, QuantizeSettings


def _max_drop(ctx, param, value) -> float | None:
    if value is None or isinstance(value, float):
        return value
    if value.strip().lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"--max-drop takes a fraction (0.01 = one point) or none, got {value!r}",
                          hint="e.g. --max-drop 0.01") from None


def _gpu_index(device: str) -> int:
    """The old --device cuda:N spelling as a GPU index."""
    if not (device.startswith("cuda:") and device[5:].isdigit()) and device != "cuda":
        raise ConfigError(f"--device {device!r} is not a GPU", hint="--gpu 0")
    return int(device[5:] or 0)


def _drop(r) -> str:
    """The drop in points, with its 95% interval where the metric moves by answers."""
    if r.drop_ci95 is None:
        return f"{100 * r.drop:.2f}"
    low, high = r.drop_ci95
    return f"{100 * r.drop:.2f} ({100 * low:+.2f}..{100 * high:+.2f})"


def print_int8_table(results) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgetl.core.progress import print_table

    unlabelled = results[0].reference == "fp32"
    title = (f"INT8 vs FP32 ({results[0].n} unlabelled target samples: accuracy is agreement with FP32's answers)"
             if unlabelled else f"INT8 vs FP32 ({results[0].n} validation samples; drop with its 95% interval)")
    from edgetl.export.parity import headings

    metric, agree = headings(results[0].parity.task)
    table = Table(title=title, title_justify="left")
    for col in ("artifact", "target", "method", f"FP32 {metric}", f"INT8 {metric}", "drop (pt)", agree,
                "layers in float", "time"):
        table.add_column(col, justify="left" if col in ("artifact", "target", "method") else "right")
    for r in results:
        table.add_row(escape(r.out.name), r.target, "QAT" if r.method == "quantization-aware" else "PTQ",
                      f"{r.fp32_accuracy:.4f}", f"{r.int8_accuracy:.4f}", _drop(r), f"{r.parity.agreement:.2%}",
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
@options.from_settings(QuantizeSettings, target={"required": True, "show_default": False},
                       calib={"type": click.Path()}, val={"type": click.Path()},
                       max_drop={"type": click.STRING, "default": str(DEFAULT_MAX_DROP), "callback": _max_drop,
                                 "metavar": "FRACTION|none"})
@options.from_settings(NncfOptions)
@options.from_settings(QatOptions)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Default: MODEL.int8.xml / MODEL.int8.onnx / MODEL.qdq.onnx")
@options.overwrite("an existing edgetl model at --out")
def quantize_cmd(model, out, overwrite, **values):
    """INT8 MODEL.onnx for a target, calibrated on the run's own data, within --max-drop."""
    from edgetl.quantize import quantize

    nncf, qat = options.pick(NncfOptions, values), options.pick(QatOptions, values)
    settings = options.pick(QuantizeSettings, values).replace(nncf_options=nncf, qat_options=qat)
    result = quantize(model, settings=settings, out=out, overwrite=overwrite)
    print_int8_table([result])
    click.echo(f"wrote {result.out}")
    if settings.target == "tensorrt":
        click.echo(f"next, on the device: edgetl build-engine {result.out} --precision int8")


@click.command("build-engine")
@click.argument("model", type=click.Path(dir_okay=False))
@options.from_settings(EngineSettings, batch_profile={"metavar": "MIN:OPT:MAX"},
                       timing_cache={"type": click.Path(dir_okay=False)})
@options.renamed("--batch", "--batch-profile", "batch_profile")
@options.renamed("--device", "--gpu", "gpu", _gpu_index)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Default: MODEL.engine")
@click.option("--print-trtexec", is_flag=True, help="Only print the equivalent trtexec command.")
@click.option("--tensorrt-version", default=None,
              help="With --print-trtexec: the device's TensorRT (default: the installed one, else 10.3 as on JetPack 6).")
@options.overwrite("an existing edgetl engine at --out")
def build_engine_cmd(model, out, print_trtexec, tensorrt_version, overwrite, **values):
    """Build a TensorRT engine from an ONNX model (needs TensorRT), with its card."""
    s = EngineSettings(**values).check()
    from edgetl.deploy.tensorrt_engine import (
        BatchProfile,
        EngineSpec,
        _frontend_layers,
        build_engine,
        check_spec,
        for_version,
        installed_tensorrt,
        plan_build,
        trtexec_command,
    )

    model = Path(model)
    out = Path(out) if out else model.with_suffix(".engine")
    spec = EngineSpec(model, out, s.precision, dla_core=s.dla, workspace_mb=s.workspace, device=s.gpu,
                      timing_cache=Path(s.timing_cache) if s.timing_cache else out.with_name("timing.cache"))
    card, qdq = check_spec(spec)  # the card says whether the model has a static batch
    spec = dataclasses.replace(spec, batch=BatchProfile.parse(s.batch_profile, card.input["shape"][0],
                                                              dla=s.dla is not None))
    if not tensorrt_version:
        tensorrt_version = installed_tensorrt()
    plan = plan_build(spec, card, qdq, tensorrt_version, _frontend_layers(model))
    command = trtexec_command(spec, plan)
    if print_trtexec:
        click.echo(f"# {for_version(plan)}", err=True)
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
    click.echo(f"same build with trtexec (TensorRT {plan.tensorrt}): {command}")


COMMANDS = [quantize_cmd, build_engine_cmd]
