"""Detection by transfer learning on the built-in digit scenes: per strategy, the val and
test mAP (FP32 and INT8 per CPU target), training time and peak memory, and latency at
batch 1 per backend with one and two threads, split into the model and the decoding
(score threshold, NMS) that runs after it in numpy.

    python benchmarks/detection.py [--images 300] [--held-out N] [--size 320]
        [--strategies linear-probe:8,full:6,defaults,defaults-no-ema] [--reference 20]

`--reference EPOCHS` also trains the plain torchvision FCOS of fcos_reference.py on the same
data in the same run (its training time and test mAP against the rows').

`defaults` is `edgetl finetune DATA --backbone efficientnet_lite0` with nothing else: what a
first run gets; `defaults-no-ema` the same without the weight average (`--no-ema`). Rows of
strategies not run this time are kept from the last results of the same data set:
`--held-out N` (N images each in val and test, the rest train) writes
detection-heldoutN.{json,md}, apart from the 15%-each set's detection.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EDGETL = [sys.executable, "-m", "edgetl.cli"]
DEFAULT_ROWS = {"defaults": [], "defaults-no-ema": ["--no-ema"]}  # rows of finetune's defaults: their extra flags


def run(*args: str) -> str:
    return subprocess.run([*EDGETL, *args], capture_output=True, text=True, check=True).stdout


def test_map(artifact: Path, data: Path, threads: int) -> dict:
    report = json.loads(run("-q", "evaluate", str(artifact), "--data", str(data), "--split", "test", "--json",
                            "--threads", str(threads)))
    return {"map": report["map"], "map50": report["map50"]}


def latency(artifact: Path, threads: int, iters: int = 50) -> dict:
    """Model p50 (ms) and the decoding's p50 (ms) at batch 1."""
    from edgetl.bench.latency import measure
    from edgetl.runtime import open_runner
    from edgetl.task.detection import SHOWN_DECODING, decode

    with open_runner(artifact, threads=threads) as runner:
        x = np.zeros([1 if d is None else d for d in runner.card.input["shape"]], np.float32)
        model = measure(runner, x, warmup=10, iters=iters).p50_ms
        out = runner.infer(x)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        decode(out, SHOWN_DECODING.min_score, SHOWN_DECODING.iou, SHOWN_DECODING.max_det)
        times.append((time.perf_counter() - start) * 1e3)
    return {"model_p50_ms": model, "decode_p50_ms": float(np.median(times))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--held-out", type=int, default=None, help="images in each of val and test (default 15%%)")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--strategies", default="linear-probe:8,full:6", help="STRATEGY:EPOCHS,...")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--reference", type=int, default=0, help="epochs of the plain torchvision FCOS (0: not run)")
    ap.add_argument("--work", type=Path, default=None, help="a folder of an earlier run: its trained runs are kept")
    args = ap.parse_args()
    from edgetl.runtime.machine import library_versions, machine_info

    work = args.work or Path(tempfile.mkdtemp(prefix="edgetl-detection-bench-"))
    data = work / "scenes"
    if not data.is_dir():
        held_out = ["--held-out", str(args.held_out)] if args.held_out else []
        run("-q", "data", "digit-scenes", str(data), "--images", str(args.images), "--size", str(args.size), *held_out)
    rows = []
    for item in args.strategies.split(","):
        strategy, epochs = item.split(":") if ":" in item else (item, "")
        out = work / strategy
        started = time.perf_counter()
        if not (out / "edgetl.json").is_file():
            chosen = DEFAULT_ROWS.get(strategy, ["--strategy", strategy, "--epochs", epochs, "--batch-size", "8",
                                                 "--lr", "2e-3", "--backbone-lr-scale", "0.5"])
            run("-q", "finetune", str(data), "--backbone", "efficientnet_lite0", *chosen, "--input-size",
                str(args.size), "--threads", str(args.threads), "--out", str(out))
        trained_here = time.perf_counter() - started >= 1
        train_s = time.perf_counter() - started if trained_here else \
            json.loads((out / "edgetl.json").read_text())["metrics"]["train_seconds"]
        # the largest child so far; not known for a run trained by an earlier benchmark (--work)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if trained_here else None
        card = json.loads((out / "edgetl.json").read_text())
        run("-q", "export", str(out), "--openvino", "--threads", str(args.threads), "--overwrite")
        config = card["source"]["config"]
        named = {"defaults": f"defaults ({config['strategy']})", "defaults-no-ema": f"defaults ({config['strategy']}), no EMA"}
        row = {"strategy": named.get(strategy, strategy),
               "epochs": config["epochs"], "train_seconds": train_s, "peak_rss_mb_so_far": peak_mb,
               "val_map": card["metrics"]["val_map"], "val_map50": card["metrics"]["val_map50"],
               "best_epoch": card["metrics"]["best_epoch"], "models": {}}
        for target in ("openvino", "onnxruntime"):
            run("-q", "quantize", str(out / "model.onnx"), "--target", target, "--max-drop", str(args.max_drop),
                "--threads", str(args.threads), "--overwrite")
        for name in ("model.onnx", "model.xml", "model.int8.onnx", "model.int8.xml"):
            row["models"][name] = {**test_map(out / name, data, args.threads),
                                   **{f"threads{t}": latency(out / name, t) for t in (1, 2)}}
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    stem = f"detection-heldout{args.held_out}" if args.held_out else "detection"
    earlier = json.loads((args.out / f"{stem}.json").read_text()) if (args.out / f"{stem}.json").is_file() else {}
    ran = {r["strategy"] for r in rows}
    kept = [r for r in earlier.get("rows", []) if r["strategy"] not in ran]
    reference = earlier.get("reference")
    if args.reference:
        from fcos_reference import train_and_score

        reference = {**train_and_score(data, args.reference, args.size, args.threads),
                     "with_rows": sorted(ran)}  # measured in the same run as these rows
        print(json.dumps(reference, indent=1), flush=True)
    result = {"images": args.images, "held_out": args.held_out, "size": args.size, "rows": kept + rows, "reference": reference,
              "machine": machine_info(), "versions": library_versions()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| strategy | epochs | train s | val mAP | test mAP FP32 (ORT) | test mAP@0.5 FP32 | test mAP INT8 ORT | "
             "test mAP INT8 OV | ORT INT8 ms (1 thr) | OV INT8 ms (1 thr) | decode ms |", "|---" * 11 + "|"]
    for r in result["rows"]:
        m = r["models"]
        lines.append(f"| {r['strategy']} | {r['epochs']} | {r['train_seconds']:.0f} | {r['val_map']:.3f} | "
                     f"{m['model.onnx']['map']:.3f} | {m['model.onnx']['map50']:.3f} | {m['model.int8.onnx']['map']:.3f} | "
                     f"{m['model.int8.xml']['map']:.3f} | {m['model.int8.onnx']['threads1']['model_p50_ms']:.1f} | "
                     f"{m['model.int8.xml']['threads1']['model_p50_ms']:.1f} | "
                     f"{m['model.onnx']['threads1']['decode_p50_ms']:.2f} |")
    if reference:
        lines.append(f"| {reference['name']} | {reference['epochs']} | {reference['train_seconds']:.0f} | - | "
                     f"{reference['map']:.3f} (torch) | {reference['map50']:.3f} | - | - | - | - | - |")
    split = f"{args.held_out} each in val and test" if args.held_out else "70/15/15% train/val/test"
    table = "\n".join(lines) + f"\n\n{args.images} images ({split}) at {args.size} px; CPU: {result['machine']['cpu']}.\n"
    (args.out / f"{stem}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
