"""The recipe reference (docs/recipe-keys.md): every key of every section with its type,
default, valid values and help, generated from the settings objects, so the page cannot
drift from what recipes read (a test compares them).

    python -m edgetl.pipeline.reference > docs/recipe-keys.md
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from edgetl.core.settings import Settings

HEADER = """# Recipe keys

Every key a recipe (`edgetl run RECIPE.yaml`, [recipes](recipes.md)) reads, section by
section, generated from the stage settings by `python -m edgetl.pipeline.reference` (a test
keeps this page equal to them). A section's keys are its command's options (`--input-size`
is `input_size`), and `--set section.key=value` changes one for a run. A key that is not
listed here is refused with the closest one named. Paths are taken from the recipe's folder.
"""


def _section_type(hint: Any) -> type[Settings] | None:
    """The settings class a field holds (itself, optional, or a list of them), if any."""
    for kind in (hint, *typing.get_args(hint)):
        if isinstance(kind, type) and issubclass(kind, Settings):
            return kind
        for inner in typing.get_args(kind):  # tuple[QuantizeSettings, ...]
            if isinstance(inner, type) and issubclass(inner, Settings):
                return inner
    return None


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or none" if type(None) in args else "")
    if origin is tuple:
        return f"list of {_type_name(args[0]) if args else 'values'}"
    if isinstance(hint, type) and issubclass(hint, Settings):
        return "section"
    return {bool: "true/false", int: "integer", float: "number", str: "text"}.get(hint, getattr(hint, "__name__",
                                                                                               str(hint)))


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return ""
    if isinstance(value, Settings):
        return "(its defaults)"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _valid(meta: typing.Mapping[str, Any]) -> str:
    if meta.get("choices"):
        return " \\| ".join(f"`{c}`" for c in meta["choices"])
    bounds = [f"≥ {_number(meta['min'])}" if meta.get("min") is not None else "",
              f"> {_number(meta['above'])}" if meta.get("above") is not None else "",
              f"≤ {_number(meta['max'])}" if meta.get("max") is not None else "",
              f"< {_number(meta['below'])}" if meta.get("below") is not None else ""]
    return ", ".join(b for b in bounds if b)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def sections(cls: Any, path: str = "") -> list[tuple[str, Any]]:
    """(key path, settings class) of `cls` and of every section under it, depth first."""
    found = [(path, cls)]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = _section_type(hints[f.name])
        if inner is not None:
            key = f.metadata.get("key") or f.name
            listed = typing.get_origin(hints[f.name]) is tuple
            found += sections(inner, (f"{path}.{key}" if path else key) + ("[]" if listed else ""))
    return found


def table(cls: Any) -> str:
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default | valid | what it does |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        key = f.metadata.get("key") or f.name
        rows.append(f"| `{key}` | {_type_name(hints[f.name])} | {_default(f)} | {_valid(f.metadata)} | "
                    f"{_cell(f.metadata.get('help', ''))} |")
    return "\n".join(rows)


def recipe_reference() -> str:
    from edgetl.pipeline.recipe import Recipe

    parts = [HEADER]
    for path, cls in sections(Recipe):
        doc = " ".join((cls.__doc__ or "").split()) if cls.__doc__ and not cls.__doc__.startswith(cls.__name__) else ""
        title = f"`{path}`" if path else "The top level"
        parts.append(f"## {title}\n\n" + (f"{doc}\n\n" if doc else "") + table(cls) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(recipe_reference(), end="")
