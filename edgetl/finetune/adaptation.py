"""Domain adaptation: fit a model to the device's data without its labels.

Each method is a small `TrainingHooks` (finetune/hooks.py) over the same training loop:

- `adabn`: BatchNorm statistics re-estimated on the target data once training is done
  (no gradient step; any strategy, a frozen backbone included), also on an existing run;
- `coral`: deep CORAL, a loss that aligns the covariance of the features of each source
  batch with that of a target batch;
- `dann`: a domain classifier on the features behind a gradient-reversal layer, whose
  weight rises from 0 to 1 over training (2 / (1 + exp(-10 p)) - 1, as in the paper).

Whether adaptation helped is judged without target labels. On target samples the model
is scored by its information maximisation (`im`): the entropy of its mean prediction
(are the classes all used?) minus its mean prediction entropy (is it sure of each?), both
divided by log(classes), so 1 is confident and balanced, 0 uniform or collapsed.

- Within a run, the kept epoch is the one with the largest `source val accuracy + target
  im` (the task must not be lost while the target answers sharpen).
- `auto` trains source-only and every method that applies, then keeps the method with
  the largest target im among those that did not lose the source task, and source-only
  unless that method's im is larger by more than `AUTO_MARGIN`. A method lost the
  source task when its source validation accuracy fell by more than `SOURCE_TOLERANCE`
  and the samples behind the fall say so too: it got more of them wrong that
  source-only got right than the other way round, by more than a one-sided sign test
  at 5% allows (on 255 clips, 4 lost and 1 gained, 1.2 points, is noise between two
  trainings; a 1.2-point fall once kept the best method out). Comparing whole runs by
  accuracy + im would let the noise between two trainings' accuracies decide. AdaBN's source accuracy is taken with the
  source statistics (its weights are source-only's; the re-estimated statistics are
  for the target, and the report gives its accuracy with them too).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgetl.core.errors import ConfigError
from edgetl.finetune.hooks import Step, TrainingHooks
from edgetl.finetune.strategies import ADAPTATIONS
from edgetl.finetune.training import inference_batch

METHODS = tuple(m for m in ADAPTATIONS if m != "auto")
FEATURE_METHODS = ("coral", "dann")  # align features: the backbone must train
SIGNAL_SAMPLES = 1024  # target samples the label-free signals are computed on
AUTO_MARGIN = 0.005
SOURCE_TOLERANCE = 0.01
SIGN_TEST_Z = 1.645  # one-sided, 5%
CRITERION = ("epochs: source val accuracy + target information maximisation (im); methods: the largest target im "
             f"among those whose source accuracy is within {SOURCE_TOLERANCE:.0%} of source-only's or not lower "
             "by a sign test at 5%")
DEFAULT_WEIGHT = {"coral": 10.0, "dann": 1.0}  # of the method's loss term beside the task loss


def criterion(val_accuracy: float, signals: dict) -> float:
    return val_accuracy + signals["im"]


def label_free_signals(probs: torch.Tensor, source_prior: np.ndarray, reference: torch.Tensor | None = None) -> dict:
    """Figures of a model's softmax outputs on unlabelled target samples."""
    p = probs.double().clamp_min(1e-12)
    log_c = math.log(p.shape[1])
    entropy = float((-(p * p.log()).sum(1)).mean()) / log_c
    mean = p.mean(0)
    balance = float(-(mean * mean.log()).sum()) / log_c
    prior = torch.as_tensor(source_prior, dtype=torch.float64).clamp_min(1e-12)
    out = {"entropy": entropy, "balance": balance, "im": balance - entropy,
           # how far the predicted class frequencies are from the training set's (nats)
           "class_kl_to_source": float((mean * (mean.log() - prior.log())).sum())}
    if reference is not None:  # the source-only model's answers on the same samples
        out["agreement_with_source_only"] = float((probs.argmax(1) == reference.argmax(1)).double().mean())
    return out


