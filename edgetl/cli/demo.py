"""edgetl demo: the default recipe (models/digits-lite0.yaml, or the keyword one with
--speech) on built-in data, offline, start to finish; a second run is served from the
stage cache."""
from __future__ import annotations

from pathlib import Path

import click

RECIPES = {False: "digits-lite0.yaml", True: "keywords-speech-embedding.yaml"}


def models_dir() -> Path:
    """The shipped recipes: models/ of the source tree edgetl runs from."""
    import edgetl

    return Path(edgetl.__file__).resolve().parents[1] / "models"


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--speech", is_flag=True, help="The keyword-spotting recipe instead of the image one.")
def demo_cmd(out, speech):
    """Run the default recipe: digits -> fine-tune the packaged EfficientNet-Lite0 -> evaluate ->
    export (ONNX, OpenVINO) behind the parity gate -> INT8 for OpenVINO, ONNX Runtime and TensorRT
    within a 1-point drop -> every artifact benchmarked -> a bundle. With --speech: spoken keywords,
    the speech embedding and a streaming operating point."""
    from edgetl.cli.run import print_summary
    from edgetl.core.errors import ConfigError
    from edgetl.pipeline.run import GateFailed, run_recipe

    recipe = models_dir() / RECIPES[speech]
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
