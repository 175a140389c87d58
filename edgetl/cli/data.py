"""edgetl data: built-in data sets written as folder data sets (images, audio)."""
from __future__ import annotations

import json

import click

from edgetl.cli import options
from edgetl.data.settings import DigitScenesSettings, DigitsSettings, KeywordsSettings


@click.group("data")
def data_group():
    """Write a built-in data set as a folder data set (offline)."""


@data_group.command("digits")
@click.argument("out", type=click.Path(file_okay=False))
@options.from_settings(DigitsSettings)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a data set edgetl wrote (nothing else is replaced).")
def digits_cmd(out, overwrite, **values):
    """scikit-learn's real handwritten digits (1,797 images, 10 classes) as OUT/{train,val,test}/CLASS/*.png."""
    from edgetl.data.digits import make_digits
    from edgetl.data.folders import open_folder

    path = make_digits(out, DigitsSettings(**values), overwrite=overwrite)
    splits = open_folder(path, modality="image")
    counts = ", ".join(f"{name} {len(s)}" for name, s in splits.splits.items())
    click.echo(f"wrote {path}: {len(splits.classes)} classes; {counts}")


@data_group.command("digit-scenes")
@click.argument("out", type=click.Path(file_okay=False))
@options.from_settings(DigitScenesSettings)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a data set edgetl wrote (nothing else is replaced).")
def digit_scenes_cmd(out, overwrite, **values):
    """A detection set: real handwritten digits on real photos with their boxes, in the
    YOLO layout (OUT/images, OUT/labels, OUT/data.yaml)."""
    from edgetl.data.detection import open_detection
    from edgetl.data.digit_scenes import make_digit_scenes

    path = make_digit_scenes(out, DigitScenesSettings(**values), overwrite=overwrite)
    click.echo(f"wrote {open_detection(path).describe()}")


@data_group.command("keywords")
@click.argument("out", type=click.Path(file_okay=False))
@options.from_settings(KeywordsSettings, words=dict(callback=options.comma_list(), type=click.STRING,
                                                    default=",".join(KeywordsSettings().words)),
                       held_out_voices=dict(metavar="N"), stream_minutes=dict(metavar="MINUTES"))
@options.renamed("--stream", "--stream-minutes", "stream_minutes", type=float)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a data set edgetl wrote (nothing else is replaced).")
def keywords_cmd(out, overwrite, **values):
    """Spoken keywords synthesized with espeak-ng (1 s, 16 kHz clips with background noise)
    as OUT/{train,val,test}/WORD/*.wav; validation and test voices are never heard in training."""
    from edgetl.data.folders import open_folder
    from edgetl.data.keywords import make_keywords
    from edgetl.modality.audio import STREAMS

    path = make_keywords(out, KeywordsSettings(**values), overwrite=overwrite)
    splits = open_folder(path, modality="audio")
    counts = ", ".join(f"{name} {len(s)}" for name, s in splits.splits.items())
    click.echo(f"wrote {path}: {len(splits.classes)} classes ({', '.join(splits.classes)}); {counts} clips")
    for rec in sorted((path / STREAMS).glob("*.json")):
        doc = json.loads(rec.read_text())
        click.echo(f"wrote {path / STREAMS / doc['recording']}: {doc['seconds'] / 60:.1f} min, "
                   f"{len(doc['keywords'])} keywords said by {doc['split']} voices (times in {rec.name}, "
                   f"{rec.with_suffix('.csv').name})")


COMMANDS = [data_group]
