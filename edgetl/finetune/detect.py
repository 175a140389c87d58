"""Fine-tuning a detector (finetune/detector.py) on a detection data set: the photos
letterboxed once into the sample cache, box-aware augmentation (torchvision's v2
transforms: flips, scale and shift, colour), AdamW with warm-up and cosine decay, the
backbone frozen (linear-probe), trained whole (full), or its last stages (partial) or one
more stage per epoch (gradual); a moving average of the weights (`ema`, on by default) is
what is scored and kept; mAP on the val split after each epoch, the best epoch kept, early
stopping on it. Writes a run directory like a classifier's: model.pt, the
card (task detection), history.json."""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from edgetl.core import progress
from edgetl.core.card import ModelCard
from edgetl.core.errors import ConfigError
from edgetl.data.detection import open_detection
from edgetl.finetune.compute import TrainingCompute, training_compute
from edgetl.finetune.detector import Detector, build_pyramid
from edgetl.finetune.run import RunWriter
from edgetl.finetune.settings import FinetuneSettings
from edgetl.finetune.training import Distributed, resolve_device, seed_everything, set_torch_threads
from edgetl.modality.image import ImagePreprocessing
from edgetl.task.detection import DETECTION

log = logging.getLogger("edgetl")

DEFAULT_SIZE = 320  # an edge detector's input: small objects at 320 px are 8-pixel cells at stride 8
LITE0_NORMALIZATION = ((127 / 255,) * 3, (128 / 255,) * 3)


@dataclasses.dataclass
class DetectResult:
    out: Path
    card: ModelCard
    history: list[dict]
    best_epoch: int
    val_map: float


def detector_preprocessing(backbone: str, size: int, body) -> ImagePreprocessing:
    """Letterbox to `size`, normalized as the backbone was pretrained."""
    if backbone == "efficientnet_lite0":
        mean, std = LITE0_NORMALIZATION
    else:
        cfg = getattr(body, "pretrained_cfg", None) or {}
        mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    return ImagePreprocessing(size=(size, size), resize=size, crop="letterbox", mean=mean, std=std)


def _augment(hflip: bool):
    from torchvision.transforms import v2

    steps = [v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.75, 1.25), fill=114),
             v2.ColorJitter(0.3, 0.3, 0.3, 0.02)]
    if hflip:
        steps.insert(0, v2.RandomHorizontalFlip())
    return v2.Compose([*steps, v2.SanitizeBoundingBoxes(min_size=2)])


def _batch(cached, truths, rows, pre: ImagePreprocessing, augment, device) -> tuple[torch.Tensor, list[dict]]:
    """Images (normalized NCHW) and torchvision targets of `rows`, augmented when asked."""
    from torchvision import tv_tensors

    size = pre.size
    images, targets = [], []
    for i in rows:
        image = torch.from_numpy(np.ascontiguousarray(cached[int(i)])).permute(2, 0, 1)
        truth = truths[int(i)]
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(truth.boxes).reshape(-1, 4), format="XYXY",
                                         canvas_size=size)
        labels = torch.from_numpy(truth.classes)
        if augment is not None:
            image, target = augment(tv_tensors.Image(image), {"boxes": boxes, "labels": labels})
            boxes, labels = target["boxes"], target["labels"]
        images.append(pre.normalize(image.permute(1, 2, 0).numpy()))
        targets.append({"boxes": torch.as_tensor(boxes, dtype=torch.float32).to(device),
                        "labels": torch.as_tensor(labels, dtype=torch.int64).to(device)})
    return torch.from_numpy(np.stack(images)).to(device), targets


def _trainable(model: Detector, stages: list, strategy: str, epoch: int, unfreeze: int | None) -> int:
    """Which backbone stages train this epoch (the FPN and head always do); returns how many."""
    n = len(stages)
    if strategy == "linear-probe":
        k = 0
    elif strategy == "full":
        k = n
    elif strategy == "partial":
        k = min(n, unfreeze or 1)
    else:  # gradual: one more stage per epoch, from the last
        k = min(n, epoch, unfreeze or n)
    for i, stage in enumerate(stages):
        on = i >= n - k
        stage.requires_grad_(on)
        stage.train(on)
    return k


