"""The reference detection.py compares edgetl's defaults with: a plain torchvision FCOS on
the packaged EfficientNet-Lite0 (ImageNet weights) with a 64-channel FPN (P3-P7, as
torchvision builds it), torchvision's own FCOS head (4 convolutions), every layer trained
with SGD as torchvision's detection references do (lr 0.01 for batch 8, momentum 0.9,
weight decay 1e-4, warm-up, steps at 2/3 and 8/9 of the epochs), horizontal flips, images
resized to the detection size by FCOS itself. What a user writes by hand from the
torchvision docs. Scored by the same library (pycocotools) on the same test split.

    python benchmarks/fcos_reference.py DATA [--epochs 20] [--size 320] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict

import numpy as np


def build(num_classes: int, size: int, channels: int = 64):
    import timm
    import torch
    from torchvision.models.detection import FCOS
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    from edgetl.backbones.vision import lite0_imagenet_model

    body = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2, 3, 4))
    full = lite0_imagenet_model().state_dict()
    body.load_state_dict({k: full[k] for k in body.state_dict()})

    class Backbone(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body
            self.fpn = FeaturePyramidNetwork(list(body.feature_info.channels()), channels,
                                             extra_blocks=LastLevelP6P7(channels, channels))
            self.out_channels = channels

        def forward(self, x):
            return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(self.body(x))))

    # Lite0's preprocessing, (x * 255 - 127) / 128, as FCOS's normalization of 0-1 images
    return FCOS(Backbone(), num_classes, min_size=size, max_size=size, image_mean=[127 / 255] * 3,
                image_std=[128 / 255] * 3, score_thresh=0.001, detections_per_img=100)


def _load(split):
    import torch
    from PIL import Image

    images = []
    for path in split.paths:
        with Image.open(path) as img:
            images.append(torch.from_numpy(np.asarray(img.convert("RGB"), np.float32) / 255).permute(2, 0, 1))
    return images


def train_and_score(data, epochs: int = 20, size: int = 320, threads: int = 2, batch: int = 8, seed: int = 0) -> dict:
    """Train the reference on DATA's train split; its test mAP (val when there is no test)."""
    import torch

    from edgetl.data.detection import open_detection
    from edgetl.task.detection import Detections, coco_map

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    data_set = open_detection(data)
    train = data_set.splits["train"]
    scored = data_set.splits.get("test") or data_set.splits["val"]
    model = build(len(data_set.classes), size)
    images, targets = _load(train), [{"boxes": torch.from_numpy(t.boxes).float(), "labels": torch.from_numpy(t.classes)}
                                     for t in train.targets]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    steps_per_epoch = -(-len(images) // batch)
    warmup = min(100, steps_per_epoch * epochs // 10)
    milestones = [int(epochs * 2 / 3) * steps_per_epoch, int(epochs * 8 / 9) * steps_per_epoch]

    def lr_at(step: int) -> float:
        factor = 0.1 ** sum(step >= m for m in milestones)
        return factor * (min(1.0, (step + 1) / warmup) if warmup else 1.0)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        total = 0.0
        order = rng.permutation(len(images))
        for start in range(0, len(order), batch):
            xs, ys = [], []
            for i in order[start:start + batch]:
                x, t = images[i], dict(targets[i])
                if rng.random() < 0.5:  # horizontal flip
                    width = x.shape[2]
                    x = x.flip(2)
                    b = t["boxes"].clone()
                    b[:, [0, 2]] = width - t["boxes"][:, [2, 0]]
                    t["boxes"] = b
                xs.append(x)
                ys.append(t)
            losses = model(xs, ys)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        print(f"reference epoch {epoch + 1}/{epochs}: loss {total / steps_per_epoch:.3f} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    train_seconds = time.perf_counter() - started
    model.eval()
    found = []
    with torch.inference_mode():
        test_images = _load(scored)
        for start in range(0, len(test_images), batch):
            for out in model(test_images[start:start + batch]):
                found.append(Detections(out["boxes"].numpy().astype(np.float32), out["scores"].numpy().astype(np.float32),
                                        out["labels"].numpy().astype(np.int64)))
    figures = coco_map(found, scored.targets, data_set.classes)
    return {"name": "torchvision FCOS (plain, full, SGD)", "epochs": epochs, "size": size, "train_seconds": train_seconds,
            "split": scored.name, "map": figures["map"], "map50": figures["map50"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(json.dumps(train_and_score(args.data, args.epochs, args.size, args.threads), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
