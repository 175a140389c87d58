"""`finetune()`: one fine-tuning job as a short sequence of named steps.

prepare (settings, data, backbone; every check before any work) -> decode (each split
once, on the training device) -> train (one training, or the candidates of domain
adaptation) -> write (checkpoint, history, curves and the run's card, built in card.py,
committed atomically). The training loop itself is finetune/loop.py.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch

from edgetl import modality as modalities
from edgetl.backbones import Backbone, build_backbone, find_family
from edgetl.core import progress
from edgetl.core.card import ModelCard, run_card
from edgetl.core.errors import ConfigError, DataError
from edgetl.core.outputs import check_output
from edgetl.data.folders import DatasetSplits, Split, open_folder, open_unlabelled
from edgetl.data.noise import SILENCE, add_silence_class, wants_silence_class
from edgetl.finetune.checkpoint import Checkpoints, folder_for, identity_of
from edgetl.finetune.compute import TrainingCompute, training_compute
from edgetl.finetune.curves import plot_history
from edgetl.finetune.hooks import TrainingHooks
from edgetl.finetune.inputs import training_input
from edgetl.finetune.loop import Trainer
from edgetl.finetune.model import Classifier
from edgetl.finetune.run import CURVES, RunWriter
from edgetl.finetune.settings import FinetuneSettings
from edgetl.finetune.strategies import check_strategy
from edgetl.finetune.training import (
    Distributed,
    SampleSource,
    as_source,
    decode_cached,
    decode_unlabelled,
    resolve_device,
    seed_everything,
    set_torch_threads,
)

log = logging.getLogger("edgetl")


# The gradient loop's options, which a linear probe (finetune/probe.py) does not use.
PROBE_IGNORES = ("lr", "epochs", "batch_size", "weight_decay", "label_smoothing", "patience")


@dataclasses.dataclass
class RunResult:
    out: Path
    card: ModelCard | None  # None on the other processes of a distributed run
    history: list[dict]
    best_epoch: int
    val_accuracy: float

    @property
    def chosen(self) -> str:
        """What was kept: the epoch, or a linear probe's L2 strength."""
        row = self.history[self.best_epoch - 1] if 0 < self.best_epoch <= len(self.history) else {}
        return f"L2 {row['l2']:g}" if "l2" in row else f"epoch {self.best_epoch}"


@dataclasses.dataclass
class Plan:
    """What a job works on, checked before any work."""

    data: Path
    backbone: str
    kind: modalities.Modality
    splits: DatasetSplits
    train_set: Split
    silence: bool  # add a _silence_ class of background noise
    target_split: Split | None  # unlabelled target data (domain adaptation)
    bb: Backbone
    preprocessing: modalities.Preprocessing
    protected: dict  # the inputs an output may never replace


@dataclasses.dataclass
class Decoded:
    """The splits as the training loop reads them (from the sample cache on disk)."""

    classes: list[str]
    x_train: SampleSource
    y_train: torch.Tensor
    x_val: SampleSource
    y_val: torch.Tensor
    train_labels: np.ndarray  # as decoded (unreadable files skipped): the card's counts and the class prior
    transform: object  # the modality's training transform


def finetune(data, backbone: str, out, overwrite: bool = False, settings: FinetuneSettings | None = None,
             **options) -> RunResult:
    """Fine-tune `backbone` on the folder data set `data` (images or audio clips, as the
    backbone takes); write the run to `out`. `settings` (or its fields as keyword
    options, the modality's among them, e.g. hflip=False): FinetuneSettings."""
    if settings is not None and options:
        raise ConfigError("pass either settings or options, not both", hint="settings.replace(...)")
    cfg = (settings or FinetuneSettings.from_options(**options)).replace(backbone=backbone).check()
    cfg = cfg.replace(threads=set_torch_threads(cfg.threads))  # the card records the count used
    from edgetl.data.detection import is_detection_set

    detector = is_detection_set(data)
    cfg = cfg.for_task("detection" if detector else "classification").check()
    if detector:  # photos with boxes: a detector (finetune/detect.py)
        from edgetl.finetune.detect import finetune_detector

        done = finetune_detector(data, backbone, out, cfg, overwrite)
        return RunResult(done.out, done.card, done.history, done.best_epoch, done.val_map)
    if cfg.ema:
        raise ConfigError("--ema is for detectors for now; a classifier keeps its best epoch's weights",
                          hint="drop --ema (in a recipe, `ema: true` from its finetune section)")
    dist = Distributed()
    device = resolve_device(cfg.device, dist)
    dist.start(device)
    seed_everything(cfg.seed)
    writer = checkpoints = None
    try:
        plan = prepare(data, backbone, out, cfg, overwrite)
        writer = RunWriter(out, overwrite, plan.protected) if dist.is_main else None
        compute = training_compute(device, images=plan.kind.name == "image", channels_last=cfg.channels_last,
                                   amp=cfg.amp)
        if dist.is_main:
            announce(plan, cfg, device, compute)
        decoded = decode(plan, cfg, device)
        checkpoints = checkpoints_for(out, cfg, decoded)
        started = time.perf_counter()
        history, state, best_epoch, adaptation, estimated = train(plan, decoded, cfg, compute, dist, checkpoints)
        if not dist.is_main:
            return RunResult(Path(out), None, history, best_epoch, max(h["val_accuracy"] for h in history))
        card = run_card(labels=decoded.classes, preprocessing=plan.preprocessing, backbone_name=plan.backbone,
                        backbone=plan.bb,
                        settings=cfg.to_dict(), data=plan.data, train_labels=decoded.train_labels, history=history,
                        best_epoch=best_epoch, device=str(device), compute=compute.to_dict(), world_size=dist.world,
                        train_seconds=time.perf_counter() - started, estimated_seconds=estimated,
                        adaptation=adaptation,
                        # a clip model is a keyword spotter: the streaming detector reads its windows
                        task="keywords" if plan.preprocessing.kind == "audio" else "classification")
        result = write(writer, card, state, history, best_epoch)
        if checkpoints is not None:
            checkpoints.remove()
        return result
    except BaseException:
        if writer is not None:
            writer.discard()
        if checkpoints is not None and checkpoints.exists() and dist.is_main:
            log.warning("the run was not written; its last completed epoch is kept: run the same command with "
                        "--resume to continue from it")
        raise
    finally:
        dist.close()