def _averaged(model: torch.nn.Module, steps_per_epoch: int):
    """An exponential moving average of the weights and BatchNorm statistics, as YOLOX and
    Ultralytics keep one, over about an epoch's steps (a few hundred steps in all on a
    small set, where their fixed 0.9998 would average nothing but the first weights); its
    decay grows from 0 over the first steps ((1 + n) / (10 + n)) so the random head's
    start fades quickly."""
    from torch.optim.swa_utils import AveragedModel

    decay = 1 - 1 / max(10, steps_per_epoch)

    def average(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
        d = min(decay, (1 + int(n)) / (10 + int(n)))
        return averaged * d + current * (1 - d)

    return AveragedModel(model, avg_fn=average, use_buffers=True)


def scores(model: Detector, cached, truths, labels: list[str], pre: ImagePreprocessing, compute: TrainingCompute,
           batch: int = 16):
    """The task's figures (mAP, mAP@0.5, per class) of the model on a decoded split, on
    `compute`'s device, layout and autocast."""
    model.eval()
    outs = []
    with torch.inference_mode(), compute.context():
        for start in range(0, len(cached), batch):
            x = torch.from_numpy(pre.normalize(np.asarray(cached[start:start + batch]))).to(compute.device)
            outs.append(model(compute.layout(x)).float().cpu().numpy())
    return DETECTION.score(np.concatenate(outs), truths, labels)


ESTIMATE_WORTH_IT = 1000  # image passes (train images x epochs) below which training takes a minute or two anyway


def _estimate(model: Detector, pyramid, train, n_val: int, pre: ImagePreprocessing, augment,
              compute: TrainingCompute, s: FinetuneSettings) -> tuple[str, float]:
    """How long training takes here, said before it starts (finetune/estimate.py), and the
    chosen strategy's seconds: a
    training step with every stage trainable and one with the backbone frozen (the neck
    and head still train), and a forward pass, timed on a copy of the model."""
    import copy

    from edgetl.finetune.estimate import TIMING_BATCH, all_strategies, said, time_per_sample

    twin = copy.deepcopy(model)
    rows = np.arange(min(TIMING_BATCH, len(train)))

    def step(frozen: bool):
        def call() -> None:
            twin.train()
            for p in twin.body.parameters():
                p.requires_grad_(not frozen)
            twin.body.train(not frozen)
            x, targets = _batch(train.cached, train.truths, rows, pre, augment, compute.device)
            with compute.context():
                loss = sum(twin.losses(compute.layout(x), targets).values())
            loss.float().backward()
            twin.zero_grad(set_to_none=True)
        return call

    def forward() -> None:
        twin.eval()
        with torch.inference_mode(), compute.context():
            twin(compute.layout(torch.from_numpy(pre.normalize(np.asarray(train.cached[:len(rows)]))).to(compute.device)))

    times = time_per_sample({"step": step(False), "head_step": step(True), "forward": forward}, len(rows),
                            compute.device, repeats=1)
    found = all_strategies(s.strategy, s.epochs, len(train), n_val, len(pyramid.stages), s.unfreeze,
                           features_once=False, **times)
    return said(s.strategy, s.epochs, len(train), found), found[s.strategy]


def finetune_detector(data, backbone: str, out, settings: FinetuneSettings, overwrite: bool = False) -> DetectResult:
    from edgetl.data.labelled import labelled_split

    s = settings
    if s.strategy not in ("linear-probe", "full", "partial", "gradual"):
        raise ConfigError(f"unknown strategy {s.strategy}", hint="linear-probe, full, partial or gradual")
    threads = set_torch_threads(s.threads)
    seed_everything(s.seed)
    started = time.perf_counter()
    dataset = open_detection(data, s.val_split, s.seed)
    progress.info(f"detection data {dataset.describe()}")
    size = s.input_size or DEFAULT_SIZE
    pyramid = build_pyramid(backbone, s.weights)
    pre = detector_preprocessing(backbone, size, pyramid.body)
    writer = RunWriter(out, overwrite, {"data set": data})
    card = ModelCard(labels=list(dataset.classes), modality="image", task="detection", preprocessing=pre.to_dict(),
                     input=pre.input_spec())
    try:
        device = resolve_device(s.device, Distributed())  # one process: detectors train on one device
        model = Detector(pyramid, len(dataset.classes), size).to(device)
        compute = training_compute(device, images=True, channels_last=s.channels_last, amp=s.amp)
        compute.prepare(model)
        scaler = torch.amp.GradScaler("cuda", enabled=compute.needs_scaler)
        progress.info(f"training on {device} ({compute.describe()})")
        train = labelled_split(data, "train", card)
        val = labelled_split(data, "val", card)
        if train.skipped or val.skipped:
            log.warning("skipped %d unreadable images", train.skipped + val.skipped)
        augment = _augment(s.image.hflip)
        # named_parameters lists each parameter once, under the first name it has: body.*, fpn.*, head.*
        head_params = [p for n, p in model.named_parameters() if not n.startswith("body.")]
        body_params = list(model.body.parameters())
        opt = torch.optim.AdamW([{"params": head_params, "lr": s.lr},
                                 {"params": body_params, "lr": s.lr * s.backbone_lr_scale}],
                                weight_decay=s.weight_decay)
        estimated = None
        if not progress.is_quiet() and len(train) * s.epochs >= ESTIMATE_WORTH_IT:
            text, estimated = _estimate(model, pyramid, train, len(val), pre, augment, compute, s)
            progress.info(text)
        steps_per_epoch = max(1, math.ceil(len(train) / s.batch_size))
        total, warmup = s.epochs * steps_per_epoch, min(steps_per_epoch, s.epochs * steps_per_epoch // 10 + 1)
        base = [g["lr"] for g in opt.param_groups]
        ema = _averaged(model, steps_per_epoch) if s.ema else None
        rng = np.random.default_rng(s.seed)
        history: list[dict] = []
        best: tuple[float, int, dict] | None = None
        step = 0
        for epoch in range(1, s.epochs + 1):
            model.train()
            trained = _trainable(model, pyramid.stages, s.strategy, epoch, s.unfreeze)
            order = rng.permutation(len(train))
            losses = []
            epoch_started = time.perf_counter()
            for start in range(0, len(order), s.batch_size):
                rows = order[start:start + s.batch_size]
                x, targets = _batch(train.cached, train.truths, rows, pre, augment, device)
                factor = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) /
                                                                                    max(1, total - warmup)))
                for g, lr in zip(opt.param_groups, base):
                    g["lr"] = lr * factor
                with compute.context():
                    loss = sum(model.losses(compute.layout(x), targets).values()).float()
                opt.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                losses.append(float(loss.detach()))
                if ema is not None:
                    ema.update_parameters(model)
                step += 1
            kept = model if ema is None else ema.module
            figures = scores(kept, val.cached, val.truths, card.labels, pre, compute)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_map": figures.value,
                            "val_map50": figures.details["map50"], "trainable_stages": trained,
                            "seconds": time.perf_counter() - epoch_started})
            progress.info(f"epoch {epoch}/{s.epochs}: loss {np.mean(losses):.3f}, val mAP {figures.value:.3f} "
                          f"(mAP@0.5 {figures.details['map50']:.3f}), {time.perf_counter() - epoch_started:.0f} s")
            value = figures.value if figures.value == figures.value else -1.0  # NaN (no boxes) ranks last
            if best is None or value > best[0]:
                best = (value, epoch, {k: v.detach().clone() for k, v in kept.state_dict().items()})
            elif epoch - best[1] >= s.patience:
                progress.info(f"early stop: no better val mAP for {s.patience} epochs")
                break
        assert best is not None
        model.load_state_dict(best[2])
        # the card's figure in f32, as the exported model computes (bf16 autocast only trained)
        final = scores(model, val.cached, val.truths, card.labels, pre, dataclasses.replace(compute, autocast=None))
        card.source = {"backbone": backbone, "weights": s.weights, "strategy": s.strategy,
                       "stages": len(pyramid.stages), "data": str(Path(data).resolve()), "format": dataset.format,
                       "config": s.to_dict(), "device": str(device), "compute": compute.to_dict(), "threads": threads,
                       "detector": {"size": size, "channels": model.channels, "head_convs": model.head_convs, "head": "fcos",
                                    "ema": bool(s.ema)},
                       "train_counts": {"images": len(train), "boxes": int(sum(len(t) for t in train.truths))}}
        card.metrics = {"val_map": final.value, "val_map50": final.details["map50"],
                        "val_per_class": final.details["per_class"], "best_epoch": best[1],
                        "epochs_run": len(history), "train_seconds": time.perf_counter() - started,
                        "estimated_seconds": estimated}
        writer.save_model(model.state_dict())
        writer.save_history(history)
        writer.save_card(card)
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    return DetectResult(writer.out, card, history, best[1], final.value)


__all__ = ["DetectResult", "detector_preprocessing", "finetune_detector"]
