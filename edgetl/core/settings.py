"""Settings objects: one plain dataclass per stage, the one place its defaults, help and
valid values live. The CLI builds its options from the fields (cli/options.py), recipes
read them from YAML (`from_dict`), and the library validates them (`check`) whoever
called it, so a Python user gets the same errors as a CLI user.

A field is declared with `setting(default, help, ...)`: its range or choices are
checked by `check()`, which then runs the class's own `validate()` for the rules that
tie fields together. Values are plain data (numbers, strings, tuples, None, nested
settings), so a settings object round-trips through JSON and YAML.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from typing import Any, TypeVar, cast

from edgetl.core.errors import ConfigError
from edgetl.core.threads import HELP as THREADS_DEFAULT

if typing.TYPE_CHECKING:  # Self: Python 3.11's typing, the runtime also runs on 3.10 (JetPack 6)
    from typing import Self

    from _typeshed import DataclassInstance


def setting(default: Any, help: str = "", *, choices: tuple[Any, ...] | None = None, min: float | None = None,
            max: float | None = None, above: float | None = None, below: float | None = None, flag: str | None = None,
            cli: bool = True, example: str | None = None, path: bool | str = False, key: str | None = None) -> Any:
    """A settings field. `min`/`max` are inclusive bounds, `above`/`below` exclusive ones;
    `flag` overrides the CLI spelling (default: --field-name); `cli=False` keeps the field
    out of the command line (set by the command itself or by recipes); `path=True`: a file
    or folder, which a recipe names relative to its own folder (`path="if-there"`: a file
    when one is there, else a value, as labels given as a file or as a,b,c); `key`: the recipe's key
    where it cannot be the field's name (a Python keyword such as `import`)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "above": above, "below": below, "flag": flag,
            "cli": cli, "example": example, "path": path, "key": key}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        made = default
        return dataclasses.field(default_factory=lambda: dataclasses.replace(made), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def threads_setting(what: str = "inference") -> Any:
    """The --threads field of every stage that computes (edgetl/core/threads.py: the default)."""
    return setting(None, f"CPU threads for {what} (e.g. 1 on a busy machine) {THREADS_DEFAULT}.", min=1, example="1")


def flag_of(field: dataclasses.Field[Any]) -> str:
    flag: str | None = field.metadata.get("flag")
    return flag or f"--{field.name.replace('_', '-')}"


def _fields(settings: object) -> tuple[dataclasses.Field[Any], ...]:
    """The fields of a settings dataclass (or its class)."""
    return dataclasses.fields(cast("DataclassInstance", settings))


def _hint(field: dataclasses.Field[Any]) -> str:
    example = field.metadata.get("example")
    if example:
        return f"e.g. {flag_of(field)} {example}"
    if field.metadata.get("choices"):
        return f"use one of {', '.join(map(str, field.metadata['choices']))}"
    return f"see --help for {flag_of(field)}"


class Settings:
    """Base of the stage settings dataclasses."""

    def check(self, where: str | None = None) -> Self:
        """Every field within its declared range or choices, then the class's own rules;
        a ConfigError names the option (its key path `where.field` in a recipe), the value
        and the remedy. Returns self."""
        for f in _fields(self):
            value, meta = getattr(self, f.name), f.metadata
            # where="" is a recipe's root: its fields are named by their keys
            key = meta.get("key") or f.name
            path = f"{where}.{key}" if where else (key if where == "" else None)
            if isinstance(value, Settings):
                value.check(path)
                continue
            if isinstance(value, tuple) and any(isinstance(v, Settings) for v in value):
                for i, v in enumerate(value):
                    v.check(f"{path}[{i}]" if path else None)
                continue
            if value is None:
                continue
            if meta.get("choices") and value not in meta["choices"]:
                name = f"{path}:" if path else f"{f.name.replace('_', ' ')} ({flag_of(f)}):"
                raise ConfigError(f"unknown {name} {shown(value)}" if not path else f"{name} unknown value {shown(value)}",
                                  hint=_hint(f))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                low, high, above, below = (meta.get(k) for k in ("min", "max", "above", "below"))
                if math.isnan(value) or (low is not None and value < low) or (high is not None and value > high) \
                        or (above is not None and value <= above) or (below is not None and value >= below):
                    bounds = [f"at least {low:g}" if low is not None else "", f"above {above:g}" if above is not None
                              else "", f"at most {high:g}" if high is not None else "",
                              f"below {below:g}" if below is not None else ""]
                    name = f"{path}: must be" if path else f"{flag_of(f)} must be"
                    rule = " and ".join(b for b in bounds if b) or "a number"  # NaN where no bound is declared
                    raise ConfigError(f"{name} {rule}, got {value:g}", hint=_hint(f))
        try:
            self.validate()
        except ConfigError as exc:
            if where and not exc.message.startswith(where):
                raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
            raise
        return self

    def validate(self) -> None:
        """The rules that tie fields together (subclasses)."""

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            if isinstance(v, Settings):
                return v.to_dict()
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            return v

        return {f.metadata.get("key") or f.name: plain(getattr(self, f.name)) for f in _fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = "") -> Self:
        """Settings from plain data (a recipe section, a card's record). An unknown key, a
        value of the wrong type or out of range is a ConfigError that names its path."""
        return _build(cls, data or {}, where).check(where)

    def replace(self, **changes: Any) -> Self:
        return cast("Self", dataclasses.replace(cast("DataclassInstance", self), **changes))

    def anchored(self, folder: str | os.PathLike[str]) -> Self:
        """These settings with every relative path field (`setting(path=True)`) taken from
        `folder`, nested settings included: a recipe names its files from its own folder.
        The words a path field may hold instead of a path (default, none) stay."""
        changes: dict[str, Any] = {}
        for f in _fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Settings):
                changes[f.name] = value.anchored(folder)
            elif isinstance(value, tuple) and any(isinstance(v, Settings) for v in value):
                changes[f.name] = tuple(v.anchored(folder) if isinstance(v, Settings) else v for v in value)
            elif f.metadata.get("path") and isinstance(value, str) and value not in ("default", "none") \
                    and not os.path.isabs(os.path.expanduser(value)):
                anchored = os.path.join(folder, value)
                if f.metadata["path"] != "if-there" or os.path.exists(anchored):  # a file, or a value (labels a,b,c)
                    changes[f.name] = anchored
        return self.replace(**changes) if changes else self

    @classmethod
    def of(cls, settings: Self | None = None, **options: Any) -> Self:
        """`settings`, or settings made from keyword options as the Python API takes them
        (an unknown one is a ConfigError that lists the known), checked."""
        if settings is None:
            known = [f.name for f in _fields(cls)]
            unknown = [k for k in options if k not in known]
            if unknown:
                raise ConfigError(f"unknown option {unknown[0]!r}", hint=f"{cls.__name__} takes: {', '.join(known)}")
            settings = cls(**options)
        elif options:
            raise ConfigError(f"pass either settings or options, not both ({', '.join(options)})",
                              hint=f"settings.replace({next(iter(options))}=...)")
        return settings.check()