def prepare(data, backbone: str, out, cfg: FinetuneSettings, overwrite: bool) -> Plan:
    """The data set, the target data and the backbone, every check done; nothing written."""
    protected = {"data set": data, **{f"{k.replace('_', ' ')}": v for k, v in
                                     (("target_data", cfg.target_data), ("target_val", cfg.target_val)) if v}}
    kind = modalities.get(find_family(backbone).modality)
    files = f"{kind.noun}s"
    splits = open_folder(data, val_split=cfg.val_split, seed=cfg.seed, modality=kind.name)
    silence = wants_silence_class(cfg.audio.silence_class, kind.name, splits.classes, data)
    target_split = open_unlabelled(cfg.target_data, kind.name) if cfg.adapt else None
    check_output(out, "run", overwrite, protected)  # before any work; RunWriter checks again when it starts
    if cfg.resume and cfg.strategy != "linear-probe" and not (folder_for(out) / "last.pt").is_file():
        raise ConfigError(f"--resume: no interrupted run to {out} to resume", hint="run without --resume to train "
                          "from the start")
    train_set = splits["train"]
    if cfg.limit_per_class:
        train_set = train_set.limit_per_class(cfg.limit_per_class, seed=cfg.seed)
    if "val" not in splits.splits or len(splits["val"]) == 0:
        if max(train_set.counts().values()) < 2:  # no split can hold one file out and keep one to train on
            raise DataError(f"{data} has one {kind.noun} per class: nothing is left to validate on",
                            hint=f"add at least two {files} per class, or a val/ folder")
        raise DataError(f"{data} has no validation {files}",
                        hint=f"add a val/ folder or use --val-split to hold some training {files} out")
    bb = build_backbone(backbone, cfg.weights)
    check_strategy(cfg.strategy, cfg.unfreeze, len(bb.stages))  # --unfreeze against the real stage count
    if cfg.adapt:
        from edgetl.finetune.adaptation import check_method

        check_method(cfg.adapt, bb.features)
    if cfg.input_size and bb.fixed_input_size and cfg.input_size != bb.preprocessing.size[0]:
        raise ConfigError(f"{backbone} only takes {bb.preprocessing.size[0]} px inputs",
                          hint="drop --input-size, or pick a convolutional backbone")
    pre = bb.preprocessing.with_size(cfg.input_size) if cfg.input_size else bb.preprocessing
    return Plan(Path(data), backbone, kind, splits, train_set, silence, target_split, bb, pre, protected)


def announce(plan: Plan, cfg: FinetuneSettings, device: torch.device, compute: TrainingCompute) -> None:
    files = f"{plan.kind.noun}s"
    classes = plan.splits.classes
    progress.info(f"{plan.backbone}: {len(plan.bb.stages)} stages, {plan.bb.feature_dim}-d features; "
                  f"{len(plan.train_set)} train / {len(plan.splits['val'])} val {files} found, {len(classes)} classes; "
                  f"{cfg.strategy} on {device} ({compute.describe()})")
    if cfg.strategy == "linear-probe":
        default = FinetuneSettings().for_task("classification")
        ignored = [f"--{k.replace('_', '-')}" for k in PROBE_IGNORES if getattr(cfg, k) != getattr(default, k)]
        if ignored:
            log.warning(f"{', '.join(ignored)} {'has' if len(ignored) == 1 else 'have'} no effect on --strategy "
                        "linear-probe: its head is fitted by L-BFGS to convergence, the L2 strength chosen on the "
                        "validation split")
    if plan.silence:
        progress.info(f"adding a {SILENCE} class of background noise (--no-silence-class to leave it out)")
    if plan.kind.name == "audio" and not any(c.startswith("_") and c != SILENCE for c in classes):
        progress.info("no _unknown_ class of other words: a streaming detector will take other speech for "
                      "keywords (edgetl data keywords --unknown writes one)")


