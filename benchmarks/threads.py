"""Which thread count is fastest on a machine that is busy with other work.

EfficientNet-Lite0 at 224 px, batch 1, in torch and in ONNX Runtime, timed with each
thread count from 1 to the number of usable cores: once on the idle machine and once
while other processes keep all but one core busy (a spinning process per core, as a
second job, a CI neighbour or a camera pipeline would). The ratio of each count to the
fastest one says what a default costs; edgetl's default is half the usable cores
(edgetl/core/threads.py).

    python benchmarks/threads.py [--iters 30] [--out results/threads-avx2.json]

`--training` times what a training command does instead, on the idle machine: one epoch
of a full fine-tune and a linear probe of Lite0 at 160 px on the built-in digits (1,077
training images), each thread count in its own process on a cold cache, the counts
alternated over rounds (results in threads-training.json).

    python benchmarks/threads.py --training [--rounds 2]

`--passive` runs the inference comparison with waiting threads that sleep instead of
spinning (OpenMP's `OMP_WAIT_POLICY=PASSIVE` for torch, ONNX Runtime's
`session.intra_op.allow_spinning=0`), into threads-passive.json: whether a second thread
stops costing so much beside other work.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def _median_ms(fn, iters: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def training(rounds: int, out: Path) -> int:
    """Wall seconds of a full fine-tune epoch and of a probe per thread count (idle machine)."""
    import os
    import subprocess

    from edgetl.core.threads import default_threads, usable_cores
    from edgetl.runtime.machine import machine_info

    work = Path(tempfile.mkdtemp(prefix="edgetl-threads-"))
    edgetl = [sys.executable, "-m", "edgetl", "-q"]
    subprocess.run([*edgetl, "data", "digits", str(work / "digits"), "--size", "64"], check=True)
    strategies = {"full fine-tune (1 epoch)": ["--strategy", "full", "--epochs", "1"],
                  "linear probe": ["--strategy", "linear-probe"]}
    rows = []
    for r in range(rounds):
        for threads in range(1, usable_cores() + 1):
            for name, options in strategies.items():
                env = {**os.environ, "EDGETL_CACHE_DIR": str(work / f"cache-{r}-{threads}-{len(rows)}")}
                started = time.perf_counter()
                subprocess.run([*edgetl, "finetune", str(work / "digits"), "--backbone", "efficientnet_lite0",
                                "--input-size", "160", "--threads", str(threads), "--out", str(work / "run"),
                                "--overwrite", *options], env=env, check=True, stdout=subprocess.DEVNULL)
                rows.append({"stage": name, "threads": threads, "round": r, "wall_s": time.perf_counter() - started})
                print(f"round {r}  {threads} threads  {name:<26} {rows[-1]['wall_s']:6.1f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "default_threads": default_threads(), "usable_cores": usable_cores(),
                               "machine": machine_info(), "load": "idle"}, indent=2) + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--training", action="store_true", help="time a fine-tune epoch and a probe instead")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--passive", action="store_true", help="threads that wait sleep instead of spinning")
    args = ap.parse_args()
    if args.passive:  # read by OpenMP when torch loads it, so before the import below
        import os

        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    results = Path(__file__).parent / "results"
    if args.training:
        return training(args.rounds, args.out or results / "threads-training.json")
    args.out = args.out or results / ("threads-passive.json" if args.passive else "threads.json")
    import numpy as np
    import onnxruntime as ort
    import torch

    from edgetl.backbones import build_backbone
    from edgetl.core.threads import default_threads, usable_cores
    from edgetl.runtime.machine import machine_info

    bb = build_backbone("efficientnet_lite0", "default")
    model = bb.features.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 224, 224), np.float32))
    onnx_path = Path(tempfile.mkdtemp()) / "lite0.onnx"
    torch.onnx.export(model, (x,), str(onnx_path), input_names=["input"], dynamo=False)
    cores = usable_cores()
    rows = []
    for load in ("idle", "busy"):
        stop = multiprocessing.Event()
        spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(cores - 1 if load == "busy" else 0)]
        for p in spinners:
            p.start()
        try:
            for n in range(1, cores + 1):
                torch.set_num_threads(n)
                with torch.no_grad():
                    t_ms = _median_ms(lambda: model(x), args.iters)
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = n, 1
                if args.passive:
                    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
                o_ms = _median_ms(lambda s=session: s.run(None, {"input": x.numpy()}), args.iters)
                rows.append({"load": load, "threads": n, "torch_ms": t_ms, "onnxruntime_ms": o_ms})
                print(f"{load:>4}  {n} threads  torch {t_ms:7.1f} ms  onnxruntime {o_ms:7.1f} ms", flush=True)
        finally:
            stop.set()
            for p in spinners:
                p.join()
    result = {"rows": rows, "default_threads": default_threads(), "usable_cores": cores, "machine": machine_info(),
              "busy": f"{cores - 1} spinning process(es)",
              "waiting_threads": "sleep (OMP_WAIT_POLICY=PASSIVE, allow_spinning=0)" if args.passive else "library default"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
