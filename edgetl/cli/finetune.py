"""edgetl finetune: adapt a pretrained backbone to a folder data set (images or audio)."""
from __future__ import annotations

import click

from edgetl.finetune.strategies import ADAPTATIONS, STRATEGIES


def _snr_range(ctx, param, value: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"expected LOW:HIGH in dB, e.g. 5:20, got {value!r}") from None
    return low, high


@click.command("finetune")
@click.argument("data", type=click.Path())
@click.option("--backbone", required=True, help="A name from `edgetl backbones`, or timm:NAME.")
@click.option("--weights", default="default", show_default=True, help="default | none | PATH to a state dict.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="full", show_default=True)
@click.option("--unfreeze", type=int, default=None, help="partial: last N stages train; gradual: at most N.")
@click.option("--gradual-every", type=click.Choice(["epoch", "plateau"]), default="epoch", show_default=True,
              help="gradual: unfreeze the next stage every epoch or when val accuracy stalls.")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate (AdamW, warm-up + cosine).")
@click.option("--backbone-lr-scale", type=float, default=1.0, show_default=True,
              help="Backbone learning rate as a share of --lr (gradual also decays it 0.7x per stage).")
@click.option("--weight-decay", type=float, default=0.05, show_default=True)
@click.option("--label-smoothing", type=float, default=0.1, show_default=True)
@click.option("--patience", type=int, default=5, show_default=True, help="Early stopping on val accuracy.")
@click.option("--input-size", type=int, default=None, help="Input side in pixels (default: the backbone's).")
@click.option("--val-split", type=float, default=0.2, show_default=True,
              help="Share of train held out when DATA has no val/ folder.")
@click.option("--limit-per-class", type=int, default=None, help="Use at most N training files per class.")
@click.option("--freeze-bn-stats/--train-bn-stats", default=None,
              help="Keep BatchNorm statistics at their pretrained values (default: only for gradual).")
@click.option("--hflip/--no-hflip", default=True, show_default=True, help="Images: random horizontal flips.")
@click.option("--noise-snr", "noise_snr_db", default="5:20", show_default=True, callback=_snr_range,
              help="Audio: background noise mixed in at a random SNR in LOW:HIGH dB.")
@click.option("--noise-prob", type=float, default=0.8, show_default=True, help="Audio: share of clips that get noise.")
@click.option("--shift-ms", type=float, default=100.0, show_default=True, help="Audio: random time shift, either way.")
@click.option("--gain-db", type=float, default=6.0, show_default=True, help="Audio: random gain, either way.")
@click.option("--silence-class/--no-silence-class", default=None,
              help="Audio: add a _silence_ class of background noise at room levels (no speech); "
                   "default: when the data has _background_noise_.")
@click.option("--target-data", type=click.Path(), default=None,
              help="Unlabelled images or audio from the deployment domain (any layout; class folders are ignored).")
@click.option("--adapt", type=click.Choice(ADAPTATIONS), default=None,
              help="Domain adaptation to --target-data: adabn (BatchNorm statistics), coral (feature covariances), "
                   "dann (domain classifier, gradient reversal), auto (tries them, keeps the best by a label-free "
                   "criterion, or source-only).")
@click.option("--target-val", type=click.Path(), default=None,
              help="Labelled target data (test/, val/ or class folders): the report adds target accuracy and the "
                   "source-only baseline. Never used for choices.")
@click.option("--adapt-weight", type=float, default=None, help="Weight of coral's or dann's loss (default 10 and 1).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@click.option("--overwrite", is_flag=True, help="Replace an existing edgetl run directory (nothing else is replaced).")
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
@click.option("--overwrite", is_flag=True, help="Replace an existing edgetl run directory (nothing else is replaced).")
def adapt_cmd(run, target_data, out, overwrite):
    """AdaBN on an existing run: BatchNorm statistics re-estimated on --target-data, nothing
    else changed; written as a new run that export, quantize and bench take as any other."""
    from edgetl.finetune.adaptation import adabn_run

    click.echo(f"adapted run -> {adabn_run(run, target_data, out, overwrite=overwrite)}")


COMMANDS = [finetune_cmd, adapt_cmd]
