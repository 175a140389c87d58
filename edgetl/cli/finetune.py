"""edgetl finetune: adapt a pretrained backbone to a folder data set (images or audio)."""
from __future__ import annotations

import click

from edgetl.cli import options
from edgetl.finetune.config import FinetuneConfig
from edgetl.finetune.strategies import ADAPTATIONS, STRATEGIES


def _option(name: str, *decls, **kwargs):
    """A fine-tuning option whose default is FinetuneConfig's."""
    default = options.library_default(FinetuneConfig, name)
    flag = decls or (f"--{name.replace('_', '-')}", name)
    return click.option(*flag, default=default, show_default=default is not None and "show_default" not in kwargs,
                        **kwargs)


def _snr_range(ctx, param, value: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"expected LOW:HIGH in dB, e.g. 5:20, got {value!r}") from None
    return low, high


@click.command("finetune")
@click.argument("data", type=click.Path())
@click.option("--backbone", required=True, help="A name from `edgetl backbones`, or timm:NAME.")
@_option("weights", help="default | none | PATH to a state dict.")
@_option("strategy", type=click.Choice(STRATEGIES))
@_option("unfreeze", type=int, help="partial: last N stages train; gradual: at most N.")
@_option("gradual_every", type=click.Choice(["epoch", "plateau"]),
         help="gradual: unfreeze the next stage every epoch or when val accuracy stalls.")
@_option("epochs", type=int)
@_option("batch_size", type=int)
@_option("lr", type=float, help="Peak learning rate (AdamW, warm-up + cosine).")
@_option("backbone_lr_scale", type=float,
         help="Backbone learning rate as a share of --lr (gradual also decays it 0.7x per stage).")
@_option("weight_decay", type=float)
@_option("label_smoothing", type=float)
@_option("patience", type=int, help="Early stopping on val accuracy.")
@_option("input_size", type=int, help="Input side in pixels (default: the backbone's).")
@_option("val_split", type=float,
         help="Share of train held out when DATA has no val/ folder.")
@_option("limit_per_class", type=int, help="Use at most N training files per class.")
@_option("freeze_bn_stats", "--freeze-bn-stats/--train-bn-stats",
         help="Keep BatchNorm statistics at their pretrained values (default: only for gradual).")
@_option("hflip", "--hflip/--no-hflip", help="Images: random horizontal flips.")
@click.option("--noise-snr", "noise_snr_db", default="{:g}:{:g}".format(*options.library_default(FinetuneConfig, "noise_snr_db")),
              show_default=True, callback=_snr_range, help="Audio: background noise mixed in at a random SNR in LOW:HIGH dB.")
@_option("noise_prob", type=float, help="Audio: share of clips that get noise.")
@_option("shift_ms", type=float, help="Audio: random time shift, either way.")
@_option("gain_db", type=float, help="Audio: random gain, either way.")
@_option("silence_class", "--silence-class/--no-silence-class",
         help="Audio: add a _silence_ class of background noise at room levels (no speech); "
                   "default: when the data has _background_noise_.")
@_option("target_data", type=click.Path(),
         help="Unlabelled images or audio from the deployment domain (any layout; class folders are ignored).")
@_option("adapt", type=click.Choice(ADAPTATIONS),
         help="Domain adaptation to --target-data: adabn (BatchNorm statistics), coral (feature covariances), "
                   "dann (domain classifier, gradient reversal), auto (tries them, keeps the best by a label-free "
                   "criterion, or source-only).")
@_option("target_val", type=click.Path(),
         help="Labelled target data (test/, val/ or class folders): the report adds target accuracy and the "
                   "source-only baseline. Never used for choices.")
@_option("adapt_weight", type=float, help="Weight of coral's or dann's loss (default 10 and 1).")
@options.device(FinetuneConfig, what="auto | cpu | cuda[:N]")
@options.threads("training (torch's intra-op threads)")
@_option("seed", type=int)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@options.overwrite("an existing edgetl run directory")
def finetune_cmd(data, backbone, out, overwrite, **options):
    """Fine-tune BACKBONE on DATA (train/ and val/ class folders, or one folder of class folders).

    Multi-GPU: torchrun --nproc_per_node N -m edgetl.cli finetune DATA ... (DistributedDataParallel).
    """
    from edgetl.finetune import finetune

    result = finetune(data, backbone, out, overwrite=overwrite, **options)
    if result.card is not None:
        click.echo(f"val_accuracy {result.val_accuracy:.4f} (epoch {result.best_epoch}) -> {result.out}")


@click.command("adapt")
@click.argument("run", type=click.Path())
@click.option("--target-data", required=True, type=click.Path(),
              help="Unlabelled images or audio from the deployment domain (any layout; class folders are ignored).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="The adapted run (default: RUN-adabn).")
@options.overwrite("an existing edgetl run directory")
def adapt_cmd(run, target_data, out, overwrite):
    """AdaBN on an existing run: BatchNorm statistics re-estimated on --target-data, nothing
    else changed; written as a new run that export, quantize and bench take as any other."""
    from edgetl.finetune.adaptation import adabn_run

    click.echo(f"adapted run -> {adabn_run(run, target_data, out, overwrite=overwrite)}")


COMMANDS = [finetune_cmd, adapt_cmd]