class Adaptation(TrainingHooks):
    """The target data and the label-free figures every method shares."""

    name = "source-only"

    def __init__(self, x_target: torch.Tensor, source_prior: np.ndarray, batch_size: int, seed: int = 0,
                 weight: float | None = None):
        self.x_target, self.prior, self.batch_size = x_target, source_prior, batch_size
        self.weight = DEFAULT_WEIGHT.get(self.name, 1.0) if weight is None else weight
        self.gen = torch.Generator().manual_seed(seed + 7)
        pick = torch.randperm(len(x_target), generator=torch.Generator().manual_seed(seed))[:SIGNAL_SAMPLES]
        self.x_signals = x_target[pick.sort().values]

    def extra_batch(self, epoch: int, step: int) -> torch.Tensor | None:
        idx = torch.randint(len(self.x_target), (self.batch_size,), generator=self.gen)
        return self.x_target[idx.to(self.x_target.device)]

    def signals(self, trainer, reference: torch.Tensor | None = None) -> dict:
        return label_free_signals(trainer.probabilities(self.x_signals), self.prior, reference)

    def after_epoch(self, trainer, entry: dict) -> None:
        entry.update({f"target_{k}": v for k, v in self.signals(trainer).items()})

    def selection_key(self, entry: dict) -> tuple:
        return (criterion(entry["val_accuracy"], {"im": entry["target_im"]}),)


class SourceOnly(Adaptation):
    """No adaptation: the label-free figures only (auto's baseline)."""

    def extra_batch(self, epoch: int, step: int) -> None:
        return None

    def after_epoch(self, trainer, entry: dict) -> None:
        """Selected on source validation as plain fine-tuning is."""

    def selection_key(self, entry: dict) -> tuple:
        return TrainingHooks.selection_key(self, entry)


