"""Does an INT8 bound hold on new data? Each shipped recipe named is run with several
training seeds (`--set finetune.seed=S`); for every INT8 target the drop measured on the
validation samples that bounded it is set beside the drop on the test split (bench), with
the test drop's 95% interval, and counted: within the bound, above it but within what the
test samples can tell, or above it for certain (the pipeline's bench gate refuses those).

    python benchmarks/int8_bounds.py [digits-lite0 ...] [--seeds 0,1,2] [--work DIR]

Rows of recipes and seeds not run this time are kept from the last results.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgetl.pipeline.run import GateFailed, run_recipe
from edgetl.runtime.machine import library_versions, machine_info

MODELS = Path(__file__).resolve().parents[1] / "models"
RESULTS = Path(__file__).parent / "results"


def rows_of(folder: Path, recipe: str, seed: int, refused: str | None) -> list[dict]:
    """One row per INT8 target of a finished (or bench-refused) pipeline in `folder`."""
    summary = json.loads((folder / "summary.json").read_text())
    quantized = {s["figures"]["model"]: s["figures"] for s in summary["stages"]
                 if s["name"].startswith("quantize.") and s.get("figures")}
    bench = json.loads((folder / "bench.json").read_text()) if (folder / "bench.json").is_file() else {"rows": []}
    rows = []
    for r in bench["rows"]:
        name = Path(r["artifact"]).name
        if name not in quantized or r.get("error") or r.get("batch") != 1:
            continue
        q, bound, ci = quantized[name], r.get("bound"), r.get("drop_ci95")
        verdict = "within" if bound is None or r["drop"] <= bound else (
            "above, within noise" if ci and ci[0] <= bound else "above")
        rows.append({"recipe": recipe, "seed": seed, "model": name, "backend": r["backend"], "bound": bound,
                     "val_drop": q["drop"], "float_layers": q["float_layers"], "test_drop": r["drop"],
                     "test_drop_ci95": ci, "verdict": verdict, "refused": refused})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", default=["digits-lite0"], help="recipes of models/ by name")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "int8-bounds")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows: list[dict] = []
    for name in args.names:
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = args.work / f"{name}-seed{seed}"
            refused = None
            try:
                run_recipe(MODELS / f"{name}.yaml", folder, overrides=[f"finetune.seed={seed}"])
            except GateFailed as exc:  # the bench gate: a drop on test above its bound for certain
                refused = exc.message
            found = rows_of(folder, name, seed, refused)
            rows += found
            for r in found:
                print(f"{name} seed {seed} {r['model']}: val drop {100 * r['val_drop']:.2f} pt (bound "
                      f"{100 * (r['bound'] or 0):.2f}), test drop {100 * r['test_drop']:.2f} pt -> {r['verdict']}",
                      flush=True)
    earlier_file = args.out / "int8_bounds.json"
    earlier = json.loads(earlier_file.read_text()) if earlier_file.is_file() else {}
    # rows of recipes and seeds not run this time are kept, with the machine they were measured on
    ran = {(name, int(seed)) for name in args.names for seed in args.seeds.split(",")}
    kept = [{**r, "machine": r.get("machine") or earlier.get("machine", {}).get("cpu")}
            for r in earlier.get("rows", []) if (r["recipe"], r["seed"]) not in ran]
    kept.sort(key=lambda r: (r["recipe"], r["seed"]))
    machine = machine_info()
    rows = kept + [{**r, "machine": machine.get("cpu")} for r in rows]
    result = {"rows": rows, "machine": machine, "versions": library_versions()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_bounds.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| recipe | seed | model | bound (pt) | val drop (pt) | layers in float | test drop (pt), 95% interval | "
             "on test |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = r["test_drop_ci95"]
        lines.append(f"| {r['recipe']} | {r['seed']} | {r['model']} | {100 * (r['bound'] or 0):.2f} | "
                     f"{100 * r['val_drop']:.2f} | {r['float_layers']} | {100 * r['test_drop']:.2f}"
                     + (f" ({100 * ci[0]:.2f}..{100 * ci[1]:.2f})" if ci else "") + f" | {r['verdict']} |")
    above = sum(r["verdict"] != "within" for r in rows)
    lines.append(f"\n{above} of {len(rows)} test drops above their bound "
                 f"({sum(r['verdict'] == 'above' for r in rows)} beyond what the test samples can tell); CPU: "
                 f"{' and '.join(sorted({str(r['machine']) for r in rows}))} (this run's: "
                 f"{', '.join(machine.get('cpu_flags') or [])}).")
    (args.out / "int8_bounds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
