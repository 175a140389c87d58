"""Training throughput (images/s) of the real `finetune` loop, input pipeline included.

Writes the digits data set `--repeat` times over (real PNG files), then runs a full
fine-tune of the packaged EfficientNet-Lite0 and reports each epoch's images/s, as the
loop measures it: indexing the decoded uint8 cache, augmentation on the device, forward,
backward and optimizer step (bf16 autocast + channels-last on CUDA). The first epoch
includes warm-up (cuDNN autotuning), so the best later epoch is the figure.

    python benchmarks/throughput.py                       # CPU: 96 px, batch 64
    python benchmarks/throughput.py --input-size 224 --batch-size 256 --repeat 20   # GPU
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from edgetl.core import progress
from edgetl.data.digits import make_digits
from edgetl.finetune import finetune
from edgetl.runtime.machine import cpu_name


def replicate(src: Path, dst: Path, times: int) -> Path:
    """train/ copied `times` times (hard links where possible), val/ once."""
    for split_dir in src.iterdir():
        for cls in split_dir.iterdir():
            out = dst / split_dir.name / cls.name
            out.mkdir(parents=True, exist_ok=True)
            for f in cls.iterdir():
                for k in range(times if split_dir.name == "train" else 1):
                    target = out / f"{k}_{f.name}"
                    try:
                        target.hardlink_to(f)
                    except OSError:
                        shutil.copy(f, target)
    return dst




def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    ap.add_argument("--input-size", type=int, default=224 if gpu else 96)
    ap.add_argument("--batch-size", type=int, default=256 if gpu else 64)
    ap.add_argument("--repeat", type=int, default=20 if gpu else 2, help="copies of the training split")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    progress.set_quiet(True)
    work = Path(tempfile.mkdtemp(prefix="edgetl-throughput-"))
    digits = make_digits(work / "digits", size=args.input_size)
    data = replicate(digits, work / "data", args.repeat)
    t0 = time.perf_counter()
    r = finetune(data, "efficientnet_lite0", work / "run", strategy="full", epochs=args.epochs,
                 batch_size=args.batch_size, input_size=args.input_size, device=args.device, patience=args.epochs)
    total = time.perf_counter() - t0
    per_epoch = [h["images_per_second"] for h in r.history]
    device = r.card.source["device"]
    name = torch.cuda.get_device_name() if device.startswith("cuda") else cpu_name()
    result = {"benchmark": "throughput", "backbone": "efficientnet_lite0", "strategy": "full",
              "device": device, "device_name": name, "input_size": args.input_size, "batch_size": args.batch_size,
              "train_images": sum(r.card.source["train_counts"].values()), "images_per_second_by_epoch": per_epoch,
              "best_images_per_second": max(per_epoch[1:] or per_epoch), "total_seconds_incl_decode": total,
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "cuda" if device.startswith("cuda") else "cpu"
    (args.out / f"throughput-{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
