"""The fine-tuning loop: data decoded once, augmentation on the device, AdamW with a
warm-up + cosine schedule, label smoothing, early stopping on validation accuracy, the
best checkpoint kept; AMP (bf16) and channels-last on CUDA; DDP under torchrun."""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgetl.core import progress
from edgetl.core.card import ModelCard
from edgetl.core.errors import TrainingDiverged
from edgetl.data.sample_cache import cached_array
from edgetl.finetune.augment import ImageTrainingInput
from edgetl.finetune.compute import TrainingCompute, training_compute
from edgetl.finetune.estimate import format_seconds
from edgetl.finetune.hooks import Step, TrainingHooks
from edgetl.finetune.model import Classifier
from edgetl.finetune.probe import fit_probe
from edgetl.finetune.settings import FinetuneSettings
from edgetl.finetune.strategies import check_strategy, stage_lr_scales, trainable_count
from edgetl.finetune.training import Distributed, inference_batch, module_digest


@dataclasses.dataclass
class RunResult:
    out: Path
    card: ModelCard
    history: list[dict]
    best_epoch: int
    val_accuracy: float


ESTIMATE_AFTER = (20, 10.0)  # the epoch time is estimated after 20 steps or 10 s, whichever comes first




class Trainer:
    """`inputs` is the modality's training transform (cached batches -> model inputs,
    plain or augmented); `mean` and `std` alone stand for image inputs so normalised.
    `hooks` is what a training method adds to the loop (finetune/hooks.py)."""

    def __init__(self, model: Classifier, stages, cfg: FinetuneSettings, device: torch.device, dist: Distributed,
                 mean=None, std=None, *, inputs=None, hooks: TrainingHooks | None = None,
                 compute: TrainingCompute | None = None):
        cfg = cfg.for_task("classification")  # what was left unset: a classifier's defaults (finetune() resolves first)
        self.model, self.stages, self.cfg, self.device, self.dist = model, stages, cfg, device, dist
        self.hooks = hooks or TrainingHooks()
        self.inputs = inputs or ImageTrainingInput(mean, std, device, hflip=cfg.image.hflip)
        self.limit = check_strategy(cfg.strategy, cfg.unfreeze, len(stages))
        scale = cfg.backbone_lr_scale
        decay = cfg.layer_decay if cfg.strategy == "gradual" else 1.0
        self.scales = stage_lr_scales(len(stages), scale, decay)
        self.cuda = device.type == "cuda"
        self.compute = compute or training_compute(device, images=isinstance(self.inputs, ImageTrainingInput),
                                                   channels_last=cfg.channels_last, amp=cfg.amp)
        self.compute.prepare(model)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.compute.needs_scaler)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + dist.rank)
        self.freeze_bn_stats = cfg.freeze_bn_stats if cfg.freeze_bn_stats is not None else cfg.strategy == "gradual"
        self.unfrozen = 0
        self.trained: nn.Module = model
        self.checkpoints = None  # Checkpoints (finetune/checkpoint.py): the last completed epoch, for --resume
        self.estimated: float | None = None  # seconds of training estimated before it started

    # ------------------------------------------------------------ helpers
    def _autocast(self):
        return self.compute.context()

    def _layout(self, xb: torch.Tensor) -> torch.Tensor:
        return self.compute.layout(xb)

    def n_trainable(self) -> int:
        return trainable_count(self.cfg.strategy, self.limit, self.unfrozen)

    def set_trainable(self) -> None:
        k = self.n_trainable()
        for i, stage in enumerate(self.stages):
            stage.requires_grad_(i >= len(self.stages) - k)
        for p in self.model.head.parameters():
            p.requires_grad_(True)
        module = self.model if k > 0 else self.model.head
        self.trained = self.dist.wrap(module, self.device)

    def train_mode(self) -> None:
        """Train mode for what trains; frozen stages stay in eval mode (BatchNorm, dropout)."""
        self.model.train()
        k = self.n_trainable()
        for i, stage in enumerate(self.stages):
            if i < len(self.stages) - k:
                stage.train(False)
        if self.freeze_bn_stats:
            for m in self.model.features.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        for m in self.hooks.modules():
            m.train()

    def _optimizer(self, steps_total: int, steps_per_epoch: int):
        groups = [{"params": list(s.parameters()), "lr": self.cfg.lr * sc} for s, sc in zip(self.stages, self.scales)]
        groups.append({"params": list(self.model.head.parameters()), "lr": self.cfg.lr})
        groups += [{"params": list(m.parameters()), "lr": self.cfg.lr} for m in self.hooks.modules()]
        opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=self.cfg.weight_decay)
        warmup = max(1, min(steps_per_epoch, steps_total // 10))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            t = (step - warmup) / max(1, steps_total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def _batches(self, n: int, epoch: int, batch: int):
        g = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        perm = torch.randperm(n, generator=g)
        if self.dist.active:  # every rank gets the same number of samples
            per_rank = n // self.dist.world
            perm = perm[self.dist.rank::self.dist.world][:per_rank]
        for start in range(0, len(perm), batch):
            idx = perm[start:start + batch]
            if len(idx) < 2 and len(perm) > 1:  # a batch of one breaks BatchNorm
                continue
            yield idx

    def _diverged(self, value: float, epoch: int, where: str = "loss") -> None:
        """Stop: weights that produced a NaN or infinite loss are no model to write."""
        lr = self.cfg.lr
        raise TrainingDiverged(f"training diverged: the {where} became {value} in epoch {epoch} at --lr {lr:g}; "
                               "nothing was written", hint=f"try --lr {lr / 10:g}, a tenth of it")

    def _step(self, opt, sched, loss) -> None:
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()
        sched.step()

    def _forward(self, xb: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(features or None, logits) of a batch in the model's input layout."""
        if self.n_trainable() == 0:  # the backbone is frozen for now: no graph through it
            with torch.no_grad():
                feats = self.model.features(xb)
            return feats, self.trained(feats)
        if self.hooks.wants_features:
            return self.trained(xb, with_features=True)
        return None, self.trained(xb)

    def features_of(self, x, bar=None, what: str = "features"):
        """The frozen backbone's features of cached samples (a linear probe's inputs): an
        array of rows. Those of a split in the sample cache are stored beside it, keyed by
        the samples, the backbone's weights and statistics, and torch's version, so a
        later probe of the same split and backbone reads them instead of computing."""
        dim = self.model.head[-1].in_features
        if getattr(x, "key", None) is None:
            return torch.cat(list(self._feature_batches(x, bar, what))).cpu().numpy()
        key = hashlib.sha256("|".join([x.key, module_digest(self.model.features), torch.__version__,
                                       self.device.type, str(self.compute.to_dict())]).encode()).hexdigest()[:32]

        def fill(out) -> None:
            row = 0
            for f in self._feature_batches(x, bar, what):
                out[row:row + len(f)] = f.cpu().numpy()
                row += len(f)

        return cached_array(key, (len(x), dim), np.float32, fill)[0]

    @torch.no_grad()
    def _feature_batches(self, x, bar, what: str):
        self.model.features.eval()
        batch = inference_batch(x.shape[1:])
        task = bar.add_task(what, total=len(x), status="") if bar is not None else None
        for start in range(0, len(x), batch):
            xb = self.inputs.model_input(x[start:start + batch].to(self.device, non_blocking=True))
            with self._autocast():
                yield self.model.features(self._layout(xb)).float()
            if bar is not None:
                bar.advance(task, len(xb))
        if bar is not None:
            bar.remove_task(task)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax outputs (on the CPU) of cached samples, as in evaluation."""
        self.model.eval()
        batch = inference_batch(x.shape[1:])
        out = []
        for start in range(0, len(x), batch):
            xb = self.inputs.model_input(x[start:start + batch].to(self.device, non_blocking=True))
            with self._autocast():
                out.append(torch.softmax(self.model(self._layout(xb)).float(), 1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self, x, y) -> tuple[float, float]:
        """(loss, accuracy) of the model on cached samples."""
        self.model.eval()
        batch = inference_batch(x.shape[1:])
        total_loss, correct = 0.0, 0
        for start in range(0, len(x), batch):
            xb = x[start:start + batch].to(self.device, non_blocking=True)
            yb = y[start:start + batch].to(self.device, non_blocking=True)
            with self._autocast():
                logits = self.model(self._layout(self.inputs.model_input(xb))).float()
            total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
        return total_loss / max(1, len(x)), correct / max(1, len(x))

    def _say_estimate(self, x_train: torch.Tensor, n_val: int) -> float | None:
        """Before any training: how long it takes here, and the alternatives (finetune/estimate.py)."""
        from edgetl.finetune.estimate import estimates, said

        if not self.dist.is_main or progress.is_quiet():
            return None
        found = estimates(self, x_train, n_val)
        if not found:
            return None
        cfg = self.cfg
        progress.info(said(cfg.strategy, 0 if cfg.strategy == "linear-probe" else cfg.epochs, len(x_train), found))
        return found[cfg.strategy]

    # ------------------------------------------------------------ the loop
    def fit(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
            y_val: torch.Tensor) -> tuple[list[dict], dict, int]:
        cfg = self.cfg
        self.estimated = self._say_estimate(x_train, len(x_val))
        probe = cfg.strategy == "linear-probe"
        if probe:
            for m in self.hooks.modules():
                m.to(self.device)
            self.hooks.before_fit(self)
            return self._fit_probe(x_train, y_train, x_val, y_val)
        steps_per_epoch = math.ceil(len(x_train) / max(1, self.dist.world) / cfg.batch_size)
        steps_total = steps_per_epoch * cfg.epochs
        for m in self.hooks.modules():
            m.to(self.device)
        self.hooks.before_fit(self)
        opt, sched = self._optimizer(steps_total, steps_per_epoch)
        self.unfrozen = 0 if cfg.strategy == "gradual" else self.limit
        history: list[dict] = []
        best = {"key": None, "epoch": 0, "state": None}
        stale, step_count, first, estimated = 0, 0, 1, False
        resumed = self.checkpoints.load() if self.checkpoints is not None else None
        if resumed is not None:  # where an interrupted run stopped: every state as it was then
            self.model.load_state_dict(resumed["model"])
            opt.load_state_dict(resumed["optimizer"])
            sched.load_state_dict(resumed["scheduler"])
            self.scaler.load_state_dict(resumed["scaler"])
            torch.set_rng_state(resumed["rng"])
            self.gen.set_state(resumed["generator"])
            history, stale, step_count, self.unfrozen = (resumed["history"], resumed["stale"], resumed["step_count"],
                                                         resumed["unfrozen"])
            best = {"key": tuple(resumed["best_key"]), "epoch": resumed["best_epoch"], "state": resumed["best_state"]}
            first = resumed["epoch"] + 1
            progress.info(f"resuming after epoch {resumed['epoch']} of {cfg.epochs}")
        self.set_trainable()
        with progress.progress_bar() as bar:
            task = bar.add_task("epochs", total=cfg.epochs, completed=first - 1, status="")
            for epoch in range(first, cfg.epochs + 1):
                if epoch > first and self.checkpoints is not None and self.dist.is_main:
                    self.checkpoints.save({
                        "epoch": epoch - 1, "model": self.model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "scaler": self.scaler.state_dict(), "rng": torch.get_rng_state(),
                        "generator": self.gen.get_state(), "history": history, "stale": stale, "step_count": step_count,
                        "unfrozen": self.unfrozen, "best_key": list(best["key"]), "best_epoch": best["epoch"],
                        "best_state": best["state"]})
                t0 = time.perf_counter()
                self.train_mode()
                seen, loss_sum, extra_sum, correct = 0, 0.0, 0.0, 0
                btask = bar.add_task(f"epoch {epoch}", total=steps_per_epoch, status="")
                for i, idx in enumerate(self._batches(len(x_train), epoch, cfg.batch_size)):
                    xb = x_train[idx].to(self.device, non_blocking=True)
                    yb = y_train[idx].to(self.device, non_blocking=True)
                    n = len(yb)
                    extra = self.hooks.extra_batch(epoch, i)
                    with self._autocast():
                        if extra is not None:  # one forward pass for both batches
                            xb = torch.cat([xb, extra.to(self.device, non_blocking=True)])
                        feats, logits = self._forward(self._layout(self.inputs.augmented(xb, self.gen)))
                        task_loss = F.cross_entropy(logits[:n].float(), yb, label_smoothing=cfg.label_smoothing)
                        term = self.hooks.loss(Step(
                            None if feats is None else feats[:n], logits[:n], yb,
                            None if extra is None or feats is None else feats[n:],
                            None if extra is None else logits[n:], step_count / max(1, steps_total - 1), epoch))
                        loss = task_loss if term is None else task_loss + term
                    value = loss.item()
                    if not math.isfinite(value):
                        self._diverged(value, epoch)
                    self._step(opt, sched, loss)
                    step_count += 1
                    seen += n
                    loss_sum += task_loss.item() * n
                    extra_sum += 0.0 if term is None else term.item() * n
                    correct += (logits[:n].argmax(1) == yb).sum().item()
                    bar.update(btask, advance=1, status=f"loss {value:.3f}")
                    if not estimated and (i + 1 >= ESTIMATE_AFTER[0] or time.perf_counter() - t0 >= ESTIMATE_AFTER[1]):
                        estimated = True
                        per_epoch = (time.perf_counter() - t0) / (i + 1) * steps_per_epoch
                        if self.dist.is_main:
                            progress.info(f"about {format_seconds(per_epoch)} per epoch ({steps_per_epoch} steps), at "
                                          f"most {format_seconds(per_epoch * (cfg.epochs - epoch + 1))} for the "
                                          f"{cfg.epochs - epoch + 1} epochs left")
                bar.remove_task(btask)
                if self.cuda:
                    torch.cuda.synchronize()
                train_seconds = time.perf_counter() - t0
                val_loss, val_acc = self.evaluate(x_val, y_val)
                if not math.isfinite(val_loss):
                    self._diverged(val_loss, epoch, where="validation loss")
                seconds = time.perf_counter() - t0
                entry = {
                    "epoch": epoch, "train_loss": loss_sum / max(1, seen), "train_accuracy": correct / max(1, seen),
                    "val_loss": val_loss, "val_accuracy": val_acc, "lr": opt.param_groups[-1]["lr"],
                    "trainable_stages": self.n_trainable(),
                    "trainable_params": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
                    "seconds": seconds, "images_per_second": seen * max(1, self.dist.world) / train_seconds,
                }
                if extra_sum:
                    entry["method_loss"] = extra_sum / max(1, seen)
                self.hooks.after_epoch(self, entry)
                history.append(entry)
                key = self.hooks.selection_key(entry)
                improved = best["key"] is None or key > best["key"]
                if improved:
                    best.update(key=key, epoch=epoch,
                                state={k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()})
                if self.dist.is_main:
                    progress.info(f"epoch {epoch:>3}/{cfg.epochs}  loss {entry['train_loss']:.4f}  "
                                  f"acc {entry['train_accuracy']:.4f}  val_loss {val_loss:.4f}  val_acc {val_acc:.4f}  "
                                  f"[{entry['trainable_stages']}/{len(self.stages)} stages, {seconds:.1f}s]"
                                  + ("  *" if improved else ""))
                bar.update(task, advance=1, status=f"val_acc {val_acc:.3f}")
                # Gradual: unfreeze the next stage each epoch (or when accuracy stalls);
                # early stopping counts only once everything allowed is unfrozen.
                if cfg.strategy == "gradual" and self.unfrozen < self.limit:
                    if cfg.gradual_every == "epoch" or not improved:
                        self.unfrozen += 1
                        self.set_trainable()
                    continue
                stale = 0 if improved else stale + 1
                if stale >= cfg.patience:
                    if self.dist.is_main:
                        progress.info(f"early stop: no better validation accuracy for {cfg.patience} epochs")
                    break
        state = self.hooks.after_fit(self, best["state"], history, best["epoch"])
        return history, state, best["epoch"]

    def _fit_probe(self, x_train, y_train, x_val, y_val) -> tuple[list[dict], dict, int]:
        """The linear probe: the frozen backbone's features once, then the head fitted to
        convergence for each L2 strength (finetune/probe.py), the best kept by the hooks'
        selection key (validation accuracy, then loss)."""
        self.unfrozen = 0
        self.set_trainable()
        self.model.eval()
        with progress.progress_bar() as bar:
            f_train = self.features_of(x_train, bar=bar, what="features of the training samples")
            f_val = self.features_of(x_val, bar=bar, what="features of the validation samples")
        device = self.model.head[-1].weight.device
        history: list[dict] = []
        best = {"key": None, "epoch": 0, "state": None}

        def on_fit(row: dict) -> None:
            row.pop("state")
            self.model.eval()
            self.hooks.after_epoch(self, row)
            history.append(row)
            key = self.hooks.selection_key(row)
            improved = best["key"] is None or key > best["key"]
            if improved:
                best.update(key=key, epoch=row["epoch"],
                            state={k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()})
            if self.dist.is_main:
                progress.info(f"L2 {row['l2']:<7g} loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.4f}  "
                              f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  "
                              f"[L-BFGS, {row['solver_steps']} steps, {row['seconds']:.1f}s]" + ("  *" if improved else ""))

        fit_probe(self.model.head[-1], (f_train, y_train.to(device)), (f_val, y_val.to(device)), on_fit)
        state = self.hooks.after_fit(self, best["state"], history, best["epoch"])
        return history, state, best["epoch"]
