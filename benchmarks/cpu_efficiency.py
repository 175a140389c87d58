"""Where the CPU time goes, per stage: user and kernel (sys) seconds, minor page faults,
peak RSS and wall time of each command, under each EDGETL_MALLOC choice (core/allocator.py):
the system's allocator as it comes (`system`), torch's tensors on transparent huge pages
(`hugepages`, the default) and glibc told to keep freed memory (`keep`).

Each stage runs as its own process on a cold cache, under each choice back to back (their
order rotated from stage to stage and round to round), so a busy neighbour hits them alike;
the figures are medians over rounds.

    python benchmarks/cpu_efficiency.py [--size 224] [--rounds 2] [--threads 1]

`--layouts` measures training throughput instead: images per second of a training epoch
with the memory layout and autocast as before (NCHW, f32) against edgetl's choice
(finetune/compute.py: channels-last, bf16 where the CPU has it), EfficientNet-Lite0 at 160
and 224 px, full and gradual (its first epoch trains the head alone, its second the last
stage too), each run its own process, the two in turn; results in cpu_layouts.json/md.

    python benchmarks/cpu_efficiency.py --layouts [--per-class 40] [--rounds 2] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EDGETL = [sys.executable, "-m", "edgetl", "-q"]
RESULTS = Path(__file__).parent / "results"
CHOICES = ("system", "hugepages", "keep")  # EDGETL_MALLOC, core/allocator.py


def measure(cmd: list[str], env: dict) -> dict:
    """One command's resource use, read from wait4 (the child's own figures)."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    error = child.stderr.read().decode()[-400:]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {error}")
    return {"wall_s": time.perf_counter() - started, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "minor_faults": usage.ru_minflt, "peak_rss_mb": usage.ru_maxrss / 1024}


def stages(work: Path, data: Path, size: int, threads: str) -> list[tuple[str, list[str]]]:
    run, full = work / "probe", work / "full"
    image = sorted((data / "test" / "3").iterdir())[:40]
    return [
        ("probe", ["finetune", str(data), "--backbone", "efficientnet_lite0", "--strategy", "linear-probe",
                   "--input-size", str(size), "--threads", threads, "--out", str(run), "--overwrite"]),
        ("full fine-tune (1 epoch)", ["finetune", str(data), "--backbone", "efficientnet_lite0", "--strategy", "full",
                                      "--epochs", "1", "--input-size", str(size), "--threads", threads,
                                      "--out", str(full), "--overwrite"]),
        ("export", ["export", str(run), "--openvino", "--threads", threads, "--overwrite"]),
        ("quantize openvino", ["quantize", str(run / "model.onnx"), "--target", "openvino", "--threads", threads,
                               "--overwrite"]),
        ("quantize onnxruntime", ["quantize", str(run / "model.onnx"), "--target", "onnxruntime", "--threads",
                                  threads, "--overwrite"]),
        ("evaluate", ["evaluate", str(run / "model.onnx"), "--data", str(data), "--split", "test", "--threads",
                      threads]),
        ("bench", ["bench", str(run), "--data", str(data), "--split", "test", "--iters", "50", "--threads", threads]),
        ("predict (40 photos)", ["predict", str(run / "model.int8.onnx"), *map(str, image), "--threads", threads]),
    ]


TRAIN_ONE = """
import json, sys
import edgetl
data, out, size, strategy, threads, per_class, chosen = sys.argv[1:8]
options = {} if chosen == "1" else {"channels_last": False, "amp": False}
edgetl.finetune(data, "efficientnet_lite0", out, overwrite=True, strategy=strategy, epochs=2, input_size=int(size),
                threads=int(threads), limit_per_class=int(per_class), batch_size=32, **options)
card = json.load(open(out + "/edgetl.json"))
history = json.load(open(out + "/history.json"))
print(json.dumps({"images_per_second": [h["images_per_second"] for h in history],
                  "val_accuracy": card["metrics"]["val_accuracy"], "compute": card["source"]["compute"]}))
"""


