"""INT8 accuracy and speed on real handwritten digits, for every quantization target.

Two fine-tunes: the packaged EfficientNet-Lite0 (ImageNet weights, full fine-tuning, 64
px) and a torchvision ResNet-18 (no pretrained weights ship offline, so trained from
scratch at --resnet-size px). Each is exported to ONNX and quantized for OpenVINO (NNCF,
naive and with --max-drop), ONNX Runtime and TensorRT (the QDQ model, evaluated in ONNX
Runtime), calibrated on the training split, bounded on the validation split, and scored
on the untouched test split. Latency: batch 1, 2 threads, INT8 vs FP32 on the same
runtime, measured alternately (3 rounds, median) in one run. Every model is made for the
portable CPU kind (the default: the same answers on every x86 CPU); the bounded OpenVINO
and ONNX Runtime models are also made for `--cpu vnni` and scored twice: on this CPU and
with OpenVINO's kernels capped at AVX2 (ONEDNN_MAX_CPU_ISA), as an AVX2-only CPU runs them.

    python benchmarks/quantization.py [--epochs 6] [--resnet-size 128] [--models lite0,resnet18]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from edgetl.bench.latency import measure
from edgetl.core import progress
from edgetl.core.card import build_fingerprint
from edgetl.data.digits import make_digits
from edgetl.data.samples import validation_samples
from edgetl.evaluate.accuracy import evaluate
from edgetl.export import export_run
from edgetl.finetune import finetune
from edgetl.quantize import quantize
from edgetl.runtime import open_runner
from edgetl.runtime.machine import cpu_name, machine_info

BOUNDS = {"openvino": 0.005, "onnxruntime": 0.01, "tensorrt": 0.005}




def paired_latency(fp32: Path, int8: Path, x, threads: int, rounds: int = 3) -> tuple[float, float]:
    """Median p50 (ms) of both models, measured alternately in `rounds` so that a noisy
    neighbour on a shared machine hits both alike."""
    import statistics

    with open_runner(fp32, threads=threads) as a, open_runner(int8, threads=threads) as b:
        pairs = [(measure(a, x, warmup=20, iters=150).p50_ms, measure(b, x, warmup=20, iters=150).p50_ms)
                 for _ in range(rounds)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def bench_model(name: str, backbone: str, data: Path, work: Path, size: int, epochs: int, threads: int,
                weights: str = "default") -> list[dict]:
    t0 = time.perf_counter()
    run = work / name
    finetune(data, backbone, run, strategy="full", weights=weights, epochs=epochs, patience=epochs, input_size=size,
             hflip=False, seed=0)
    fp32 = export_run(run, run / "model.onnx", openvino=True)
    print(f"{name}: fine-tuned and exported in {time.perf_counter() - t0:.0f}s", flush=True)
    x1 = validation_samples(open_runner(fp32.onnx).card, data).x[:1]
    fp32_acc = {"onnx": evaluate(fp32.onnx, data, split="test").accuracy,
                "xml": evaluate(fp32.openvino, data, split="test").accuracy}
    rows = []
    plans = [("openvino", None, "portable"), ("openvino", BOUNDS["openvino"], "portable"),
             ("openvino", BOUNDS["openvino"], "vnni"), ("onnxruntime", BOUNDS["onnxruntime"], "portable"),
             ("onnxruntime", BOUNDS["onnxruntime"], "vnni"), ("tensorrt", BOUNDS["tensorrt"], "portable")]
    for target, bound, cpu in plans:
        suffix = {"openvino": ".xml"}.get(target, ".onnx")
        out = run / f"int8-{target}-{'bounded' if bound else 'naive'}-{cpu}{suffix}"
        t = time.perf_counter()
        try:
            result = quantize(fp32.onnx, target, max_drop=bound, out=out, cpu=cpu)
        except Exception as exc:  # a bound that cannot hold is a result too
            rows.append({"model": name, "target": target, "max_drop": bound, "cpu": cpu, "error": str(exc)})
            print(f"  {target:<12} bound {bound}: {exc}", flush=True)
            continue
        seconds = time.perf_counter() - t
        test_acc = evaluate(out, data, split="test").accuracy
        reference = fp32_acc["xml" if target == "openvino" else "onnx"]
        runtime = "openvino" if target == "openvino" else "onnxruntime"
        fp32_ms, int8_ms = paired_latency(fp32.openvino if runtime == "openvino" else fp32.onnx, out, x1, threads) \
            if target != "tensorrt" else (None, None)
        row = {"model": name, "target": target, "max_drop": bound, "cpu": cpu, "fp32_test_accuracy": reference,
               "int8_test_accuracy": test_acc, "avx2_test_accuracy": avx2_accuracy(out, data) if target == "openvino"
               else None, "test_drop_pt": 100 * (reference - test_acc),
               "val_drop_pt": 100 * result.drop, "naive_val_drop_pt": 100 * result.attempts[0]["drop"]
               if result.attempts else None, "float_layers": len(result.float_layers), "quantize_s": seconds,
               "fp32_p50_ms": fp32_ms, "int8_p50_ms": int8_ms, "speedup": fp32_ms / int8_ms if int8_ms else None}
        rows.append(row)
        print(f"  {target:<12} bound {bound}: test {reference:.4f} -> {test_acc:.4f} "
              f"({row['test_drop_pt']:+.2f} pt), {row['float_layers']} float layers, "
              f"{_times(row['speedup'])} faster, {seconds:.0f}s", flush=True)
    return rows


def avx2_accuracy(model: Path, data: Path) -> float:
    """Test accuracy of an OpenVINO model with oneDNN capped at AVX2: what a CPU without
    VNNI computes (the cap must be set before OpenVINO loads, hence a subprocess)."""
    import os
    import subprocess

    done = subprocess.run([sys.executable, "-m", "edgetl", "-q", "evaluate", str(model), "--data", str(data),
                           "--split", "test", "--json"], env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["accuracy"]


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio else "n/a"


def _fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def markdown(rows: list[dict]) -> str:
    lines = ["| model | target | --cpu | --max-drop | FP32 test acc | INT8 test acc | drop (pt) | INT8 acc, AVX2 kernels "
             "| layers in float | FP32 p50 ms | INT8 p50 ms | INT8 speed-up |", "|---" * 12 + "|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['target']} | {r['cpu']} | {r['max_drop']} | | | "
                         f"failed: {r['error'][:60]} | | | | | |")
            continue
        ms = (lambda v: f"{v:.2f}" if v else "n/a")  # noqa: E731
        lines.append(f"| {r['model']} | {r['target']}{' (QDQ in ORT)' if r['target'] == 'tensorrt' else ''} | "
                     f"{r['cpu'] if r['target'] != 'tensorrt' else '-'} | "
                     f"{r['max_drop'] if r['max_drop'] is not None else 'none'} | {r['fp32_test_accuracy']:.4f} | "
                     f"{r['int8_test_accuracy']:.4f} | {r['test_drop_pt']:.2f} | "
                     f"{_fraction(r['avx2_test_accuracy'])} | "
                     f"{r['float_layers']} | "
                     f"{ms(r['fp32_p50_ms'])} | {ms(r['int8_p50_ms'])} | "
                     f"{_times(r['speedup'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--resnet-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="lite0,resnet18")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    progress.set_quiet(True)
    work = Path(tempfile.mkdtemp(prefix="edgetl-quant-"))
    rows = []
    for name in args.models.split(","):
        size = 64 if name == "lite0" else args.resnet_size
        data = make_digits(work / f"digits{size}", size=size, overwrite=True)
        backbone, weights = ("efficientnet_lite0", "default") if name == "lite0" else ("resnet18", "none")
        rows += bench_model(name, backbone, data, work, size, args.epochs, args.threads, weights)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "cpu": cpu_name(), "machine": machine_info(), "threads": args.threads, "epochs": args.epochs,
              "build": build_fingerprint(), "python": sys.version.split()[0]}
    (args.out / "quantization.json").write_text(json.dumps(result, indent=2) + "\n")
    flags = ", ".join(result["machine"]["cpu_flags"])
    (args.out / "quantization.md").write_text(markdown(rows) + f"\n\nCPU: {result['cpu']} ({flags}), {args.threads} threads, "
                                                                 "batch 1.\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