def decode(plan: Plan, cfg: FinetuneSettings, device: torch.device) -> Decoded:
    """Each split decoded once (a _silence_ class added where asked), as training tensors."""
    pre, val_set = plan.preprocessing, plan.splits["val"]
    xtr, ytr = decode_cached(plan.train_set, pre, f"decoding training {plan.kind.noun}s")
    xva, yva = decode_cached(val_set, pre, f"decoding validation {plan.kind.noun}s")
    if len(ytr) < len(plan.train_set) or len(yva) < len(val_set):  # the warning above names the others
        progress.info(f"training on {len(ytr)} train / {len(yva)} val {plan.kind.noun}s that could be read")
    classes = list(plan.splits.classes)
    if plan.silence:
        decoded, classes = add_silence_class({"train": (xtr, ytr), "val": (xva, yva)}, classes, plan.data, pre,
                                             cfg.seed)
        (xtr, ytr), (xva, yva) = decoded["train"], decoded["val"]
    transform = training_input(pre, device, cfg, plan.data)
    x_train, y_train = as_source(xtr, ytr, device, transform)
    x_val, y_val = as_source(xva, yva, device, transform)
    return Decoded(classes, x_train, y_train, x_val, y_val, ytr, transform)


def checkpoints_for(out, cfg: FinetuneSettings, d: Decoded) -> Checkpoints | None:
    """Where a run that trains by epochs keeps its last completed one (None for a linear
    probe, whose features are cached, and for --adapt's several trainings)."""
    if cfg.strategy == "linear-probe" or cfg.adapt:
        if cfg.resume:
            progress.info("a linear probe has no epochs to resume: it runs again on its cached features")
        return None
    return Checkpoints(out, identity_of(cfg.to_dict(), d.x_train.key, d.x_val.key), cfg.resume)


def train(plan: Plan, d: Decoded, cfg: FinetuneSettings, compute: TrainingCompute, dist: Distributed,
          checkpoints: Checkpoints | None = None):
    """(history, best state, best epoch, adaptation report or None, seconds estimated before
    training or None): one training, or with --adapt the candidates of
    finetune/adaptation.py, each from the pretrained weights."""
    fresh, device = [plan.bb], compute.device
    estimated: list[float] = []  # each training's own estimate, said before it started

    def one_training(hooks: TrainingHooks | None = None):
        b = fresh.pop() if fresh else build_backbone(plan.backbone, cfg.weights)
        seed_everything(cfg.seed)  # the same head and batches for every candidate
        model = Classifier(b.features, b.feature_dim, len(d.classes), cfg.dropout).to(device)
        trainer = Trainer(model, b.stages, cfg, device, dist, inputs=d.transform, hooks=hooks, compute=compute)
        trainer.checkpoints = checkpoints
        fitted = trainer.fit(d.x_train, d.y_train, d.x_val, d.y_val)
        if trainer.estimated is not None:
            estimated.append(trainer.estimated)
        return (trainer, *fitted)

    if not cfg.adapt:
        return (*one_training()[1:], None, sum(estimated) if estimated else None)
    from edgetl.finetune.adaptation import batchnorm_layers, fit_adapted, report_adaptation

    x_target = as_source(*decode_unlabelled(plan.target_split, plan.kind, plan.preprocessing), device, d.transform)[0]
    target_val = None
    if cfg.target_val:
        tv = open_folder(cfg.target_val, val_split=0, classes=d.classes, modality=plan.kind.name)
        labelled = tv.splits.get("test") or tv.splits.get("val") or tv.splits["train"]
        target_val = as_source(*decode_cached(labelled, plan.preprocessing, "decoding labelled target samples"), device,
                               d.transform)
    prior = np.bincount(d.train_labels, minlength=len(d.classes)) / len(d.train_labels)
    history, state, best_epoch, adaptation = fit_adapted(
        one_training, cfg.adapt, cfg, x_target, prior, plan.bb.feature_dim, (d.x_val, d.y_val), target_val,
        log=progress.info if dist.is_main else lambda _: None,
        has_batchnorm=bool(batchnorm_layers(plan.bb.features)))
    adaptation.update(target_data=str(Path(cfg.target_data).resolve()),
                      target_val_data=str(Path(cfg.target_val).resolve()) if cfg.target_val else None)
    if dist.is_main:
        report_adaptation(adaptation)
    return history, state, best_epoch, adaptation, sum(estimated) if estimated else None


def write(writer: RunWriter, card: ModelCard, state: dict, history: list[dict], best_epoch: int) -> RunResult:
    """The run directory, committed in one rename."""
    writer.save_model(state)
    writer.save_history(history)
    writer.save_card(card)
    plot_history(history, writer.folder / CURVES, title=f"{card.source['backbone']} · {card.source['strategy']}")
    final = writer.commit()
    result = RunResult(final, card, history, best_epoch, card.metrics["val_accuracy"])
    progress.info(f"best val_acc {result.val_accuracy:.4f} at {result.chosen}; run written to {final}")
    return result
