"""edgetl package and edgetl verify: a run as a deployment bundle, and the check on the device."""
from __future__ import annotations

import json
import sys

import click

from edgetl.cli import options
from edgetl.deploy.settings import PackageSettings


@click.command("package")
@click.argument("run", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="The bundle folder to write (OUT.zip with --zip).")
@options.from_settings(PackageSettings, data={"type": click.Path()},
                       targets={"type": click.STRING, "default": "openvino,onnxruntime", "metavar": "TARGET,...",
                                "callback": options.comma_list()})
@options.overwrite("an earlier bundle at --out")
def package_cmd(run, out, overwrite, **values):
    """Package RUN for the device: one model per target (INT8 when the run has one within its
    bound, else FP32), the card, reference files with each model's answers, checksums and a
    README with the install and predict lines."""
    from edgetl.deploy.package import package

    result = package(run, out, PackageSettings(**values), overwrite=overwrite)
    models = ", ".join(f"{t} ({e.precision})" for t, e in result.targets.items())
    click.echo(f"wrote {result.out}: {models}, {result.references} reference files")


@click.command("verify")
@click.argument("bundle", type=click.Path())
@click.option("--backend", default=None, help="Check only this target (default: every one this machine can run).")
@options.threads()
@click.option("--json", "as_json", is_flag=True, help="One JSON list of the checks on stdout.")
def verify_cmd(bundle, backend, threads, as_json):
    """Check on this device that BUNDLE computes what was packaged: every checksum, then the
    reference files from their raw bytes through the runtime's preprocessing and each
    model. On a device with TensorRT, a TensorRT target's engine is built for this GPU
    first (kept in the engine cache). Exit 1 with the figures when an answer differs."""
    from rich.table import Table

    from edgetl.core.progress import print_table, results_console
    from edgetl.deploy.tensorrt_engine import verify_on_device

    checks = verify_on_device(bundle, backend=backend, threads=threads)
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        table = Table(title=f"{bundle}: checksums ok; reference files", title_justify="left")
        for col in ("target", "runs on", "precision", "files", "same answers", "max score diff", "tolerance",
                    "p50 ms here", "ok"):
            table.add_column(col, justify="left" if col in ("target", "runs on", "precision") else "right")
        for c in checks:
            if c.skipped:
                table.add_row(c.target, "-", c.precision, "-", "-", "-", "-", "-", "skipped")
                continue
            table.add_row(c.target, c.backend, c.precision, str(c.n), f"{100 * c.agreement:.1f}%",
                          f"{c.max_score_diff:.2e}", f"{c.tolerance:g}", "-" if c.p50_ms is None else f"{c.p50_ms:.2f}",
                          "yes" if c.passed else "[red]NO[/]")
        print_table(table, results_console())
        for c in checks:
            for line in ([f"skipped: {c.skipped}"] if c.skipped else []) + [f"note: {n}" for n in c.notes]:
                click.echo(f"{c.target}: {line}", err=True)  # plain text: no markup to escape
            for failure in c.failures:
                click.echo(f"{c.target}: {failure}", err=True)
    if not all(c.passed for c in checks):
        click.echo(f"error: {sum(not c.passed for c in checks)} target(s) do not compute what was packaged", err=True)
        sys.exit(1)


COMMANDS = [package_cmd, verify_cmd]
