"""The fine-tuning settings: one dataclass, validated before any work (torch-free, so
the CLI and recipes can read it without loading torch). What only images or only audio
use lives in the modality's own options (modality/image.py, modality/audio.py)."""
from __future__ import annotations

import dataclasses
import math

from edgetl.core.errors import ConfigError
from edgetl.core.settings import Settings, setting, threads_setting
from edgetl.finetune.strategies import ADAPTATIONS, STRATEGIES
from edgetl.modality.audio import AudioTrainingOptions
from edgetl.modality.image import ImageTrainingOptions

# What a setting left unset means, by task. A detector's head (FPN + FCOS) starts from
# nothing: a frozen backbone with small batches and a higher rate gives a useful
# detector in minutes on a CPU (benchmarks/detection.py), where a full fine-tune at 320 px
# costs several times more per epoch and reaches less in the same time.
TASK_DEFAULTS = {
    "classification": {"strategy": "full", "epochs": 10, "batch_size": 32, "lr": 1e-3, "backbone_lr_scale": 1.0,
                       "ema": False},
    # a detector's backbone trains too: on the built-in scenes full training reached test mAP
    # 0.720 in 12 epochs and 0.749 in 18, where the frozen backbone reached 0.593 and a plain
    # torchvision FCOS on the same backbone 0.747 in 20 (benchmarks/detection.py)
    "detection": {"strategy": "full", "epochs": 18, "batch_size": 8, "lr": 2e-3, "backbone_lr_scale": 0.5,
                  "ema": True},
}