S = TypeVar("S", bound=Settings)


def _build(cls: type[S], data: dict[str, Any], where: str) -> S:
    """`cls` from a mapping: every key a field of it, every value of the field's type (not
    checked yet: the caller checks the whole)."""
    prefix = f"{where}." if where else ""
    names = {f.metadata.get("key") or f.name: f.name for f in _fields(cls)}  # key -> field, in order
    fields = list(names)
    unknown = [k for k in data if k not in names]
    if unknown:
        import difflib

        close = difflib.get_close_matches(str(unknown[0]), fields, n=1)
        raise ConfigError(f"{prefix}{unknown[0]}: unknown setting" + (f"; did you mean {close[0]}?" if close else ""),
                          hint=f"{cls.__name__} takes: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{names[k]: _coerce(v, hints[names[k]], f"{prefix}{k}") for k, v in data.items()})


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` as the annotated type, or a ConfigError that names `where`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kinds = [a for a in args if a is not type(None)]
        for kind in kinds:
            try:
                return _coerce(value, kind, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {' or '.join(_name(k) for k in kinds)}, got {shown(value)}",
                          hint="see the stage's settings in docs/")
    if isinstance(hint, type) and issubclass(hint, Settings):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {shown(value)}", hint="see docs/")
        return _build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {shown(value)}", hint="e.g. [5, 20]")
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"{where}: expected {_name(hint)}, got {shown(value)}", hint="see the stage's settings in docs/")


def shown(value: Any, limit: int = 80) -> str:
    """A value as an error message names it: a repr bounded in depth and width before it
    is made (a YAML alias bomb is shared references that a full repr expands to
    megabytes), cut at `limit` characters."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxstring, short.maxother = 3, 4, 4, 4, limit, limit
    text = short.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _name(hint: Any) -> str:
    return str(getattr(hint, "__name__", hint))


__all__ = ["Settings", "flag_of", "setting", "shown"]
