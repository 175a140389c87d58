"""INT8 targets side by side against one after the other, in one `edgetl run` folder.

The recipe runs once whole; then its quantize stages are redone (`--from quantize`, which
redoes bench and package after them) with `quantize.side_by_side` false and true in turn,
the order swapped each round. The quantize stages' wall time is the run's own time less
the stages after them (bench, package) and the checks of the reused ones before them.

    python benchmarks/side_by_side.py [digits-lite0] [--rounds 2] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

from edgetl.pipeline.run import run_recipe
from edgetl.runtime.machine import library_versions, machine_info

MODELS = Path(__file__).resolve().parents[1] / "models"
RESULTS = Path(__file__).parent / "results"


def quantize_wall(folder: Path, recipe: Path, side_by_side: bool) -> dict:
    started = time.perf_counter()
    run_recipe(recipe, folder, rerun_from="quantize", overrides=[f"quantize.side_by_side={str(side_by_side).lower()}"])
    wall = time.perf_counter() - started
    stages = json.loads((folder / "summary.json").read_text())["stages"]
    after = sum(s["seconds"] for s in stages if s["name"] in ("bench", "package"))
    quantize = {s["name"]: s["seconds"] for s in stages if s["name"].startswith("quantize.")}
    return {"quantize_wall_s": wall - after, "stage_seconds": quantize, "run_wall_s": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", default="digits-lite0", help="a recipe of models/ by name")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "side-by-side")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    recipe, folder = MODELS / f"{args.name}.yaml", args.work / args.name
    run_recipe(recipe, folder, overrides=["quantize.side_by_side=false"])  # the stages before quantize, once
    found: dict[bool, list[dict]] = {False: [], True: []}
    for r in range(args.rounds):
        for together in ((False, True) if r % 2 == 0 else (True, False)):
            got = quantize_wall(folder, recipe, together)
            found[together].append(got)
            print(f"round {r + 1} {'side by side' if together else 'in turn'}: quantize {got['quantize_wall_s']:.1f} s "
                  f"({', '.join(f'{k} {v:.1f} s' for k, v in got['stage_seconds'].items())})", flush=True)
    median = {k: statistics.median(g["quantize_wall_s"] for g in v) for k, v in found.items()}
    result = {"recipe": args.name, "rounds": args.rounds, "in_turn": found[False], "side_by_side": found[True],
              "median_quantize_wall_s": {"in_turn": median[False], "side_by_side": median[True]},
              "speed_up": median[False] / median[True],
              "peak_rss_mb_any_process": max(resource.getrusage(w).ru_maxrss for w in
                                             (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024,
              "machine": machine_info(), "versions": library_versions()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "side_by_side.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"quantize stages of {args.name}: {median[False]:.1f} s in turn, {median[True]:.1f} s side by side "
          f"({result['speed_up']:.2f}x), medians of {args.rounds}; CPU {result['machine']['cpu']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
