"""edgetl evaluate: accuracy, per-class accuracy and confusion matrix of an artifact."""
from __future__ import annotations

import json

import click

from edgetl.cli import options
from edgetl.evaluate.settings import EvaluateSettings, StreamEvalSettings


def print_report(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgetl.core.progress import print_table, results_console

    console = results_console()
    if report.task == "detection":
        console.print(f"[bold]{escape(report.artifact)}[/] on {report.split} ({report.n} images, backend "
                      f"{report.backend}, runs in {report.inference_precision}): mAP@0.5:0.95 [bold]"
                      f"{report.accuracy:.4f}[/], mAP@0.5 {report.map50:.4f}")
        per = Table(title="per-class AP (0.5:0.95)", title_justify="left")
        per.add_column("class")
        per.add_column("AP", justify="right")
        for label in report.labels:
            value = report.per_class.get(label)
            per.add_row(escape(label), "-" if value is None else f"{value:.3f}")
        print_table(per, console)
        return
    top_k = "".join(f", top-{k} {v:.4f}" for k, v in report.top_k.items())
    console.print(f"[bold]{escape(report.artifact)}[/] on {report.split} ({report.n} samples, backend {report.backend}, "
                  f"runs in {report.inference_precision}): accuracy [bold]{report.accuracy:.4f}[/]{top_k}")
    per = Table(title="per-class precision, recall and F1", title_justify="left")
    for col in ("class", "precision", "recall (accuracy)", "F1", "n"):
        per.add_column(col, justify="left" if col == "class" else "right")
    for label in report.labels:
        m = report.classes.get(label, {})
        cell = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        per.add_row(escape(label), cell(m.get("precision")), cell(m.get("recall")), cell(m.get("f1")),
                    str(m.get("support", "-")))
    print_table(per, console)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    cm.add_column("")
    for label in report.labels:
        cm.add_column(escape(label), justify="right")
    for i, label in enumerate(report.labels):
        cells = [(f"[bold]{v}[/]" if i == j else (str(v) if v else "[dim]·[/]")) for j, v in enumerate(report.confusion[i])]
        cm.add_row(escape(label), *cells)
    print_table(cm, console)


FALSE_ACCEPTS_SHOWN = 10


def _clock(seconds: float) -> str:
    return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{seconds % 60:05.2f}"


def print_stream_report(r) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgetl.core.progress import print_table, results_console

    console = results_console()
    delay = "-" if r.mean_delay is None else f"{r.mean_delay:.2f} s"
    fed = "live, one hop per call" if r.live else "read in blocks of hops"
    console.print(f"[bold]{escape(r.artifact)}[/] on {escape(r.recording)} ({r.hours * 60:.1f} min, backend {r.backend}, "
                  f"hop {r.settings['hop_ms']:g} ms, smoothing {r.settings['smoothing']}): "
                  f"{r.detected}/{r.keywords} keywords detected, false rejects [bold]{100 * r.frr:.1f}%[/], "
                  f"false accepts [bold]{r.fa_per_hour:.2f}/h[/] ({r.false_accepts}), mean delay {delay}, "
                  f"real-time factor {r.real_time_factor:.4f} ({fed}; {escape(r.shared)})")
    table = Table(title="per keyword", title_justify="left")
    for col in ("keyword", "threshold", "said", "detected", "false accepts"):
        table.add_column(col, justify="left" if col == "keyword" else "right")
    for label, k in r.per_keyword.items():
        table.add_row(escape(label), f"{k['threshold']:.6g}", str(k["said"]), str(k["detected"]), str(k["false_accepts"]))
    print_table(table, console)
    if r.false_accept_list:
        shown = sorted(r.false_accept_list, key=lambda d: -d["score"])[:FALSE_ACCEPTS_SHOWN]
        table = Table(title=f"false accepts ({len(shown)} of {len(r.false_accept_list)}, most confident first)",
                      title_justify="left")
        for col in ("time", "keyword", "score", "heard"):
            table.add_column(col, justify="left" if col in ("keyword", "heard") else "right")
        for d in shown:
            heard = "(the recording does not list its other speech)" if d["heard"] is None else d["heard"] or "(no speech)"
            table.add_row(_clock(d["time"]), escape(d["label"]), f"{d['score']:.3f}", escape(heard))
        print_table(table, console)
    if r.thresholds_written:
        console.print(f"thresholds written into the card of {escape(r.thresholds_written)}")
    if r.plot:
        console.print(f"DET curve: {escape(r.plot)}")


def _evaluate_stream(artifact, stream, settings, as_json) -> None:
    from edgetl.core import progress
    from edgetl.core.outputs import check_output
    from edgetl.evaluate.stream import evaluate_stream
    from edgetl.runtime.streaming import audio_seconds

    if settings.plot:
        check_output(settings.plot, "report", overwrite=True)  # an earlier plot is refreshed; anything else is kept
    with progress.progress_bar() as bar:
        task = bar.add_task("detecting keywords", total=audio_seconds(stream) or None, status="")
        report = evaluate_stream(artifact, stream, settings, progress=lambda s: bar.advance(task, s))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        print_stream_report(report)


# Options of --stream alone, and the options both forms take (declared once, by EvaluateSettings)
STREAM_ONLY = ("hop_ms", "smoothing", "refractory_ms", "target_fa_per_hour", "pick", "plot", "live")
SHARED = ("backend", "device", "threads", "precision_hint")


@click.command("evaluate")
@click.argument("artifact", type=click.Path())
@click.option("--data", type=click.Path(), help="Data set folder (or a flat folder of classes).")
@click.option("--stream", type=click.Path(), metavar="RECORDING",
              help="Instead of --data: a long recording with its keyword times beside it (RECORDING.json or .csv): "
                   "false rejects, false accepts per hour, delay, real-time factor.")
@options.from_settings(StreamEvalSettings, skip=SHARED, plot={"type": click.Path(dir_okay=False)})
@options.from_settings(EvaluateSettings, skip={"threads"}, report={"type": click.Path(file_okay=False)})
@options.threads(default="[default: 1 with --stream, else half of the usable cores, at least 1]")
@options.json_flag("one object (accuracy, n, backend, ...)")
def evaluate_cmd(artifact, data, stream, as_json, **values):
    """Evaluate ARTIFACT (a run directory, or an exported model) on a data split, or a
    keyword spotter on a long recording (--stream)."""
    from edgetl.core.errors import ConfigError

    if (data is None) == (stream is None):
        raise ConfigError("evaluate takes either --data DIR (clips or images) or --stream RECORDING",
                          hint="e.g. --data data --split test, or --stream data/_streams_/test.wav")
    given = options.given(STREAM_ONLY)
    if stream is not None and values.get("report"):
        raise ConfigError("--report is the report of --data (clips or images)",
                          hint="drop --report; with --stream, --plot writes the DET curve")
    if data is not None and given:
        raise ConfigError(f"{', '.join(given)} apply to --stream", hint="drop them, or evaluate a recording with --stream")
    if "--thresholds" in given and values["target_fa_per_hour"] is None:
        raise ConfigError("--thresholds chooses how --target-fa-per-hour picks them",
                          hint="add --target-fa-per-hour X (on a validation recording), or drop --thresholds")
    if stream is not None:
        settings = StreamEvalSettings(**{k: values[k] for k in (*STREAM_ONLY, *SHARED)})
        _evaluate_stream(artifact, stream, settings, as_json)
        return
    from edgetl.evaluate.accuracy import evaluate

    report = evaluate(artifact, data, EvaluateSettings(**{k: v for k, v in values.items() if k not in STREAM_ONLY}))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        print_report(report)
        if report_dir := values.get("report"):
            from edgetl.task import get as get_task

            listed = get_task(report.task).mistakes_title.lower()
            click.echo(f"wrote {report_dir}/index.html ({len(report.mistakes)} files listed under {listed})", err=True)


COMMANDS = [evaluate_cmd]
