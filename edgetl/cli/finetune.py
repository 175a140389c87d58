"""edgetl finetune: adapt a pretrained backbone to a folder data set (images or audio)."""
from __future__ import annotations

import click

from edgetl.cli import options
from edgetl.finetune.settings import AdaptSettings, FinetuneSettings
from edgetl.modality.audio import AudioTrainingOptions
from edgetl.modality.image import ImageTrainingOptions


def _snr_range(ctx, param, value) -> tuple[float, float]:
    if isinstance(value, tuple):  # the default, already a range
        return value
    try:
        low, high = (float(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"expected LOW:HIGH in dB, e.g. 5:20, got {value!r}") from None
    return low, high


@click.command("finetune")
@click.argument("data", type=click.Path())
@click.option("--backbone", required=True, help="A name from `edgetl backbones`, or timm:NAME.")
@options.from_settings(FinetuneSettings, skip={"threads"},
                       target_data={"type": click.Path()}, target_val={"type": click.Path()})
@options.from_settings(ImageTrainingOptions)
@options.from_settings(AudioTrainingOptions, noise_snr_db={
    "type": click.STRING, "callback": _snr_range, "metavar": "LOW:HIGH",
    "default": "{:g}:{:g}".format(*options.library_default(AudioTrainingOptions, "noise_snr_db"))})
@options.threads("training (torch's intra- and inter-op threads)")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@options.overwrite("an existing edgetl run directory")
def finetune_cmd(data, backbone, out, overwrite, **settings):
    """Fine-tune BACKBONE on DATA (train/ and val/ class folders, or one folder of class folders;
    a detection data set in YOLO, COCO or Pascal VOC layout trains a detector).

    Multi-GPU: torchrun --nproc_per_node N -m edgetl.cli finetune DATA ... (DistributedDataParallel).
    """
    from edgetl.finetune import finetune

    result = finetune(data, backbone, out, overwrite=overwrite, **settings)
    if result.card is not None:
        if result.card.task == "detection":
            click.echo(f"val mAP {result.val_accuracy:.4f} (mAP@0.5 {result.card.metrics['val_map50']:.4f}, "
                       f"{result.chosen}) -> {result.out}")
        else:
            click.echo(f"val_accuracy {result.val_accuracy:.4f} ({result.chosen}) -> {result.out}")


@click.command("adapt")
@click.argument("run", type=click.Path())
@options.from_settings(AdaptSettings, target_data={"type": click.Path(), "required": True})
@click.option("--out", type=click.Path(file_okay=False), default=None, help="The adapted run (default: RUN-adabn).")
@options.overwrite("an existing edgetl run directory")
def adapt_cmd(run, target_data, out, overwrite, threads):
    """AdaBN on an existing run: BatchNorm statistics re-estimated on --target-data, nothing
    else changed; written as a new run that export, quantize and bench take as any other."""
    from edgetl.finetune.adaptation import adabn_run

    click.echo(f"adapted run -> {adabn_run(run, target_data, out, overwrite=overwrite, threads=threads)}")


COMMANDS = [finetune_cmd, adapt_cmd]
