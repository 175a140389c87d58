"""edgetl data: built-in data sets written as folder data sets (images, audio)."""
from __future__ import annotations

import json

import click

from edgetl.cli import options


@click.group("data")
def data_group():
    """Write a built-in data set as a folder data set (offline)."""


@data_group.command("digits")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--size", default=64, show_default=True, help="Image side in pixels.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the stratified train/val/test split.")
@click.option("--domain", type=click.Choice(["textured", "blurred"]), default=None,
              help="The same digits and split in a shifted domain: textured (over real photos, a strong shift) "
                   "or blurred (blur, low contrast, noise, a mild one).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a data set edgetl wrote (nothing else is replaced).")
def digits_cmd(out, size, seed, domain, overwrite):
    """scikit-learn's real handwritten digits (1,797 images, 10 classes) as OUT/{train,val,test}/CLASS/*.png."""
    from edgetl.data.digits import make_digits
    from edgetl.data.folders import open_folder

    path = make_digits(out, size=size, seed=seed, overwrite=overwrite, domain=domain)
    splits = open_folder(path, modality="image")
    counts = ", ".join(f"{name} {len(s)}" for name, s in splits.splits.items())
    click.echo(f"wrote {path}: {len(splits.classes)} classes; {counts}")


@data_group.command("keywords")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--words", default="yes,no,up,down,left,right,on,off,stop,go", show_default=True,
              help="Comma-separated keywords, one class each.")
@click.option("--unknown", is_flag=True, help="Add an _unknown_ class of other words and of running speech without keywords.")
@click.option("--voices", default=80, show_default=True,
              help="How many espeak-ng voices (accent+variant); split by voice into train/val/test.")
@click.option("--takes", default=1, show_default=True, help="Renderings of each word per voice (random speed and pitch).")
@click.option("--held-out-voices", type=int, metavar="N",
              help="Voices for each of val and test (default: 15%% of --voices each); the rest train. More training "
                   "voices, not more takes, are what a detector needs for unseen speakers.")
@click.option("--stream-minutes", "stream_minutes", type=float, default=0, metavar="MINUTES",
              help="Also write OUT/_streams_/{val,test}.wav: MINUTES each of other speech and noise with the "
                   "keywords at known times (for evaluate --stream).")
@options.renamed("--stream", "--stream-minutes", "stream_minutes", type=float)
@click.option("--domain", type=click.Choice(["room", "phone"]), default=None,
              help="Every clip in a shifted acoustic condition: room (a far microphone in a simulated reverberant "
                   "room, a strong shift) or phone (an 8 kHz phone line's band, a mild one). Clips only, not --stream.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of voices, speeds, pitches, noise and split.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a data set edgetl wrote (nothing else is replaced).")
def keywords_cmd(out, words, unknown, voices, takes, held_out_voices, stream_minutes, domain, seed, overwrite):
    """Spoken keywords synthesized with espeak-ng (1 s, 16 kHz clips with background noise)
    as OUT/{train,val,test}/WORD/*.wav; validation and test voices are never heard in training."""
    from edgetl.data.folders import open_folder
    from edgetl.data.keywords import make_keywords
    from edgetl.modality.audio import STREAMS

    path = make_keywords(out, words=words.split(","), unknown=unknown, voices=voices, takes=takes, seed=seed,
                         stream_minutes=stream_minutes, overwrite=overwrite, domain=domain,
                         held_out_voices=held_out_voices)
    splits = open_folder(path, modality="audio")
    counts = ", ".join(f"{name} {len(s)}" for name, s in splits.splits.items())
    click.echo(f"wrote {path}: {len(splits.classes)} classes ({', '.join(splits.classes)}); {counts} clips")
    for rec in sorted((path / STREAMS).glob("*.json")):
        doc = json.loads(rec.read_text())
        click.echo(f"wrote {path / STREAMS / doc['recording']}: {doc['seconds'] / 60:.1f} min, "
                   f"{len(doc['keywords'])} keywords said by {doc['split']} voices (times in {rec.name}, "
                   f"{rec.with_suffix('.csv').name})")


COMMANDS = [data_group]
