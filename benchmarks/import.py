"""A model trained elsewhere, brought in with `edgetl import`: what edgetl gives it
against what a user gets with OpenVINO's own tools on the same model and data.

The "notebook": the packaged ImageNet EfficientNet-Lite0 (timm), its classifier replaced
and trained by hand on the digits' training split (frozen features, a linear head, Adam),
exported with plain `torch.onnx.export`. Then:

- edgetl: `import` (labels, the notebook's preprocessing, scored on val), INT8 for
  openvino, onnxruntime and tensorrt (QDQ, run in ONNX Runtime here) within --max-drop,
  `bench` on the test split (accuracy and latency, batch 1);
- by hand: OpenVINO's `convert_model` and a plain `nncf.quantize` (300 calibration images,
  default preset, no accuracy control) of the same ONNX, scored on the test split with the
  notebook's own preprocessing; `benchmark_app` (sync API, batch 1, the same threads and
  f32 precision hint) times the FP32 IR, NNCF's INT8 IR and edgetl's INT8 IR.

    python benchmarks/import.py [--size 64] [--threads 1] [--seconds 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from vs_benchmark_app import benchmark_app_median_ms, benchmark_app_path

LABELS = [str(d) for d in range(10)]


def read_split(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The notebook's preprocessing: PIL, resized to size x size, (x*255 - 127) / 128, NCHW."""
    from PIL import Image

    xs, ys = [], []
    for y, label in enumerate(LABELS):
        for f in sorted((folder / label).iterdir()):
            img = Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            xs.append(np.asarray(img, np.float32))
            ys.append(y)
    x = (np.stack(xs) - 127) / 128
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32), np.asarray(ys)


def notebook_onnx(data: Path, size: int, out: Path, threads: int) -> tuple[Path, float]:
    """A linear head on frozen Lite0 features, trained and exported by hand; training seconds."""
    import torch

    from edgetl.backbones.vision import lite0_imagenet_model  # the packaged weights, as timm loads them

    torch.set_num_threads(threads)
    started = time.perf_counter()
    model = lite0_imagenet_model().eval()
    x, y = read_split(data / "train", size)
    with torch.no_grad():
        feats = torch.cat([model.forward_head(model.forward_features(torch.from_numpy(x[i:i + 64])), pre_logits=True)
                           for i in range(0, len(x), 64)])
    head = torch.nn.Linear(feats.shape[1], len(LABELS))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    targets = torch.from_numpy(y)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(feats), targets).backward()
        opt.step()
    model.classifier = head
    model.eval()
    torch.onnx.export(model, (torch.randn(1, 3, size, size),), str(out), input_names=["pixel_values"],
                      output_names=["logits"], dynamic_axes={"pixel_values": {0: "n"}, "logits": {0: "n"}},
                      dynamo=False)
    return out, time.perf_counter() - started


def plain_nncf(onnx_path: Path, data: Path, size: int, out: Path, samples: int = 300) -> Path:
    """What OpenVINO's docs show: convert, nncf.quantize on calibration images, save."""
    import nncf
    import openvino as ov

    x, _ = read_split(data / "train", size)
    picked = np.random.default_rng(0).permutation(len(x))[:samples]
    model = nncf.quantize(ov.convert_model(str(onnx_path)), nncf.Dataset([x[i:i + 1] for i in picked]))
    ov.save_model(model, str(out))
    return out


def ov_accuracy(ir: Path, x: np.ndarray, y: np.ndarray, threads: int) -> float:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(ir), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    scores = np.concatenate([compiled(x[i:i + 1])[0] for i in range(len(x))])
    return float((scores.argmax(1) == y).mean())


