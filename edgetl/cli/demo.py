"""edgetl demo: the default recipe (models/digits-lite0.yaml; the keyword one with
--speech, the detection one with --detection) on built-in data, offline, start to
finish; a second run is served from the stage cache."""
from __future__ import annotations

from pathlib import Path

import click

RECIPES = {"image": "digits-lite0.yaml", "speech": "keywords-speech-embedding.yaml",
           "detection": "scenes-lite0-detector.yaml"}


def models_dir() -> Path:
    """The shipped recipes: models/ of the source tree edgetl runs from."""
    import edgetl

    return Path(edgetl.__file__).resolve().parents[1] / "models"


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--speech", is_flag=True, help="The keyword-spotting recipe instead of the image one.")
@click.option("--detection", is_flag=True, help="The object-detection recipe instead of the image one.")
def demo_cmd(out, speech, detection):
    """Run the default recipe: digits -> fine-tune the packaged EfficientNet-Lite0 -> evaluate ->
    export (ONNX, OpenVINO) behind the parity gate -> INT8 for OpenVINO, ONNX Runtime and TensorRT
    within a 1-point drop -> every artifact benchmarked -> a bundle. With --speech: spoken keywords,
    the speech embedding and a streaming operating point. With --detection: digits on photos, a
    detector on the same backbone, INT8 within one mAP point, a bundle with reference detections."""
    from edgetl.cli.run import print_summary
    from edgetl.core.errors import ConfigError
    from edgetl.pipeline.run import GateFailed, run_recipe

    if speech and detection:
        raise ConfigError("--speech and --detection are two demos", hint="pass one of them")
    recipe = models_dir() / RECIPES["speech" if speech else "detection" if detection else "image"]
    if not recipe.is_file():
        raise ConfigError(f"the shipped recipe {recipe.name} is not here ({recipe.parent})",
                          hint="run the demo from a clone of edgetl, or pass a recipe to `edgetl run`")
    try:
        result = run_recipe(recipe, out)
    except GateFailed as exc:
        print_summary(exc.pipeline)
        raise
    print_summary(result)
    folder = Path(out)
    example = sorted((folder / "bundle" / "reference").glob("*.*"))
    click.echo(f"\nrecipe: {recipe}")
    click.echo(f"run: {folder / 'run'}; benchmark: {folder / 'bench.json'}, plot: {folder / 'bench.png'}")
    click.echo(f"bundle: {folder / 'bundle'}")
    if example:
        click.echo(f"try: edgetl predict {folder / 'bundle'} {example[0]}")


COMMANDS = [demo_cmd]
