"""edgetl run: a recipe from data to bundle, reusing every stage nothing changed for."""
from __future__ import annotations

import click


def print_summary(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgetl.core.progress import print_table, results_console

    table = Table(title=f"{result.recipe.name}: {result.folder}", title_justify="left")
    for col in ("stage", "status", "time", "figures"):
        table.add_column(col, justify="right" if col == "time" else "left")
    for s in result.stages:
        took = f"({s.seconds:.0f}s)" if s.status == "reused" else f"{s.seconds:.0f}s"  # reused: what it took then
        table.add_row(s.name, s.status if s.status != "failed" else "[red]failed[/]", took, escape(_figures(s)))
    print_table(table, results_console())
    bench = result.stage("bench")
    if bench and bench.figures.get("rows"):
        rows = Table(title="every artifact on its backend (batch 1)", title_justify="left")
        metric = "/".join(dict.fromkeys(r.get("metric", "accuracy") for r in bench.figures["rows"])) or "accuracy"
        for col in ("artifact", "backend", metric, "drop pt", "p50 ms", "MB"):
            rows.add_column(col, justify="left" if col in ("artifact", "backend") else "right")
        for r in bench.figures["rows"]:
            if r["batch"] == 1 and not r["error"]:
                marked = "*" if r.get("note") else ""  # an emulated model's latency is not its own
                rows.add_row(escape(r["artifact"]), r["backend"], _fmt(r["accuracy"], "{:.4f}"),
                             _fmt(r["drop"], "{:.2f}", 100), _fmt(r["p50_ms"], "{:.2f}") + marked,
                             _fmt(r["size_mb"], "{:.2f}"))
        print_table(rows, results_console())
        for note in dict.fromkeys(f"* {r['artifact']}: {r['note']}" for r in bench.figures["rows"]
                                  if r.get("note") and r["batch"] == 1 and not r["error"]):
            results_console().print(escape(note))
    t = result.totals
    if t:
        bundle = f", bundle {t['bundle_mb']:.1f} MB" if t.get("bundle_mb") is not None else ""
        overrides = f"; overrides: {' '.join(t['overrides'])}" if t.get("overrides") else ""
        results_console().print(escape(f"in all {t['seconds'] / 60:.1f} min here (the stages took "
                                       f"{t['stage_seconds'] / 60:.1f} min when they ran), peak memory "
                                       f"{t['peak_rss_mb'] / 1024:.2f} GB{bundle}{overrides}"))


def _fmt(value, pattern: str, scale: float = 1.0) -> str:
    return "-" if value is None else pattern.format(value * scale)


def _figures(stage) -> str:
    f = stage.figures
    metric = f.get("metric", "accuracy")  # the task's: accuracy, mAP
    if stage.error:
        return stage.error
    if "models" in f:  # an import
        return f"{', '.join(f['models'])}: val {metric} {_fmt(f['val_accuracy'], '{:.4f}')}"
    if "val_accuracy" in f:
        chosen = f.get("chosen", f"epoch {f['best_epoch']}")  # a probe's: the L2 strength kept, not an epoch
        return f"val {metric} {f['val_accuracy']:.4f} ({chosen})" + (
            f", target {f['target_accuracy']:.4f} ({f['adaptation']})" if "target_accuracy" in f else "")
    if "int8_accuracy" in f:
        return (f"{f['model']}: {metric} {f['fp32_accuracy']:.4f} -> {f['int8_accuracy']:.4f} "
                f"({f['float_layers']} in float)")
    if "accuracy" in f:
        return f"{f['split']} {metric} {f['accuracy']:.4f} ({f['n']})"
    if "streaming" in f:
        st = f["streaming"]
        return f"streaming: test FRR {st.get('test_frr', float('nan')):.3f} at {st.get('test_fa_per_hour', 0):.1f} FA/h"
    if "bundle" in f:
        verified = f.get("verified")
        return f["bundle"] + (f"; verified here on {', '.join(f'{t} ({b})' for t, b in verified.items())}"
                              if verified else "")
    if "parity" in f:
        return ", ".join(f"{k} agrees {v:.2%}" for k, v in f["parity"].items())
    return f.get("folder", "")


@click.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="The pipeline folder [default: runs/NAME].")
@click.option("--from", "rerun_from", default=None, metavar="STAGE",
              help="Run this stage and every later one again, whatever the cache says.")
@click.option("--force", is_flag=True, help="Run every stage again.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change one key of the recipe first, e.g. --set quantize.targets[0].max_drop=0.02 (repeatable).")
def run_cmd(recipe, out, rerun_from, force, overrides):
    """Run RECIPE (YAML: data, finetune or import, export, quantize, bench, package; see models/): every
    stage whose settings, inputs and library versions are unchanged is reused from the
    cache, so a rerun takes seconds. A gate that does not hold stops it with exit code 1."""
    from edgetl.pipeline.run import GateFailed, run_recipe

    try:
        result = run_recipe(recipe, out, rerun_from, force, list(overrides))
    except GateFailed as exc:
        print_summary(exc.pipeline)  # what held and what did not
        raise
    print_summary(result)


COMMANDS = [run_cmd]