def app_latency(app: str, ir: Path, size: int, threads: int, seconds: float, work: Path, rounds: int) -> float:
    config = work / "ov_config.json"
    config.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(threads), "INFERENCE_PRECISION_HINT": "f32"}}))
    return statistics.median(benchmark_app_median_ms(app, ir, [1, 3, size, size], threads, seconds, config)
                             for _ in range(rounds))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    import edgetl
    from edgetl.core import progress
    from edgetl.data.digits import make_digits
    from edgetl.runtime.machine import library_versions, machine_info

    progress.set_quiet(True)
    work = Path(tempfile.mkdtemp(prefix="edgetl-import-bench-"))
    data = make_digits(work / "digits", size=args.size)
    onnx_path, train_s = notebook_onnx(data, args.size, work / "notebook.onnx", args.threads)

    started = time.perf_counter()
    imported = edgetl.import_model(onnx_path, work / "imported", labels=",".join(LABELS), mean="127", std="128",
                                   pixel_range=255, resize="stretch", data=str(data), threads=args.threads)
    import_s = time.perf_counter() - started
    quantized = {}
    for target in ("openvino", "onnxruntime", "tensorrt"):
        r = edgetl.quantize(work / "imported" / "model.onnx", target, max_drop=args.max_drop, threads=args.threads)
        quantized[target] = {"model": r.out.name, "fp32_val": r.fp32_accuracy, "int8_val": r.int8_accuracy,
                             "drop_pt": 100 * r.drop, "float_layers": len(r.float_layers), "seconds": r.seconds}
    report = edgetl.bench([work / "imported"], data=str(data), split="test", batches=(1,), threads=args.threads)
    rows = [{"artifact": Path(r.artifact).name, "backend": r.backend, "precision": r.precision,
             "test_accuracy": r.accuracy, "p50_ms": r.p50_ms} for r in report.rows]

    x_test, y_test = read_split(data / "test", args.size)
    nncf_ir = plain_nncf(onnx_path, data, args.size, work / "nncf.int8.xml")
    app = benchmark_app_path()
    by_hand = {
        "fp32_ir": {"test_accuracy": ov_accuracy(work / "imported" / "model.xml", x_test, y_test, args.threads)},
        "nncf_plain_int8": {"test_accuracy": ov_accuracy(nncf_ir, x_test, y_test, args.threads)},
        "edgetl_int8_ir": {"test_accuracy": ov_accuracy(work / "imported" / "model.int8.xml", x_test, y_test,
                                                        args.threads)},
    }
    for name, ir in (("fp32_ir", work / "imported" / "model.xml"), ("nncf_plain_int8", nncf_ir),
                     ("edgetl_int8_ir", work / "imported" / "model.int8.xml")):
        by_hand[name]["benchmark_app_median_ms"] = app_latency(app, ir, args.size, args.threads, args.seconds, work,
                                                               args.rounds)
    result = {"size": args.size, "threads": args.threads, "max_drop": args.max_drop, "train_seconds": train_s,
              "import_seconds": import_s, "import_val_accuracy": imported.accuracy, "quantize": quantized,
              "bench": rows, "by_hand": by_hand, "machine": machine_info(), "versions": library_versions()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "import.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    lines = ["| model | backend | test accuracy | p50 ms (edgetl bench) | benchmark_app median ms |", "|---|---|---|---|---|"]
    app_ms = {"model.xml": by_hand["fp32_ir"]["benchmark_app_median_ms"],
              "model.int8.xml": by_hand["edgetl_int8_ir"]["benchmark_app_median_ms"]}
    for r in rows:
        ms = app_ms.get(r["artifact"]) if r["backend"] == "openvino" else None
        lines.append(f"| {r['artifact']} ({r['precision']}) | {r['backend']} | {100 * r['test_accuracy']:.1f}% | "
                     f"{r['p50_ms']:.3f} | {'-' if ms is None else f'{ms:.3f}'} |")
    lines.append(f"| plain nncf.quantize IR (int8) | openvino | {100 * by_hand['nncf_plain_int8']['test_accuracy']:.1f}% "
                 f"| - | {by_hand['nncf_plain_int8']['benchmark_app_median_ms']:.3f} |")
    table = "\n".join(lines) + (f"\n\n{args.size} px, batch 1, {args.threads} thread(s); CPU: {result['machine']['cpu']}."
                                f" Import {import_s:.1f} s; INT8 drops on val (pt): "
                                + ", ".join(f"{t} {q['drop_pt']:.2f} ({q['float_layers']} in float)"
                                            for t, q in quantized.items()) + ".\n")
    (args.out / "import.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
