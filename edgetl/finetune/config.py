"""The fine-tuning settings: one dataclass, validated before any work (torch-free, so
the CLI and recipes can read it without loading torch)."""
from __future__ import annotations

import dataclasses
import math

from edgetl.errors import ConfigError
from edgetl.finetune.strategies import ADAPTATIONS, STRATEGIES


@dataclasses.dataclass
class FinetuneConfig:
    strategy: str = "full"
    weights: str = "default"
    unfreeze: int | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3  # the head's; backbone stages get lr * backbone_lr_scale (* layer decay)
    backbone_lr_scale: float = 1.0
    layer_decay: float = 0.7  # gradual only
    gradual_every: str = "epoch"  # or "plateau"
    # BatchNorm statistics fixed at their pretrained values even in trained stages.
    # None: on for gradual (a newly unfrozen stage's batch statistics would shift the
    # features the head already learned), off otherwise.
    freeze_bn_stats: bool | None = None
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    dropout: float = 0.2
    patience: int = 5
    device: str = "auto"
    threads: int | None = None  # torch's intra-op CPU threads (None: torch's own count, every core)
    seed: int = 0
    input_size: int | None = None
    val_split: float = 0.2
    limit_per_class: int | None = None
    hflip: bool = True  # images
    noise_snr_db: tuple[float, float] = (5.0, 20.0)  # audio: background noise mixed in at this SNR range
    noise_prob: float = 0.8  # audio: share of training clips that get noise
    shift_ms: float = 100.0  # audio: random time shift up to this much either way
    gain_db: float = 6.0  # audio: random gain up to this much either way
    # audio: add a _silence_ class made from background noise (None: when the data has noise)
    silence_class: bool | None = None
    channels_last: bool = True
    amp: bool = True
    # domain adaptation (finetune/adaptation.py): unlabelled samples of the deployment domain
    adapt: str | None = None  # adabn | coral | dann | auto
    target_data: str | None = None  # a folder of unlabelled images or audio (class folders ignored)
    target_val: str | None = None  # optional labelled target data: the report adds target accuracy
    adapt_weight: float | None = None  # the method's loss weight (default per method)

    def check(self) -> None:
        """Every option, before any work; the message gives the range, the hint the fix."""
        def need(ok: bool, message: str, hint: str) -> None:
            if not ok:
                raise ConfigError(message, hint=hint)

        need(self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r}", f"use one of {', '.join(STRATEGIES)}")
        need(self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}", "e.g. --epochs 10")
        need(self.batch_size >= 2, f"--batch-size must be at least 2 (BatchNorm needs it), got {self.batch_size}",
             "e.g. --batch-size 32")
        need(0 < self.lr < math.inf, f"--lr must be a positive learning rate, got {self.lr}", "e.g. --lr 1e-3")
        need(0 <= self.backbone_lr_scale <= 10, f"--backbone-lr-scale must be between 0 and 10, "
             f"got {self.backbone_lr_scale}", "1 trains the backbone at --lr, 0.1 at a tenth of it")
        need(0 < self.layer_decay <= 1, f"layer_decay must be in (0, 1], got {self.layer_decay}", "e.g. 0.7")
        need(self.gradual_every in ("epoch", "plateau"), f"--gradual-every must be epoch or plateau, "
             f"got {self.gradual_every!r}", "--gradual-every epoch")
        need(0 <= self.weight_decay < 1, f"--weight-decay must be in [0, 1), got {self.weight_decay}",
             "e.g. --weight-decay 0.05")
        need(0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}",
             "e.g. --label-smoothing 0.1, or 0 to turn it off")
        need(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}", "e.g. 0.2")
        need(self.patience >= 1, f"--patience must be at least 1 epoch, got {self.patience}",
             "e.g. --patience 5; --patience equal to --epochs never stops early")
        need(self.input_size is None or 16 <= self.input_size <= 1024,
             f"--input-size must be between 16 and 1024, got {self.input_size}", "e.g. --input-size 224")
        need(0 <= self.val_split < 1, f"--val-split must be in [0, 1), got {self.val_split}", "e.g. --val-split 0.2")
        need(self.limit_per_class is None or self.limit_per_class >= 1,
             f"--limit-per-class must be at least 1, got {self.limit_per_class}", "drop it to use every file")
        need(len(self.noise_snr_db) == 2 and -20 <= self.noise_snr_db[0] <= self.noise_snr_db[1] <= 100,
             f"the noise SNR range must be LOW <= HIGH within -20..100 dB, got {self.noise_snr_db}", "e.g. 5:20")
        need(0 <= self.noise_prob <= 1, f"--noise-prob must be in [0, 1], got {self.noise_prob}", "e.g. 0.8")
        need(0 <= self.shift_ms <= 1000, f"--shift-ms must be in [0, 1000], got {self.shift_ms}", "e.g. 100")
        need(0 <= self.gain_db <= 40, f"--gain-db must be in [0, 40], got {self.gain_db}", "e.g. 6")
        need(self.threads is None or self.threads >= 1, f"--threads must be at least 1, got {self.threads}",
             "e.g. --threads 1 on a busy machine")
        need(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"unknown --device {self.device!r}", "use auto, cpu, cuda or cuda:N")
        # Options that only mean something for some strategies contradict the others.
        need(self.unfreeze is None or self.unfreeze >= 1, f"--unfreeze must be at least 1, got {self.unfreeze}",
             "the number of stages, from the top, that train")
        need(self.unfreeze is None or self.strategy in ("partial", "gradual"),
             f"--unfreeze does not apply to --strategy {self.strategy}",
             "use --strategy partial or gradual with it, or drop --unfreeze")
        need(self.strategy != "partial" or self.unfreeze is not None,
             "--strategy partial needs --unfreeze N (how many of the last stages train)", "e.g. --unfreeze 2")
        need(self.adapt is None or self.adapt in ADAPTATIONS, f"unknown --adapt {self.adapt!r}",
             f"use one of {', '.join(ADAPTATIONS)}")
        need(self.adapt is None or self.target_data is not None, f"--adapt {self.adapt} needs --target-data DIR",
             "a folder of unlabelled images or audio clips from the device")
        need(self.target_data is None or self.adapt is not None, "--target-data needs --adapt METHOD",
             f"add --adapt {' or '.join(ADAPTATIONS)}")
        need(self.target_val is None or self.adapt is not None, "--target-val needs --adapt METHOD and --target-data",
             "add --adapt auto --target-data DIR")
        need(not (self.strategy == "linear-probe" and self.adapt in ("coral", "dann")),
             f"--adapt {self.adapt} aligns the backbone's features, which --strategy linear-probe keeps frozen",
             "use --strategy full, partial or gradual with it, or --adapt adabn")
        need(self.adapt_weight is None or 0 < self.adapt_weight <= 1000,
             f"--adapt-weight must be in (0, 1000], got {self.adapt_weight}", "drop it for the method's default")
        need(self.gradual_every == "epoch" or self.strategy == "gradual",
             f"--gradual-every {self.gradual_every} applies to --strategy gradual only",
             "use --strategy gradual, or drop --gradual-every")
