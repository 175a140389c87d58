"""edgetl bench: accuracy and latency of artifacts on every backend, in one table."""
from __future__ import annotations

import click

from edgetl.cli import options
from edgetl.errors import ConfigError
from edgetl.outputs import check_output


def _int_list(value: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, got {value!r}", hint=f"{option} 1,8") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{option} needs positive integers, got {value!r}", hint=f"{option} 1,8")
    return values


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--data", type=click.Path(), help="Labelled data set (default: each run's own data set).")
@click.option("--split", default="val", show_default=True, help="train | val | test")
@click.option("--backend", "backend", default="auto", show_default=True,
              help="Comma-separated backends (torch,onnxruntime,openvino,tensorrt); auto: each artifact's own.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, gpu (OpenVINO) ...")
@click.option("--batch", "batch", default="1", show_default=True, help="Comma-separated batch sizes, e.g. 1,8.")
@options.threads("every backend")
@click.option("--iters", type=int, default=100, show_default=True, help="Timed calls per cell (at least).")
@click.option("--min-time", type=float, default=0.0, show_default=True, help="Seconds per cell (at least).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed calls before timing.")
@click.option("--precision-hint", "precision_hints", default="f32", show_default=True,
              help="openvino: also measure in these precisions (comma-separated, e.g. bf16,f16), each as its own "
                   "row judged against the FP32 reference; f32 is always measured.")
@click.option("--rounds", type=int, default=1, show_default=True,
              help="Time every cell this many times, all cells in turn, and pool the timings (noisy machines).")
@click.option("--max-drop", type=float, help="Exit 1 when an artifact loses more accuracy than this (0.01 = 1 point) "
                                             "against its run's FP32 reference.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the report as JSON ('-': stdout).")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="Write the rows as CSV.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Write an accuracy-vs-latency PNG.")
def bench_cmd(artifacts, data, split, backend, device, batch, threads, iters, min_time, warmup, precision_hints,
              rounds, max_drop, json_out, csv_out, plot_out):
    """Benchmark ARTIFACT... (run directories, .onnx, .xml, .engine): accuracy, drop and agreement
    against the run's FP32 reference, latency percentiles, throughput, size, memory, load time.

    A run directory stands for its PyTorch checkpoint and every model exported into it. A cell
    that fails (backend missing, engine for another GPU) is reported in its row."""
    import json

    from edgetl.bench.harness import bench
    from edgetl.progress import results_console

    if max_drop is not None and not 0 <= max_drop < 1:
        raise ConfigError(f"--max-drop is a fraction between 0 and 1, got {max_drop}", hint="--max-drop 0.01 = 1 point")
    for report_file in (json_out, csv_out, plot_out):  # an earlier report is refreshed; anything else is kept
        if report_file and report_file != "-":
            check_output(report_file, "report", overwrite=True, inputs={"data set": data})
    backends = None if backend == "auto" else [b.strip() for b in backend.split(",") if b.strip()]
    report = bench(artifacts, data=data, split=split, backends=backends, batches=_int_list(batch, "--batch"),
                   threads=threads, iters=iters, min_time=min_time, warmup=warmup, device=device, rounds=rounds,
                   precision_hints=[h.strip() for h in precision_hints.split(",") if h.strip()])
    to_stdout = json_out == "-"
    report.print_table(results_console(stderr=to_stdout))
    if len(report.failed) == len(report.rows):  # nothing measured: no report files
        raise ConfigError(f"every benchmark cell failed; first: {report.rows[0].error}",
                          hint="fix the first failure above; a cell that works is reported with the others")
    if to_stdout:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif json_out:
        click.echo(f"json: {report.write_json(json_out)}", err=True)
    if csv_out:
        click.echo(f"csv: {report.write_csv(csv_out)}", err=True)
    if plot_out:
        click.echo(f"plot: {report.plot(plot_out)}", err=True)
    if max_drop is not None:
        offenders = report.offenders(max_drop)
        unchecked = {r.name for r in report.rows if r.ok and r.drop is None}
        if unchecked:
            click.echo(f"warning: no FP32 reference of the same run for {', '.join(sorted(unchecked))}; "
                       "--max-drop cannot judge them (bench the run directory or its FP32 model too)", err=True)
        if offenders:
            names = "; ".join(dict.fromkeys(f"{r.name} on {r.backend}{r.precision_suffix}: {100 * r.drop:.2f} pt"
                                            for r in offenders))
            click.echo(f"accuracy drop above {100 * max_drop:.2f} pt: {names}", err=True)
            click.get_current_context().exit(1)


COMMANDS = [bench_cmd]
