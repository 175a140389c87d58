"""The shipped recipes, run: each model card in models/ is written from what its recipe
measured here, never typed in.

Runs each recipe of models/ (or those named) with `edgetl run` into
benchmarks/work/recipes/NAME (a rerun reuses every unchanged stage), then writes
models/NAME.json (the pipeline's summary, the machine, the bench rows) and the model
card models/NAME.md: data, backbone, what it reaches on every backend, on which CPU, and
how long each stage took.

    python benchmarks/recipes.py [NAME ...] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgetl.core import progress
from edgetl.pipeline.run import GateFailed, run_recipe
from edgetl.runtime.machine import library_versions, machine_info

MODELS = Path(__file__).resolve().parents[1] / "models"


def describe(source: dict) -> str:
    """A data source as people say it: 'built-in digits (size 64)', 'the folder data/pets'."""
    if source.get("folder"):
        return f"the folder {source['folder']}"
    name = next(n for n in ("digits", "keywords", "digit_scenes") if source.get(n))
    options = ", ".join(f"{k} {v}" for k, v in source[name].items() if v not in (None, False, 0) and k != "words")
    shown = {"digit_scenes": "detection scenes (digits on photos)"}.get(name, name)
    return f"built-in {shown} ({options})" if options else f"built-in {shown}"


def card(summary: dict, recipe: dict, bench: dict | None, machine: dict) -> str:
    stages = {s["name"]: s for s in summary["stages"]}
    fine = stages["finetune"]["figures"]
    metric = fine.get("metric", "accuracy")  # the task's: accuracy, mAP (COCO 0.5:0.95)
    source = describe(recipe["data"])
    lines = [f"# {recipe['name']}", "", recipe.get("description", ""), "",
             f"Recipe: [`{recipe['name']}.yaml`]({recipe['name']}.yaml). Run it with "
             f"`edgetl run models/{recipe['name']}.yaml`.", "",
             f"- data: {source}" + (f"; unlabelled target data: {describe(recipe['target'])}" if recipe.get("target")
                                    else ""),
             f"- backbone: {recipe['finetune']['backbone']}, strategy {recipe['finetune']['strategy']}, "
             + (f"{fine['chosen']} chosen on validation" if str(fine.get("chosen", "")).startswith("L2") else
                f"{fine.get('epochs_run')} epochs run (best {fine.get('best_epoch')})"),
             f"- validation {metric} {fine['val_accuracy']:.4f}"
             + (f"; target accuracy {fine['target_accuracy']:.4f} with {fine.get('adaptation')}"
                if "target_accuracy" in fine else "")]
    if "evaluate" in stages:
        e = stages["evaluate"]["figures"]
        lines.append(f"- {e['split']} {metric} {e['accuracy']:.4f} ({e['n']} samples)")
    stream = stages.get("export", {}).get("figures", {}).get("streaming")
    if stream:
        target = recipe.get("streaming", {}).get("target_fa_per_hour")
        lines.append(f"- streaming (hop {stream['settings'].get('hop_ms')} ms): operating point picked for {target} false "
                     f"accepts per hour on the {stream['picked_on']} recording (there FRR {stream['val_frr']:.3f} at "
                     f"{stream['val_fa_per_hour']:.1f} FA/h); on the test recording, other voices: FRR "
                     f"{stream.get('test_frr', float('nan')):.3f} at {stream.get('test_fa_per_hour', float('nan')):.1f} "
                     f"FA/h, real-time factor {stream.get('real_time_factor', float('nan')):.3f} "
                     f"({'live, one hop per call' if stream.get('live', True) else 'read in blocks of hops'})")
    for name, s in stages.items():
        if name.startswith("quantize.") and s["figures"]:
            q, target = s["figures"], name.split(".", 1)[1]
            in_float = f"{q['float_layers']} layer{'' if q['float_layers'] == 1 else 's'} in float, {q['method']}"
            if recipe.get("target"):  # adapted: bounded without labels, by agreement with FP32 on the target
                lines.append(f"- INT8 {target}: agrees with FP32 on {100 * q['int8_accuracy']:.1f}% of held-out "
                             f"unlabelled target samples ({in_float})")
            else:
                lines.append(f"- INT8 {target}: {q['fp32_accuracy']:.4f} -> {q['int8_accuracy']:.4f} on the validation "
                             f"samples of its bound ({in_float})")
    if bench:
        lines += ["", "Every artifact on its backend (batch 1, the data set's test split"
                  + (", the source domain" if recipe.get("target") else "") + "):", "",
                  f"| artifact | backend | {metric} | drop (pt) | p50 ms | size MB |", "|---|---|---|---|---|---|"]
        for r in bench["rows"]:
            if r["batch"] == 1 and not r.get("error"):
                drop = "-" if r.get("drop") is None else f"{100 * r['drop']:.2f}"
                lines.append(f"| {Path(r['artifact']).name} | {r['backend']} | {r['accuracy']:.4f} | {drop} | "
                             f"{r['p50_ms']:.2f} | {r['size_mb']:.2f} |")
    lines += ["", f"Measured on {machine['cpu']} ({', '.join(machine['cpu_flags'])}), {machine['cores']} cores; "
              "how long each stage took:", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {s['seconds']:.0f} |" for name, s in stages.items()]
    total = sum(s["seconds"] for s in stages.values())
    lines += ["", f"In all {total / 60:.1f} minutes. Figures from `python benchmarks/recipes.py {recipe['name']}` "
              f"({recipe['name']}.json)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="recipes of models/ by name (default: all)")
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "recipes")
    args = ap.parse_args()
    recipes = [MODELS / f"{n}.yaml" for n in args.names] or sorted(MODELS.glob("*.yaml"))
    failed = 0
    for path in recipes:
        folder = args.work / path.stem
        progress.info(f"[bold]{path.stem}[/] -> {folder}", markup=True)
        try:
            result = run_recipe(path, folder)
        except GateFailed as exc:
            progress.info(f"{path.stem}: {exc.message}")
            failed += 1
            continue
        summary = json.loads((folder / "summary.json").read_text())
        bench = json.loads((folder / "bench.json").read_text()) if (folder / "bench.json").is_file() else None
        machine = machine_info()
        doc = {"recipe": path.name, "summary": summary, "machine": machine, "versions": library_versions(),
               "bench_rows": bench["rows"] if bench else None}
        (MODELS / f"{path.stem}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
        (MODELS / f"{path.stem}.md").write_text(card(summary, summary["recipe_settings"], bench, machine))
        print(f"{path.stem}: {'ok' if result.ok else 'failed'} -> models/{path.stem}.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
