"""edgetl bench: accuracy and latency of artifacts on every backend, in one table."""
from __future__ import annotations

import logging

import click

from edgetl.bench.settings import BenchSettings
from edgetl.cli import options
from edgetl.core.errors import ConfigError
from edgetl.core.outputs import check_output


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@options.from_settings(BenchSettings, skip={"threads"}, data={"type": click.Path()},
                       backends={"type": click.STRING, "default": "auto", "metavar": "auto|NAME,...",
                                 "callback": options.comma_list(auto="auto")},
                       batches={"type": click.STRING, "default": "1", "metavar": "N,...",
                                "callback": options.comma_list(int)},
                       precision_hints={"type": click.STRING, "default": "f32", "metavar": "HINT,...",
                                        "callback": options.comma_list()})
@options.threads("every backend")
@options.renamed("--batch", "--batch-sizes", "batches", lambda text: options.comma_list(int)(None, None, text))
@click.option("--json", "as_json", is_flag=False, flag_value="-", default=None, metavar="",
              help="Print the report as JSON on stdout.")
@click.option("--json-file", "json_file", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="Write the rows as CSV.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Write an accuracy-vs-latency PNG.")
@click.option("--baseline", type=click.Path(dir_okay=False), default=None, metavar="OLD.json",
              help="Compare every row with the same row of an earlier report; exit 1 on a regression.")
@click.option("--max-slowdown", type=float, default=1.10, show_default=True,
              help="With --baseline: the p50 latency may grow at most this many times.")
@click.option("--reference", default=None, metavar="ARTIFACT",
              help="With --baseline: compare latency as a ratio to this artifact (file name) measured in both runs, "
                   "which cancels what a busy machine adds to every row.")
def bench_cmd(artifacts, as_json, json_file, csv_out, plot_out, baseline, max_slowdown, reference, **values):
    """Benchmark ARTIFACT... (run directories, .onnx, .xml, .engine): accuracy, drop and agreement
    against the run's FP32 reference, latency percentiles, throughput, size, memory, load time.

    A run directory stands for its PyTorch checkpoint and every model exported into it. A cell
    that fails (backend missing, engine for another GPU) is reported in its row."""
    import json

    from edgetl.bench.baseline import check_bounds, compare, read_report
    from edgetl.bench.harness import bench
    from edgetl.core.progress import results_console

    if as_json not in (None, "-"):  # the old spelling, --json PATH
        logging.getLogger("edgetl").warning("--json PATH is now --json-file PATH; --json alone prints the JSON")
        json_file, as_json = json_file or as_json, None
    settings = BenchSettings(**values).check()
    max_drop, data = settings.max_drop, settings.data
    baseline_drop = max_drop if max_drop is not None else 0.01
    check_bounds(max_slowdown, baseline_drop)  # before the work: a bad bound is one clear error, baseline or not
    old = read_report(baseline) if baseline else None
    json_out = "-" if as_json else json_file
    for report_file in (json_out, csv_out, plot_out):  # an earlier report is refreshed; anything else is kept
        if report_file and report_file != "-":
            check_output(report_file, "report", overwrite=True, inputs={"data set": data})
    report = bench(artifacts, settings)
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
    if old is not None:
        comparison = compare(report.to_dict(), old, max_slowdown, baseline_drop, reference)
        print_comparison(comparison, baseline)
        if not comparison.ok:
            click.echo(f"regressed against {baseline}: " + "; ".join(r.key for r in comparison.regressions), err=True)
            click.get_current_context().exit(1)
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


def print_comparison(comparison, baseline) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgetl.core.progress import print_table, results_console

    ref = f", latency as a ratio to {comparison.reference}" if comparison.reference else ""
    table = Table(title=f"against {baseline} (at most {comparison.max_slowdown:.2f}x slower, "
                        f"{100 * comparison.max_drop:.2f} pt less accurate{ref})", title_justify="left")
    for col in ("row", "p50 then", "p50 now", "x", "accuracy then", "now", "verdict"):
        table.add_column(col, justify="left" if col in ("row", "verdict") else "right")

    def num(v, pattern):
        return "-" if v is None else pattern.format(v)

    for r in comparison.rows:
        verdict = r.status if r.status != "not compared" else f"not compared: {r.why}"
        if r.status in ("slower", "less accurate"):
            verdict = f"[red]{verdict}[/]"
        table.add_row(escape(r.key), num(r.old_p50_ms, "{:.3f}"), num(r.new_p50_ms, "{:.3f}"), num(r.slowdown, "{:.2f}"),
                      num(r.old_accuracy, "{:.4f}"), num(r.new_accuracy, "{:.4f}"), verdict)
    print_table(table, results_console(stderr=True))


COMMANDS = [bench_cmd]