@dataclasses.dataclass
class FinetuneSettings(Settings):
    backbone: str | None = setting(None, "A name from `edgetl backbones`, or timm:NAME.", cli=False)
    strategy: str | None = setting(None, "linear-probe: frozen backbone, head fitted to convergence on its features "
                                   "(L-BFGS; a detector's head is trained for --epochs); full; partial: the last "
                                   "--unfreeze stages; gradual: one more stage per epoch or plateau. Default: full, "
                                   "for a classifier and a detector alike.", choices=STRATEGIES)
    weights: str = setting("default", "default | none | PATH to a state dict.", path=True)
    unfreeze: int | None = setting(None, "partial: last N stages train; gradual: at most N.")
    epochs: int | None = setting(None, "Training epochs (at most; early stopping may end sooner). Default: 10 for a "
                                 "classifier, 18 for a detector.")
    batch_size: int | None = setting(None, "Samples per training step. Default: 32 for a classifier, 8 for a detector.")
    lr: float | None = setting(None, "Peak learning rate of the head (AdamW, warm-up + cosine). Default: 1e-3 for a "
                               "classifier, 2e-3 for a detector.")
    backbone_lr_scale: float | None = setting(None, "Backbone learning rate as a share of --lr (gradual also decays "
                                              "it 0.7x per stage). Default: 1 for a classifier, 0.5 for a detector.")
    layer_decay: float = setting(0.7, "gradual: learning rate factor per stage deeper.", cli=False)
    gradual_every: str = setting("epoch", "gradual: unfreeze the next stage every epoch or when val accuracy stalls.",
                                 choices=("epoch", "plateau"))
    # None: on for gradual (a newly unfrozen stage's batch statistics would shift the
    # features the head already learned), off otherwise.
    freeze_bn_stats: bool | None = setting(None, "Keep BatchNorm statistics at their pretrained values (default: "
                                           "only for gradual).", flag="--freeze-bn-stats/--train-bn-stats")
    ema: bool | None = setting(None, "Score and keep an average of the weights over about the last epoch's steps "
                               "(an exponential moving average) instead of the last step's. Default: on for a "
                               "detector; a classifier does not take it yet.", flag="--ema/--no-ema")
    weight_decay: float = setting(0.05, "AdamW weight decay.")
    label_smoothing: float = setting(0.1, "Label smoothing of the cross-entropy (0 turns it off).")
    dropout: float = setting(0.2, "Dropout before the head.", cli=False)
    patience: int = setting(5, "Early stopping: epochs without a better val accuracy.")
    device: str = setting("auto", "Where training runs. auto: a GPU where this machine has one, else the CPU; cpu; "
                          "cuda[:N].")
    threads: int | None = threads_setting("training (torch's intra- and inter-op threads)")
    seed: int = setting(0, "Seed of the head's weights, the batches and the augmentation.", min=0, max=2**32 - 1,
                        example="0")
    resume: bool = setting(False, "Continue an interrupted run to the same --out from its last completed epoch (same "
                           "settings and data; on one thread it ends with the same weights as an uninterrupted run).")
    input_size: int | None = setting(None, "Input side in pixels (default: the backbone's).")
    val_split: float = setting(0.2, "Share of train held out when DATA has no val/ folder.")
    limit_per_class: int | None = setting(None, "Use at most N training files per class.")
    image: ImageTrainingOptions = setting(ImageTrainingOptions(), "Image augmentation.", cli=False)
    audio: AudioTrainingOptions = setting(AudioTrainingOptions(), "Audio augmentation and the _silence_ class.",
                                          cli=False)
    channels_last: bool = setting(True, "Image models train in channels-last memory layout (CPU and CUDA).", cli=False)
    amp: bool = setting(True, "Mixed precision where the device computes it fast: bf16 autocast on CPUs with AVX-512 "
                        "BF16 or AMX and on GPUs that have bf16, fp16 on other GPUs; never on other CPUs.", cli=False)
    # domain adaptation (finetune/adaptation.py): unlabelled samples of the deployment domain
    adapt: str | None = setting(None, "Domain adaptation to --target-data: adabn (BatchNorm statistics), coral "
                                "(feature covariances), dann (domain classifier, gradient reversal), auto (tries "
                                "them, keeps the best by a label-free criterion, or source-only).", choices=ADAPTATIONS)
    target_data: str | None = setting(None, "Unlabelled images or audio from the deployment domain (any layout; "
                                      "class folders are ignored).", path=True)
    target_val: str | None = setting(None, "Labelled target data (test/, val/ or class folders): the report adds "
                                     "target accuracy and the source-only baseline. Never used for choices.", path=True)
    adapt_weight: float | None = setting(None, "Weight of coral's or dann's loss (default 10 and 1).")

    @classmethod
    def from_options(cls, **options) -> FinetuneSettings:
        """The settings from flat keyword options, as the CLI and the Python API give them
        (`hflip=False`, `noise_prob=0.5` go to the modality's options); an unknown one is a
        ConfigError. A run's recorded config (flat or nested) reads back the same way."""
        own = {f.name for f in dataclasses.fields(cls)}
        per_modality = {"image": ImageTrainingOptions, "audio": AudioTrainingOptions}
        nested = {name: dict(options.pop(name, None) or {}) for name in per_modality}
        for name, kind in per_modality.items():
            for f in dataclasses.fields(kind):
                if f.name in options:
                    nested[name][f.name] = options.pop(f.name)
        unknown = [k for k in options if k not in own]
        if unknown:
            raise ConfigError(f"unknown fine-tuning option {unknown[0]!r}",
                              hint="see `edgetl finetune --help` for the options")
        made = {name: kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in nested[name].items()})
                for name, kind in per_modality.items()}
        return cls(**options, **made)

    def for_task(self, task: str) -> FinetuneSettings:
        """These settings with what was left to the task filled in (TASK_DEFAULTS): what a
        first run on a laptop CPU should try for a classifier and for a detector."""
        defaults = TASK_DEFAULTS["detection" if task == "detection" else "classification"]
        return self.replace(**{k: v for k, v in defaults.items() if getattr(self, k) is None})

    @classmethod
    def from_record(cls, record: dict | None) -> FinetuneSettings:
        """The settings a run recorded in its card (`source.config`), of this or an earlier
        layout; keys this version does not know are left out."""
        known = {f.name for f in dataclasses.fields(cls)} | \
            {f.name for kind in (ImageTrainingOptions, AudioTrainingOptions) for f in dataclasses.fields(kind)}
        return cls.from_options(**{k: v for k, v in (record or {}).items() if k in known})

    def validate(self) -> None:
        """Every option, before any work; the message gives the range, the hint the fix."""
        def need(ok: bool, message: str, hint: str) -> None:
            if not ok:
                raise ConfigError(message, hint=hint)

        need(self.strategy is None or self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r}",
             f"use one of {', '.join(STRATEGIES)}")
        need(self.epochs is None or self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}",
             "e.g. --epochs 10")
        need(self.batch_size is None or self.batch_size >= 2,
             f"--batch-size must be at least 2 (BatchNorm needs it), got {self.batch_size}", "e.g. --batch-size 32")
        need(self.lr is None or 0 < self.lr < math.inf, f"--lr must be a positive learning rate, got {self.lr}",
             "e.g. --lr 1e-3")
        need(self.backbone_lr_scale is None or 0 <= self.backbone_lr_scale <= 10,
             f"--backbone-lr-scale must be between 0 and 10, got {self.backbone_lr_scale}",
             "1 trains the backbone at --lr, 0.1 at a tenth of it")
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
        need(self.threads is None or self.threads >= 1, f"--threads must be at least 1, got {self.threads}",
             "e.g. --threads 1 on a busy machine")
        need(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"unknown --device {self.device!r}", "use auto, cpu, cuda or cuda:N")
        # Options that only mean something for some strategies contradict the others.
        need(self.unfreeze is None or self.unfreeze >= 1, f"--unfreeze must be at least 1, got {self.unfreeze}",
             "the number of stages, from the top, that train")
        need(self.unfreeze is None or self.strategy in ("partial", "gradual"),
             f"--unfreeze does not apply to {f'--strategy {self.strategy}' if self.strategy else 'the default strategy'}",
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
        need(not (self.resume and self.adapt), "--resume does not apply to --adapt (its candidates train one after "
             "another)", "run without --resume")
        need(self.adapt_weight is None or 0 < self.adapt_weight <= 1000,
             f"--adapt-weight must be in (0, 1000], got {self.adapt_weight}", "drop it for the method's default")
        need(self.gradual_every == "epoch" or self.strategy == "gradual",
             f"--gradual-every {self.gradual_every} applies to --strategy gradual only",
             "use --strategy gradual, or drop --gradual-every")


@dataclasses.dataclass(frozen=True)
class AdaptSettings(Settings):
    """`edgetl adapt`: AdaBN on a finished run."""

    target_data: str | None = setting(None, "Unlabelled images or audio from the deployment domain (any layout; "
                                      "class folders are ignored).", path=True)
    batch: int = setting(64, "Target samples per BatchNorm statistics pass.", min=2, cli=False)
    threads: int | None = threads_setting("AdaBN's passes (torch)")

    def validate(self) -> None:
        if not self.target_data:
            raise ConfigError("adapt needs the target data", hint="--target-data DIR")
