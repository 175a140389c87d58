"""The README's results section: one digits fine-tune of EfficientNet-Lite0 on every
backend, measured by `edgetl bench` in one run.

Fine-tunes the packaged EfficientNet-Lite0 on scikit-learn's digits (64 px, as the demo),
exports ONNX and OpenVINO IR, quantizes for OpenVINO, ONNX Runtime and TensorRT (QDQ,
evaluated on ONNX Runtime) with --max-drop 0.01, then benchmarks the run directory
(PyTorch + every exported file) on the test split, which neither training, calibration
nor the drop bound saw. Every backend computes in f32; OpenVINO is also measured in bf16
as rows of their own (failed rows on CPUs without bf16). Writes
results/backends.{json,csv,md,png}.

    python benchmarks/backends.py [--epochs 6] [--threads 2] [--batch 1,8] [--iters 200] [--rounds 5]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from edgetl import bench
from edgetl.core import progress
from edgetl.data.digits import make_digits
from edgetl.export import export_run
from edgetl.finetune import finetune
from edgetl.quantize import quantize


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--precision-hint", default="bf16",
                    help="extra OpenVINO precisions measured as rows of their own (comma-separated; '' for none)")
    ap.add_argument("--run", type=Path, help="bench this finished run instead of making one")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    progress.set_quiet(True)
    run = args.run
    if run is None:
        work = Path(tempfile.mkdtemp(prefix="edgetl-backends-"))
        data = make_digits(work / "digits", size=64)
        run = finetune(data, "efficientnet_lite0", work / "run", strategy="full", epochs=args.epochs, input_size=64,
                       hflip=False, seed=0).out
        fp32 = export_run(run, run / "model.onnx", openvino=True)
        for target in ("openvino", "onnxruntime", "tensorrt"):
            quantize(fp32.onnx, target, max_drop=0.01)
    report = bench([run], split="test", batches=[int(b) for b in args.batch.split(",")], threads=args.threads,
                   iters=args.iters, warmup=30, rounds=args.rounds,
                   precision_hints=[h for h in args.precision_hint.split(",") if h])
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out / "backends.json")
    report.write_csv(args.out / "backends.csv")
    report.plot(args.out / "backends.png")
    m = report.machine
    notes = "".join(f"\n- {r.name} on {r.backend}: {r.note}" for r in report.rows if r.note and r.batch == 1)
    text = (report.markdown() + f"\n\nMachine: {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['cores']} cores, "
            f"{m['memory_gib']} GiB; {args.threads} threads; latency pooled over {args.rounds} rounds of "
            f"{args.iters} calls per cell, the cells in turn; test split of digits ({report.rows[0].n} images); "
            f"drop and agreement against the PyTorch FP32 model of the same run.{notes}\n")
    (args.out / "backends.md").write_text(text)
    report.print_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
