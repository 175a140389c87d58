"""Options that several commands share, declared once: the same name means the same
thing everywhere, with one help text. A default comes from the library (the settings
dataclass or the function the command calls), never a second literal here."""
from __future__ import annotations

import dataclasses
import inspect

import click

from edgetl.runtime.runner import PRECISION_HINTS


def library_default(owner, name: str):
    """The default of field `name` of a settings dataclass, or of parameter `name` of a
    function: the one place it lives."""
    if dataclasses.is_dataclass(owner):
        field = {f.name: f for f in dataclasses.fields(owner)}[name]
        return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return inspect.signature(owner).parameters[name].default


def threads(what: str = "inference"):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help=f"CPU threads for {what} (e.g. 1 on a busy machine) [default: every core].")


def device(owner, name: str = "device", what: str = "cpu, cuda, cuda:N"):
    return click.option("--device", default=library_default(owner, name), show_default=True, help=what)


def backend(owner=None, name: str = "backend", help: str = "auto (by artifact kind) | onnxruntime | openvino | "
                                                             "tensorrt | torch"):
    default = library_default(owner, name) if owner is not None else "auto"
    return click.option("--backend", default=default, show_default=default is not None, help=help)


def precision_hint(owner, name: str = "precision_hint"):
    return click.option("--precision-hint", type=click.Choice(PRECISION_HINTS), default=library_default(owner, name),
                        show_default=True,
                        help="openvino: compute the float operations in this precision (bf16/f16 only where the "
                             "CPU has it).")


def overwrite(what: str):
    return click.option("--overwrite", is_flag=True, help=f"Replace {what} (nothing else is replaced).")


def json_flag(what: str):
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON on stdout.")


def _click_type(hint, field):
    choices = field.metadata.get("choices")
    if choices:
        return click.Choice([str(c) for c in choices])
    return {int: click.INT, float: click.FLOAT, str: click.STRING}.get(hint, click.STRING)


def from_settings(cls, skip=(), **overrides):
    """Click options for every command-line field of the settings dataclass `cls` (those
    not in `skip`): flag, type, default and help from the field. `overrides` maps a field
    to extra click keywords (e.g. a path type)."""
    import typing

    from edgetl.settings import flag_of

    hints = typing.get_type_hints(cls)

    def decorate(command):
        for field in reversed(dataclasses.fields(cls)):
            if field.name in skip or not field.metadata.get("cli", True):
                continue
            hint = hints[field.name]
            inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
            default = library_default(cls, field.name)
            kwargs = dict(help=field.metadata.get("help", ""), default=default,
                          show_default=default is not None and default is not False)
            flag = flag_of(field)
            if inner[0] is bool:
                if default is False and "/" not in flag:
                    kwargs.update(is_flag=True, show_default=False)
                elif "/" not in flag:
                    flag = f"{flag}/--no-{flag[2:]}"
            else:
                kwargs["type"] = _click_type(inner[0], field)
            kwargs.update(overrides.get(field.name, {}))
            command = click.option(flag, field.name, **kwargs)(command)
        return command

    return decorate
