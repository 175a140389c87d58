"""The edgetl command line: thin click commands over the Python API.

User errors (EdgeTLError) become one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import logging
import sys

import click

from edgetl import __version__
from edgetl.core import progress
from edgetl.core.errors import EdgeTLError
from edgetl.core.outputs import Terminated, remove_outputs_on_sigterm


class EdgeTLGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeTLError as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:  # click's own checks (types, choices, missing arguments): the same two lines
            command = exc.ctx.command_path if exc.ctx else "edgetl"
            click.echo(f"error: {exc.format_message()}", err=True)
            click.echo(f"hint: {command} --help lists the options and their values", err=True)
            ctx.exit(2)
        except PermissionError as exc:  # a path this user may not read or write, wherever edgetl met it
            click.echo(f"error: permission denied: {exc.filename or exc}", err=True)
            click.echo("hint: the user running edgetl needs read permission on its inputs (and on every folder "
                       "above them) and write permission where it writes; check with ls -ld", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was written", err=True)
            ctx.exit(130)
        except Terminated:
            click.echo("terminated; nothing was written", err=True)
            ctx.exit(143)


@click.group(cls=EdgeTLGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgetl")
@click.option("--quiet", "-q", is_flag=True, help="Hide progress; keep results, warnings and errors.")
def cli(quiet: bool) -> None:
    """Fine-tune a pretrained backbone on your data and ship it to the edge."""
    progress.set_quiet(quiet)
    log = logging.getLogger("edgetl")
    if not any(isinstance(h, progress.LevelLines) for h in log.handlers):
        log.addHandler(progress.LevelLines())
        log.propagate = False
    log.setLevel(logging.WARNING)


def _register() -> None:
    from edgetl.cli import (
        backbones,
        bench,
        cache,
        data,
        demo,
        deploy,
        doctor,
        evaluate,
        export,
        finetune,
        importer,
        predict,
        quantize,
        run,
    )

    for module in (backbones, data, finetune, importer, evaluate, export, quantize, bench, predict, deploy, run, demo,
                   doctor, cache):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    remove_outputs_on_sigterm()
    cli(prog_name="edgetl")


if __name__ == "__main__":
    sys.exit(main())
