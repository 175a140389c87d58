"""Transfer learning on real handwritten digits with the packaged EfficientNet-Lite0.

Validation accuracy and wall time of linear-probe, full and gradual fine-tuning, of the
same network trained from scratch, each on the whole training split and on only 10
labelled images per class; plus the time of a second linear probe of the same split
(the frozen backbone's features come from the cache). The linear probe fits its head to
convergence (L-BFGS), so its epochs are not counted. `--only linear-probe` measures only
those rows again and keeps the others of the existing results.

    python benchmarks/transfer.py [--input-size 64] [--epochs 8] [--only NAME,...] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from edgetl.core import progress
from edgetl.data.digits import make_digits
from edgetl.finetune import finetune

CONFIGS = [
    ("linear-probe", dict(strategy="linear-probe")),
    ("full", dict(strategy="full")),
    ("gradual", dict(strategy="gradual")),
    ("from scratch", dict(strategy="full", weights="none")),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--few-epochs", type=int, default=30, help="epochs for the 10-images-per-class runs")
    ap.add_argument("--only", help="comma-separated strategies to measure again (the other rows are kept)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    progress.set_quiet(True)
    work = Path(tempfile.mkdtemp(prefix="edgetl-transfer-"))
    os.environ["EDGETL_CACHE_DIR"] = str(work / "cache")  # a cold sample cache: the first probe computes features
    data = make_digits(work / "digits", size=args.input_size)
    only = set(args.only.split(",")) if args.only else None
    kept = json.loads((args.out / "transfer.json").read_text())["rows"] if only else []
    rows = []
    for limit in (None, 10):
        for name, opts in CONFIGS:
            if only is not None and name not in only:
                rows += [r for r in kept if r["strategy"] == name and r["per_class"] == (limit or "all")]
                continue
            epochs = args.epochs if limit is None else args.few_epochs
            t0 = time.perf_counter()
            r = finetune(data, "efficientnet_lite0", work / f"{name}-{limit}", epochs=epochs, patience=epochs,
                         input_size=args.input_size, hflip=False, limit_per_class=limit, seed=0, **opts)
            wall = time.perf_counter() - t0
            secs = [h["seconds"] for h in r.history]
            row = {"strategy": name, "train_images": sum(r.card.source["train_counts"].values()),
                   "per_class": limit or "all", "epochs": None if name == "linear-probe" else len(r.history),
                   "val_accuracy": r.val_accuracy,
                   "wall_seconds": wall, "first_epoch_s": secs[0],
                   "later_epoch_s": statistics.mean(secs[1:]) if len(secs) > 1 else None}
            if name == "linear-probe":
                t0 = time.perf_counter()
                finetune(data, "efficientnet_lite0", work / f"{name}-{limit}-again", input_size=args.input_size,
                         limit_per_class=limit, seed=0, **opts)
                row["again_seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(f"{name:>13} {str(limit or 'all'):>4}/class  val_acc {r.val_accuracy:.4f}  wall {wall:6.1f}s",
                  flush=True)
    probe = next(r for r in rows if r["strategy"] == "linear-probe" and r["per_class"] == "all")
    acc = {(r["strategy"], r["per_class"]): r["val_accuracy"] for r in rows}
    summary = {
        "linear_probe_second_run_speedup": probe["wall_seconds"] / probe["again_seconds"],
        "transfer_gain_10_per_class_points": 100 * (acc[("full", 10)] - acc[("from scratch", 10)]),
        "targets": {
            "linear-probe >= 90%": acc[("linear-probe", "all")] >= 0.90,
            "full >= 97%": acc[("full", "all")] >= 0.97,
            "transfer >= 10 points above scratch at 10/class": acc[("full", 10)] - acc[("from scratch", 10)] >= 0.10,
        },
    }
    result = {"benchmark": "transfer", "input_size": args.input_size, "backbone": "efficientnet_lite0",
              "data": "sklearn digits (train 1077 / val 360)", "rows": rows, "summary": summary,
              "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                          "device": "cuda" if torch.cuda.is_available() else "cpu", "torch": torch.__version__}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| strategy | labelled images | epochs | val accuracy | wall time |", "|---|---|---|---|---|"]
    for r in rows:
        per = "all" if r["per_class"] == "all" else f"{r['per_class']}/class"
        lines.append(f"| {r['strategy']} | {r['train_images']} ({per}) | {r['epochs'] or 'L-BFGS'} | "
                     f"{100 * r['val_accuracy']:.1f}% | {r['wall_seconds']:.0f} s |")
    lines.append("")
    lines.append(f"Linear probe: {probe['wall_seconds']:.1f} s, a second probe of the same split (features from the "
                 f"cache) {probe['again_seconds']:.1f} s: {summary['linear_probe_second_run_speedup']:.1f}x faster. "
                 f"Transfer vs scratch at 10 images/class: +{summary['transfer_gain_10_per_class_points']:.1f} points.")
    (args.out / "transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(summary["targets"], indent=2))
    return 0 if all(summary["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