class AdaBN(SourceOnly):
    """Trains as plain fine-tuning, then re-estimates BatchNorm statistics on the target."""

    name = "adabn"

    def after_fit(self, trainer, best_state: dict, history: list[dict], best_epoch: int) -> dict:
        self.source_state = best_state
        trainer.model.load_state_dict(best_state)
        reestimate_batchnorm(trainer.model, trainer.inputs, self.x_target, trainer.device)
        return {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(model, inputs, x_target: torch.Tensor, device, batch: int = 64) -> int:
    """AdaBN: every BatchNorm's running mean and variance become those of the target
    samples (a cumulative average over batches); nothing else changes. Returns how many
    layers were re-estimated."""
    layers = batchnorm_layers(model.features)
    if not layers:
        raise ConfigError("this backbone has no BatchNorm layers: AdaBN has nothing to re-estimate",
                          hint="use --adapt coral or --adapt dann")
    model.eval()
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts alike
        m.train()
    order = torch.randperm(len(x_target), generator=torch.Generator().manual_seed(0))
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        if len(idx) < 2:
            continue
        model.features(inputs.model_input(x_target[idx].to(device)))
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.eval()
    return len(layers)


class CORAL(Adaptation):
    name = "coral"
    wants_features = True

    def loss(self, step: Step) -> torch.Tensor | None:
        if step.extra_features is None:
            return None
        return self.weight * coral_loss(step.features.float(), step.extra_features.float())


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius distance of the two feature covariances / (4 d^2) (Sun & Saenko, 2016)."""
    d = source.shape[1]
    return (torch.cov(source.T) - torch.cov(target.T)).pow(2).sum() / (4 * d * d)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coefficient: float):
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coefficient * grad, None


class DANN(Adaptation):
    name = "dann"
    wants_features = True

    def __init__(self, *args, feature_dim: int, hidden: int = 256, **kwargs):
        super().__init__(*args, **kwargs)
        # Trains beside the model, never exported (it is not part of the Classifier).
        self.discriminator = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Dropout(0.5),
                                           nn.Linear(hidden, 1))
        self.domain_net = self.discriminator
        self.right, self.seen = 0, 0

    def modules(self) -> list[nn.Module]:
        return [self.discriminator]

    def before_fit(self, trainer) -> None:
        self.domain_net = trainer.dist.wrap(self.discriminator, trainer.device)  # gradients averaged under torchrun

    def loss(self, step: Step) -> torch.Tensor | None:
        if step.extra_features is None:
            return None
        coefficient = 2.0 / (1.0 + math.exp(-10.0 * step.progress)) - 1.0
        feats = torch.cat([step.features, step.extra_features]).float()
        domain = torch.cat([torch.zeros(len(step.features)), torch.ones(len(step.extra_features))]).to(feats.device)
        scores = self.domain_net(_ReverseGradient.apply(feats, coefficient)).squeeze(1)
        self.right += int(((scores > 0).float() == domain).sum())
        self.seen += len(domain)
        return self.weight * F.binary_cross_entropy_with_logits(scores, domain)

    def after_epoch(self, trainer, entry: dict) -> None:
        super().after_epoch(trainer, entry)
        # 0.5: the domains cannot be told apart from the features; 1.0: not aligned at all
        entry["domain_accuracy"] = self.right / max(1, self.seen)
        self.right, self.seen = 0, 0


def make_adaptation(method: str, x_target: torch.Tensor, source_prior: np.ndarray, cfg, feature_dim: int,
                    weight: float | None = None) -> Adaptation:
    cfg = cfg.for_task("classification")  # what was left unset: a classifier's defaults
    kwargs = dict(batch_size=cfg.batch_size, seed=cfg.seed, weight=weight)
    if method == "dann":
        return DANN(x_target, source_prior, feature_dim=feature_dim, **kwargs)
    return {"source-only": SourceOnly, "adabn": AdaBN, "coral": CORAL}[method](x_target, source_prior, **kwargs)


def candidates_for(method: str, strategy: str, has_batchnorm: bool = True) -> list[str]:
    if method != "auto":
        return [method]
    return ["source-only", *(m for m in METHODS if (strategy != "linear-probe" or m not in FEATURE_METHODS)
                             and (has_batchnorm or m != "adabn"))]


def check_method(method: str, features: nn.Module) -> None:
    """Before any training: AdaBN needs BatchNorm layers to re-estimate."""
    if method == "adabn" and not batchnorm_layers(features):
        raise ConfigError("this backbone has no BatchNorm layers: AdaBN has nothing to re-estimate",
                          hint="use --adapt coral, dann or auto")


def lost_the_source(row: dict, base: dict) -> bool:
    """Whether a method's source validation answers are worse than source-only's beyond
    both the tolerance and the noise of the samples that changed (see the docstring)."""
    if base["source_accuracy"] - row["source_accuracy"] <= SOURCE_TOLERANCE:
        return False
    lost, gained = row.get("source_lost"), row.get("source_gained")
    if lost is None or gained is None:  # no pairs to tell noise from loss
        return True
    return lost - gained > SIGN_TEST_Z * math.sqrt(lost + gained)


def choose(rows: dict[str, dict]) -> str:
    """auto's choice among the candidates' rows (see the module's docstring)."""
    base = rows["source-only"]
    eligible = [n for n, r in rows.items() if n != "source-only" and not lost_the_source(r, base)]
    best = max(eligible, key=lambda n: rows[n]["im"], default=None)
    return best if best is not None and rows[best]["im"] > base["im"] + AUTO_MARGIN else "source-only"


def fit_adapted(train, method: str, cfg, x_target: torch.Tensor, source_prior: np.ndarray, feature_dim: int,
                val: tuple, target_val: tuple | None = None, log=print, has_batchnorm: bool = True):
    """Train each candidate (`train(hooks)` -> trainer, history, state, epoch), score the
    final model of each without target labels, and keep `method`'s (auto: the best by
    the criterion, source-only unless a method beats it by AUTO_MARGIN).

    Returns (history, state, epoch, report); `report` goes into the card."""
    cfg = cfg.for_task("classification")
    names = candidates_for(method, cfg.strategy, has_batchnorm)
    if target_val is not None and "source-only" not in names and method != "adabn":
        names = ["source-only", *names]  # the baseline that target accuracy is compared with
    found: dict[str, dict] = {}
    reference = source_correct = None
    for name in names:
        if len(names) > 1:
            log(f"adaptation: training {name} ({names.index(name) + 1}/{len(names)})")
        hooks = make_adaptation(name, x_target, source_prior, cfg, feature_dim, cfg.adapt_weight)
        trainer, history, state, epoch = train(hooks)
        if name == "adabn" and "source-only" in found:
            source_correct = found["source-only"]["val_correct"]  # the same weights, source statistics
        if name == "adabn" and "source-only" not in names:
            # the model before re-estimation is its own source-only baseline
            trainer.model.load_state_dict(hooks.source_state)
            reference = trainer.probabilities(hooks.x_signals)
            source_correct = _correct(trainer, val)
            found["source-only"] = {"history": history, "state": hooks.source_state, "epoch": epoch,
                                    "probs": reference, "val_correct": source_correct}
            if target_val is not None:
                found["source-only"]["target_accuracy"] = trainer.evaluate(*target_val)[1]
        trainer.model.load_state_dict(state)
        probs = trainer.probabilities(hooks.x_signals)
        if name == "source-only":
            reference = probs
        val_correct = _correct(trainer, val)
        entry = {"history": history, "state": state, "epoch": epoch, "probs": probs, "val_correct": val_correct,
                 "source_correct": source_correct if name == "adabn" else val_correct}
        if target_val is not None:
            entry["target_accuracy"] = trainer.evaluate(*target_val)[1]
        found[name] = entry
    report_rows = {}
    base_correct = found["source-only"]["val_correct"] if "source-only" in found else None
    for name, entry in found.items():
        signals = label_free_signals(entry["probs"], source_prior, None if name == "source-only" else reference)
        source = entry.get("source_correct", entry["val_correct"])
        row = {"val_accuracy": float(entry["val_correct"].mean()), "source_accuracy": float(source.mean()),
               **signals, "best_epoch": entry["epoch"]}
        if base_correct is not None and name != "source-only":  # source val samples it lost and gained
            row.update(source_lost=int((base_correct & ~source).sum()), source_gained=int((~base_correct & source).sum()))
        if "target_accuracy" in entry:
            row["target_accuracy"] = entry["target_accuracy"]
        report_rows[name] = row
    chosen = choose(report_rows) if method == "auto" else method
    report = {"method": chosen, "asked": method, "criterion": CRITERION, "target_samples": len(x_target),
              "signal_samples": len(found[chosen]["probs"]), "final": report_rows[chosen], "candidates": report_rows}
    if target_val is not None:
        base, got = report_rows["source-only"]["target_accuracy"], report_rows[chosen]["target_accuracy"]
        ceiling = report_rows["source-only"]["val_accuracy"]  # in-domain accuracy: what the shift costs
        report["target_val"] = {"source_only": base, "adapted": got,
                                "gap_closed": (got - base) / (ceiling - base) if ceiling > base else None}
    kept = found[chosen]
    return kept["history"], kept["state"], kept["epoch"], report



def report_adaptation(report: dict) -> None:
    """What adaptation did, one line per candidate, and the target accuracy where it is known."""
    from edgetl.core import progress

    rows = report["candidates"]
    for name, row in rows.items():
        extra = f"  target_acc {row['target_accuracy']:.4f}" if "target_accuracy" in row else ""
        progress.info(f"{name:>12}: val_acc {row['val_accuracy']:.4f}  target im {row['im']:.3f} "
                      f"(entropy {row['entropy']:.3f}, balance {row['balance']:.3f})"
                      + extra + ("  <- kept" if name == report["method"] else ""))
    if report["asked"] == "auto" and report["method"] == "source-only":
        progress.info("adaptation: no method beat source-only by the label-free criterion (target im, source accuracy "
                      "kept); the source-only model is kept")
    if report.get("target_val"):
        tv = report["target_val"]
        gap = f", {tv['gap_closed']:.0%} of the gap to in-domain accuracy closed" if tv["gap_closed"] is not None else ""
        progress.info(f"target accuracy: {tv['adapted']:.4f} ({report['method']}) vs {tv['source_only']:.4f} "
                      f"(source-only){gap}")


def adabn_run(run, target_data=None, out=None, overwrite: bool = False, settings=None, **options):
    """`edgetl adapt`: AdaBN on an existing run, written as a new run (RUN-adabn by default)
    whose card records the method, the target data and the label-free figures before and
    after. Returns the new run's folder. `settings` (or its fields as keyword options):
    AdaptSettings."""
    import shutil
    from pathlib import Path

    from edgetl import modality as modalities
    from edgetl.core import progress
    from edgetl.core.card import ModelCard
    from edgetl.data.folders import open_unlabelled
    from edgetl.finetune.inputs import training_input
    from edgetl.finetune.run import CURVES, HISTORY, RunWriter, load_run
    from edgetl.finetune.settings import AdaptSettings, FinetuneSettings
    from edgetl.finetune.training import SampleSource, decode_unlabelled, set_torch_threads

    if target_data is not None:
        options["target_data"] = str(target_data)
    s = AdaptSettings.of(settings, **options)
    target_data, batch = s.target_data, s.batch
    set_torch_threads(s.threads)
    run = Path(run)
    model, card = load_run(run)
    out = Path(out) if out else run.with_name(run.name + "-adabn")
    kind = modalities.get(card.modality)
    target_split = open_unlabelled(target_data, kind.name)  # before anything is written
    writer = RunWriter(out, overwrite, {"run": run, "target data": target_data})
    try:
        pre = modalities.preprocessing_of(card)
        cfg = FinetuneSettings.from_record(card.source.get("config"))
        inputs = training_input(pre, "cpu", cfg, None)
        x_target = SampleSource(decode_unlabelled(target_split, kind, pre)[0], inputs)
        counts = card.source.get("train_counts") or {}
        prior = np.array([counts.get(c, 1) for c in card.labels], float)
        hooks = Adaptation(x_target, prior / prior.sum(), batch, cfg.seed)
        before = _probabilities(model, inputs, hooks.x_signals)
        n_layers = reestimate_batchnorm(model, inputs, x_target, "cpu", batch)
        after = _probabilities(model, inputs, hooks.x_signals)
        signals = {"source-only": label_free_signals(before, hooks.prior),
                   "adabn": label_free_signals(after, hooks.prior, before)}
        progress.info(f"AdaBN: {n_layers} BatchNorm layers re-estimated on {len(x_target)} target {kind.noun}s; "
                      f"target im {signals['source-only']['im']:.3f} -> {signals['adabn']['im']:.3f}, "
                      f"{signals['adabn']['agreement_with_source_only']:.1%} of answers unchanged")
        source = dict(card.source, adapted_from=str(run.resolve()),
                      adaptation={"method": "adabn", "asked": "adabn", "target_data": str(Path(target_data).resolve()),
                                  "target_samples": len(x_target), "criterion": CRITERION,
                                  "batchnorm_layers": n_layers, "final": signals["adabn"], "candidates": signals})
        writer.save_model(model.state_dict())
        new = ModelCard.from_dict({**card.to_dict(), "source": source})
        writer.save_card(new)
        for name in (HISTORY, CURVES):
            if (run / name).is_file():
                shutil.copy2(run / name, writer.folder / name)
        return writer.commit()
    except BaseException:
        writer.discard()
        raise


def _correct(trainer, val: tuple) -> np.ndarray:
    """Which source validation samples the trainer's model answers right."""
    x, y = val
    return (trainer.probabilities(x).argmax(1) == torch.as_tensor(y).cpu()).numpy()


@torch.no_grad()
def _probabilities(model, inputs, x) -> torch.Tensor:
    model.eval()
    batch = inference_batch(x.shape[1:])
    return torch.cat([torch.softmax(model(inputs.model_input(x[s:s + batch])).float(), 1) for s in range(0, len(x), batch)])
