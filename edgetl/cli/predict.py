"""edgetl predict: top-k labels of raw image or audio files through any artifact."""
from __future__ import annotations

import json

import click

from edgetl.cli import options
from edgetl.runtime.settings import PredictSettings


@click.command("predict")
@click.argument("artifact", type=click.Path())
@click.argument("files", nargs=-1, type=click.Path(readable=False))  # each unreadable one is skipped, named
@options.from_settings(PredictSettings, skip={"threads"})
@options.threads(default="[default: 1 on a recording, else half of the usable cores, at least 1]")
@options.json_flag("one list: file, labels, scores, error (a detector's: objects, each label, score, box)")
def predict_cmd(artifact, files, as_json, **values):
    """Predict FILES (images or audio clips, as the model takes) with ARTIFACT: a run
    directory, .onnx, OpenVINO .xml or TensorRT .engine. An audio file longer than the
    model's window is a stream: each keyword detected is listed with its time. Files
    that cannot be used are named one per line; the exit code is 2 only when none could
    be predicted."""
    from rich.markup import escape
    from rich.table import Table

    from edgetl.core.progress import print_table, results_console
    from edgetl.runtime.predict import none_predicted, predict

    settings = PredictSettings(**values)
    top_k = settings.top_k
    results = predict(artifact, files, settings)
    if len(results) > 1:  # a single file's failure is the error itself
        for r in results:
            if not r.ok:
                click.echo(f"skipped: {r.error} ({r.hint})", err=True)  # each reason names its file
    if not any(r.ok for r in results):
        raise none_predicted(results)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    elif any(r.ok and r.objects is not None for r in results):
        table = Table(title=f"{artifact}: objects found", title_justify="left")
        for col in ("file", "label", "score", "box (x0, y0, x1, y1)"):
            table.add_column(col, justify="right" if col == "score" else "left")
        for r in results:
            if r.ok and r.objects is not None:
                for o in r.objects:
                    table.add_row(escape(r.file), escape(o["label"]), f"{o['score']:.3f}",
                                  ", ".join(f"{v:.1f}" for v in o["box"]))
                if not r.objects:
                    table.add_row(escape(r.file), "[dim]nothing found[/]", "-", "-")
        print_table(table, results_console())
        if settings.draw:
            click.echo(f"drew the boxes into {settings.draw}", err=True)
    elif any(r.ok and r.detections is None for r in results):
        table = Table(title=f"{artifact}: top {top_k}", title_justify="left")
        for col in ("file", "label", "score", "next"):
            table.add_column(col, justify="right" if col == "score" else "left")
        for r in results:
            if r.ok and r.detections is None:
                rest = ", ".join(f"{escape(lab)} {sc:.3f}" for lab, sc in zip(r.labels[1:], r.scores[1:]))
                table.add_row(escape(r.file), escape(r.labels[0]), f"{r.scores[0]:.3f}", rest)
        print_table(table, results_console())
    streams = [r for r in results if r.ok and r.detections is not None]
    if streams and not as_json:
        table = Table(title=f"{artifact}: keywords detected in longer recordings", title_justify="left")
        for col in ("file", "at (s)", "keyword", "score"):
            table.add_column(col, justify="left" if col in ("file", "keyword") else "right")
        for r in streams:
            for d in r.detections:
                table.add_row(escape(r.file), f"{d['time']:.2f}", escape(d["label"]), f"{d['score']:.3f}")
            if not r.detections:
                table.add_row(escape(r.file), "-", "[dim]no keyword detected[/]", "-")
        print_table(table, results_console())
        for r in streams:
            click.echo(f"{r.file}: real-time factor {r.real_time_factor:.4f} (processing time per second of audio)",
                       err=True)


COMMANDS = [predict_cmd]
