"""Options that several commands share, declared once: the same name means the same
thing everywhere, with one help text. A default comes from the library (the settings
dataclass or the function the command calls), never a second literal here."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import types
import typing

import click

from edgetl.core.errors import ConfigError
from edgetl.core.settings import flag_of
from edgetl.core.threads import HELP as THREADS_DEFAULT


def library_default(owner, name: str):
    """The default of field `name` of a settings dataclass, or of parameter `name` of a
    function: the one place it lives."""
    if dataclasses.is_dataclass(owner):
        field = {f.name: f for f in dataclasses.fields(owner)}[name]
        return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return inspect.signature(owner).parameters[name].default


def threads(what: str = "inference", default: str = THREADS_DEFAULT):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help=f"CPU threads for {what} (e.g. 1 on a busy machine) {default}.")


def overwrite(what: str):
    return click.option("--overwrite", is_flag=True, help=f"Replace {what} (nothing else is replaced).")


def json_flag(what: str):
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON on stdout.")


class _IntChoice(click.Choice):
    """A choice among numbers, given to the settings as the number."""

    def convert(self, value, param, ctx):
        return int(super().convert(str(value), param, ctx))


def _click_type(hint, field):
    choices = field.metadata.get("choices")
    if choices and all(isinstance(c, int) for c in choices):
        return _IntChoice([str(c) for c in choices])
    if choices:
        return click.Choice([str(c) for c in choices])
    if hint is int and field.name == "threads":  # as options.threads declares it for the other commands
        return click.IntRange(min=1)
    return {int: click.INT, float: click.FLOAT, str: click.STRING}.get(hint, click.STRING)


def from_settings(cls, skip=(), **overrides):
    """Click options for every command-line field of the settings dataclass `cls` (those
    not in `skip`): flag, type, default and help from the field. `overrides` maps a field
    to extra click keywords (e.g. a path type)."""
    hints = typing.get_type_hints(cls)

    def decorate(command):
        for field in reversed(dataclasses.fields(cls)):
            if field.name in skip or not field.metadata.get("cli", True):
                continue
            hint = hints[field.name]
            optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
            inner = [a for a in typing.get_args(hint) if a is not type(None)] if optional else [hint]
            default = library_default(cls, field.name)
            kwargs = dict(help=field.metadata.get("help", ""), default=default,
                          show_default=default is not None and default is not False)
            flag = flag_of(field)
            if "callback" in overrides.get(field.name, {}):  # the command parses the text itself
                pass
            elif typing.get_origin(inner[0]) is tuple and typing.get_args(inner[0])[-1:] == (Ellipsis,):
                kwargs.update(multiple=True, type=click.STRING, show_default=False)  # repeatable
            elif inner[0] is bool:
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


def comma_list(cast=str, auto: str | None = None):
    """A callback: "1,8" -> (1, 8) (`cast` per item); `auto` stands for None. A bad item is
    one clear error."""
    def convert(ctx, param, value):
        if value is None or isinstance(value, tuple):
            return value
        if auto is not None and value.strip() == auto:
            return None
        try:
            return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated values, e.g. 1,8, got {value!r}") from None

    return convert


def renamed(old: str, new: str, dest: str, convert=lambda value: value, **kwargs):
    """The old spelling of an option, kept for one release: hidden from --help; given, it
    warns, names `new`, and stands for it (its value `convert`ed) before the command runs;
    both given is an error."""
    def decorate(command):
        hidden = f"{dest}_renamed"

        @functools.wraps(command)  # shares the click parameters declared so far
        def folded(*args, **values):
            value = values.pop(hidden)
            if value is not None:
                if click.get_current_context().get_parameter_source(dest) == click.core.ParameterSource.COMMANDLINE:
                    raise ConfigError(f"{old} and {new} are one option", hint=f"keep {new} only")
                logging.getLogger("edgetl").warning(f"{old} is now {new}; the old spelling goes in the next release")
                values[dest] = convert(value)
            return command(*args, **values)

        return click.option(old, hidden, hidden=True, default=None, **kwargs)(folded)

    return decorate


def given(names) -> list[str]:
    """The flags of the parameters `names` that the command line set (not defaults)."""
    ctx = click.get_current_context()
    params = {p.name: p for p in ctx.command.params}
    return [params[n].opts[0] for n in names if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]


def pick(cls, values: dict):
    """The settings `cls` from the command's keyword values (its fields, taken out of
    `values`); nested settings and fields left to the library keep their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: values.pop(k) for k in list(values) if k in names})
