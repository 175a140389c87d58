"""Does `edgetl bench` measure what OpenVINO's own benchmark_app measures?

For each OpenVINO IR, edgetl's latency (the OpenVINO Runner, the bench harness's
`measure`) and benchmark_app's median latency are taken alternately, `--rounds` times,
on the same IR with the same thread count, batch, device and synchronous API, with
benchmark_app given the same compile config edgetl uses (INFERENCE_NUM_THREADS,
INFERENCE_PRECISION_HINT f32, the default LATENCY hint). Reported: the median of each and their ratio; the target is
edgetl p50 within 10% of benchmark_app's median.

Without IR arguments, two FP32 IRs are made first: a linear-probe EfficientNet-Lite0 on
digits at 64 px and at 224 px. Pass INT8 IRs (e.g. those of benchmarks/backends.py) to
compare them too.

    python benchmarks/vs_benchmark_app.py [model.xml ...] [--threads 2] [--rounds 9] [--seconds 2]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgetl.bench.latency import measure
from edgetl.core import progress
from edgetl.data.samples import validation_samples
from edgetl.runtime import open_runner
from edgetl.runtime.machine import library_versions, machine_info

TOLERANCE = 0.10


def benchmark_app_path() -> str:
    found = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if not Path(found).exists():
        sys.exit("benchmark_app not found: it ships with the openvino pip package (pip install openvino)")
    return found


def benchmark_app_median_ms(app: str, ir: Path, shape: list[int], threads: int, seconds: float, config: Path) -> float:
    cmd = [app, "-m", str(ir), "-d", "CPU", "-api", "sync", "-t", str(max(1, round(seconds))),
           "-load_config", str(config), "-data_shape", "[" + ",".join(map(str, shape)) + "]"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Median:\s+([\d.]+) (ms|us)", out)  # it switches to microseconds below 1 ms
    if not match:
        raise RuntimeError(f"no median latency in benchmark_app's output:\n{out[-2000:]}")
    return float(match.group(1)) / (1000 if match.group(2) == "us" else 1)


def compare(ir: Path, app: str, threads: int, rounds: int, seconds: float, work: Path) -> dict:
    config = work / "ov_config.json"
    # The config edgetl's OpenVINO Runner compiles with (threads, f32 inference precision);
    # the performance hint is left to its default (LATENCY on CPU) on both sides.
    import openvino as ov

    from edgetl.runtime.openvino_runner import compile_config

    settings = compile_config(ov.Core(), "CPU", "f32", threads)
    config.write_text(json.dumps({"CPU": {key: str(value) for key, value in settings.items()}}))
    with open_runner(ir, threads=threads) as runner:
        x = validation_samples(runner.card).x[:1]
        ours, theirs = [], []
        for i in range(rounds):  # alternate, so that a noisy neighbour hits both alike
            ours.append(measure(runner, x, warmup=50, iters=200, min_time_s=seconds).p50_ms)
            theirs.append(benchmark_app_median_ms(app, ir, list(x.shape), threads, seconds, config))
            print(f"  {ir.name} round {i + 1}: edgetl p50 {ours[-1]:.3f} ms, benchmark_app median {theirs[-1]:.3f} ms",
                  flush=True)
    ratios = [a / b for a, b in zip(ours, theirs)]
    return {"ir": str(ir), "input": list(x.shape), "precision": runner.card.precision, "edgetl_p50_ms": ours,
            "benchmark_app_median_ms": theirs, "ratio": statistics.median(ratios),  # median of per-round ratios
            "within_tolerance": abs(statistics.median(ratios) - 1) <= TOLERANCE}


def make_models(work: Path) -> list[Path]:
    from edgetl.data.digits import make_digits
    from edgetl.export import export_run
    from edgetl.finetune import finetune

    irs = []
    for size in (64, 224):
        data = make_digits(work / f"digits{size}", size=size)
        run = work / f"lite0-{size}"
        finetune(data, "efficientnet_lite0", run, strategy="linear-probe", epochs=2, input_size=size, seed=0)
        irs.append(export_run(run, run / "model.onnx", openvino=True).openvino)
    return irs


def markdown(rows: list[dict], threads: int) -> str:
    lines = ["| IR | input | precision | edgetl p50 ms | benchmark_app median ms | edgetl / benchmark_app |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {Path(r['ir']).parent.name}/{Path(r['ir']).name} | {'x'.join(map(str, r['input']))} | "
                     f"{r['precision']} | {statistics.median(r['edgetl_p50_ms']):.3f} | "
                     f"{statistics.median(r['benchmark_app_median_ms']):.3f} | {r['ratio']:.3f} |")
    return "\n".join(lines) + (f"\n\nSynchronous API, batch 1, {threads} threads, same compile config; "
                               f"median over alternating rounds. Target: within {TOLERANCE:.0%}.\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("irs", nargs="*", type=Path, help="OpenVINO IRs with an edgetl card (default: made here)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=int, default=2, help="measuring time per round and tool")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    progress.set_quiet(True)
    app = benchmark_app_path()
    work = Path(tempfile.mkdtemp(prefix="edgetl-vs-benchmark-app-"))
    irs = args.irs or make_models(work)
    rows = [compare(ir, app, args.threads, args.rounds, args.seconds, work) for ir in irs]
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "threads": args.threads, "rounds": args.rounds, "seconds": args.seconds,
              "machine": machine_info(), "versions": library_versions()}
    (args.out / "benchmark_app.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(rows, args.threads) + f"CPU: {result['machine']['cpu']}.\n"
    (args.out / "benchmark_app.md").write_text(table)
    print(table)
    return 0 if all(r["within_tolerance"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
