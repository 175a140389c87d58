"""Memory and time against the size of the data set.

Peak resident memory (RSS) and wall time of a linear probe (224 px) and of one epoch of
full fine-tuning (128 px) of EfficientNet-Lite0, for growing numbers of generated
training JPEGs (real digits drawn at 224 px on a noisy coloured background, a fixed
500-image validation split), each `edgetl finetune` run in its own process with a cold
sample cache; the slope is MB of peak RSS per 1,000 training images. `--source DIR` runs
the edgetl of another source tree (e.g. a checkout of an earlier commit: "before").

    python benchmarks/scale.py [--images 1000,2000,4000] [--threads 2] [--source DIR --label before]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

RUNS = [("linear-probe", ["--strategy", "linear-probe", "--input-size", "224"]),
        ("full, 1 epoch", ["--strategy", "full", "--epochs", "1", "--input-size", "128"])]


def make_images(root: Path, n_train: int, n_val: int = 500, size: int = 224) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    by_class = [np.flatnonzero(digits.target == c) for c in range(10)]
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            k = int(rng.choice(by_class[i % 10]))  # as many of each class
            glyph = Image.fromarray((digits.images[k] * 16).clip(0, 255).astype(np.uint8)).resize((size, size))
            background = rng.integers(0, 256, 3) * 0.6 + rng.normal(0, 25, (size, size, 3))
            img = background * (1 - np.asarray(glyph, float)[..., None] / 255) + 255 * np.asarray(glyph, float)[..., None] / 255
            folder = root / split / str(digits.target[k])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)
    return root


def run(args: list[str], source: Path, cache: Path) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one edgetl command in its own process."""
    env = {**os.environ, "EDGETL_CACHE_DIR": str(cache), "PYTHONPATH": str(source)}
    t0 = time.perf_counter()
    # cwd elsewhere: `python -m` puts the current folder first on the path, ahead of `source`
    proc = subprocess.Popen([sys.executable, "-m", "edgetl", "-q", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=cache)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"failed: edgetl {' '.join(args)}\n{proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, wall


def slope(rows: list[dict]) -> float:
    """MB of peak RSS per 1,000 training images (least squares)."""
    x = np.array([r["train_images"] for r in rows], float) / 1000
    y = np.array([r["peak_rss_mb"] for r in rows], float)
    return float(np.polyfit(x, y, 1)[0]) if len(rows) > 1 else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default="1000,2000,4000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale.json")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edgetl.runtime.machine import machine_info

    sizes = [int(s) for s in args.images.split(",")]
    work = Path(tempfile.mkdtemp(prefix="edgetl-scale-"))
    data = make_images(work / "images", max(sizes))
    rows = []
    for name, options in RUNS:
        for n in sizes:
            per_class = max(1, n // 10)  # the generated set has ten classes
            cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
            peak, wall = run(["finetune", str(data), "--backbone", "efficientnet_lite0", *options,
                              "--limit-per-class", str(per_class), "--threads", str(args.threads),
                              "--out", str(work / f"run-{len(rows)}")], args.source, cache)
            card = json.loads((work / f"run-{len(rows)}" / "edgetl.json").read_text())
            history = json.loads((work / f"run-{len(rows)}" / "history.json").read_text())
            rows.append({"version": args.label, "run": name, "train_images": sum(card["source"]["train_counts"].values()),
                         "peak_rss_mb": peak, "wall_seconds": wall,
                         "epoch_seconds": history[0]["seconds"] if name.startswith("full") else None})
            print(f"{args.label:>7} {name:>14} {rows[-1]['train_images']:>6} images  peak {peak:7.0f} MB  "
                  f"wall {wall:6.1f} s", flush=True)
    slopes = {name: slope([r for r in rows if r["run"] == name]) for name, _ in RUNS}
    for name, value in slopes.items():
        print(f"{args.label:>7} {name:>14}  {value:+.0f} MB of peak RSS per 1,000 images")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[args.label] = {"rows": rows, "slope_mb_per_1000_images": slopes, "threads": args.threads,
                           "machine": machine_info()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
