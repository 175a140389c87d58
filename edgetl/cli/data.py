"""edgetl data: built-in data sets written as image folders."""
from __future__ import annotations

import click


@click.group("data")
def data_group():
    """Write a built-in data set as a folder data set (offline)."""


@data_group.command("digits")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--size", default=64, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Seed of the stratified train/val/test split.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a data set edgetl wrote (nothing else is replaced).")
def digits_cmd(out, size, seed, overwrite):
    """scikit-learn's real handwritten digits (1,797 images, 10 classes) as OUT/{train,val,test}/CLASS/*.png."""
    from edgetl.data.digits import make_digits
    from edgetl.data.folders import open_folder

    path = make_digits(out, size=size, seed=seed, overwrite=overwrite)
    splits = open_folder(path, modality="image")
    counts = ", ".join(f"{name} {len(s)}" for name, s in splits.splits.items())
    click.echo(f"wrote {path}: {len(splits.classes)} classes; {counts}")


COMMANDS = [data_group]