def _finish(page: Path, table: str, work: Path) -> int:
    """The table beside the JSON and on stdout; the work folder removed."""
    page.write_text(table)
    print(table)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def layouts(args) -> int:
    """Training epochs as before (NCHW, f32) against edgetl's layout and autocast."""
    from edgetl.runtime.machine import library_versions, machine_info

    work = Path(tempfile.mkdtemp(prefix="edgetl-cpu-layouts-"))
    data = work / "digits"
    subprocess.run([*EDGETL, "data", "digits", str(data), "--size", "224"], check=True)
    found: dict[tuple, dict[str, list[dict]]] = {}
    for r in range(args.rounds):
        for size in (160, 224):
            for strategy in ("full", "gradual"):
                for chosen in (("0", "1") if r % 2 == 0 else ("1", "0")):
                    env = {**os.environ, "EDGETL_CACHE_DIR": str(work / "cache")}
                    out = subprocess.run([sys.executable, "-c", TRAIN_ONE, str(data), str(work / "run"), str(size),
                                          strategy, args.threads, str(args.per_class), chosen], env=env,
                                         capture_output=True, text=True, check=True).stdout
                    got = json.loads(out.strip().splitlines()[-1])
                    found.setdefault((size, strategy), {}).setdefault(chosen, []).append(got)
                    print(f"round {r + 1} {size} px {strategy} {'chosen' if chosen == '1' else 'before'}: "
                          f"{got['images_per_second']} images/s, val {got['val_accuracy']:.3f}", flush=True)
    rows = []
    for (size, strategy), by in found.items():
        med = {c: [statistics.median(run["images_per_second"][e] for run in runs) for e in range(2)]
               for c, runs in by.items()}
        rows.append({"size": size, "strategy": strategy, "before_images_per_second": med["0"],
                     "chosen_images_per_second": med["1"], "ratio": [a / b for a, b in zip(med["1"], med["0"])],
                     "val_accuracy_before": statistics.median(r["val_accuracy"] for r in by["0"]),
                     "val_accuracy_chosen": statistics.median(r["val_accuracy"] for r in by["1"]),
                     "compute": by["1"][0]["compute"]})
    result = {"threads": args.threads, "per_class": args.per_class, "rounds": args.rounds, "rows": rows,
              "machine": machine_info(), "versions": library_versions()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_layouts.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| input | strategy | epoch | images/s before (NCHW, f32) | images/s now | ratio | val acc before -> now |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        for e in range(2):
            lines.append(f"| {row['size']} px | {row['strategy']} | {e + 1} | {row['before_images_per_second'][e]:.1f} | "
                         f"{row['chosen_images_per_second'][e]:.1f} | {row['ratio'][e]:.2f}x | "
                         f"{row['val_accuracy_before']:.3f} -> {row['val_accuracy_chosen']:.3f} |")
    compute = rows[0]["compute"]
    table = "\n".join(lines) + (
        f"\n\nNow: {compute['memory_format']}, autocast {compute['autocast']}. Digits, {args.per_class} training "
        f"photos per class, batch 32, {args.threads} thread(s), medians of {args.rounds} rounds; CPU: "
        f"{result['machine']['cpu']} ({', '.join(result['machine'].get('cpu_flags') or [])}).\n")
    return _finish(args.out / "cpu_layouts.md", table, work)


def _clean_env() -> dict[str, str]:
    """This process's environment without what importing edgetl here set for torch: each
    child applies its own EDGETL_MALLOC."""
    return {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}


def _each(row: dict, key: str, form: str, scale: float = 1.0) -> str:
    """One figure under every choice, in CHOICES' order."""
    return " / ".join(format(row[c][key] / scale, form) for c in CHOICES)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--layouts", action="store_true", help="training throughput by memory layout and autocast")
    ap.add_argument("--per-class", type=int, default=40, help="--layouts: training photos per class")
    args = ap.parse_args()
    if args.layouts:
        return layouts(args)
    from edgetl.runtime.machine import library_versions, machine_info

    work = Path(tempfile.mkdtemp(prefix="edgetl-cpu-efficiency-"))
    data = work / "digits"
    subprocess.run([*EDGETL, "data", "digits", str(data), "--size", str(args.size)], check=True)
    figures: dict[str, dict[str, list[dict]]] = {}
    for r in range(args.rounds):
        for i, (name, command) in enumerate(stages(work, data, args.size, args.threads)):
            for choice in CHOICES[(r + i) % 3:] + CHOICES[:(r + i) % 3]:  # a stage's choices back to back
                cache = work / "cache"
                shutil.rmtree(cache, ignore_errors=True)  # every stage on a cold cache
                env = {**_clean_env(), "EDGETL_MALLOC": choice, "EDGETL_CACHE_DIR": str(cache)}
                got = measure([*EDGETL, *command], env)
                figures.setdefault(name, {}).setdefault(choice, []).append(got)
                print(f"round {r + 1} {choice:>9} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in got.items()),
                      flush=True)
    rows = []
    for name, by in figures.items():
        med = {c: {k: statistics.median(m[k] for m in runs) for k in runs[0]} for c, runs in by.items()}
        rows.append({"stage": name, **{c: med[c] for c in med},
                     "sys_share": {c: med[c]["sys_s"] / (med[c]["user_s"] + med[c]["sys_s"]) for c in med},
                     "wall_ratio": {c: med["system"]["wall_s"] / med[c]["wall_s"] for c in med},
                     "fault_ratio": {c: med["system"]["minor_faults"] / max(1, med[c]["minor_faults"]) for c in med},
                     "rss_ratio": {c: med[c]["peak_rss_mb"] / med["system"]["peak_rss_mb"] for c in med}})
    result = {"size": args.size, "threads": args.threads, "rounds": args.rounds, "rows": rows,
              "machine": machine_info(), "versions": library_versions()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_efficiency.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| stage | sys share: system / hugepages / keep | minor faults (M) | wall s | peak RSS MB |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['stage']} | {' / '.join(format(row['sys_share'][c], '.0%') for c in CHOICES)} | "
                     f"{_each(row, 'minor_faults', '.2f', 1e6)} | {_each(row, 'wall_s', '.1f')} | "
                     f"{_each(row, 'peak_rss_mb', '.0f')} |")
    table = "\n".join(lines) + (f"\n\nDigits at {args.size} px (1,797 photos), {args.threads} thread(s), medians of "
                                f"{args.rounds} rounds, cold cache; CPU: {result['machine']['cpu']} "
                                f"({', '.join(result['machine'].get('cpu_flags') or [])}).\n")
    return _finish(args.out / "cpu_efficiency.md", table, work)


if __name__ == "__main__":
    sys.exit(main())
