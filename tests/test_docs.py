"""The docs cannot drift from the CLI: every `edgetl ...` command line of the README,
docs/ and benchmarks/README.md (code blocks and inline code) names a real command, and
every option it gives is one that command takes, with a value where it needs one."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from edgetl.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def command_lines(text: str) -> list[str]:
    """`edgetl ...` commands: lines of code blocks (continuations joined, comments cut)
    and inline code spans."""
    found, in_block, pending = [], False, ""
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            line = pending + line
            pending = ""
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            found += [part for part in re.split(r"&&|\|\||;|\|", _code(line)) if part.strip().startswith("edgetl ")]
        else:
            found += [span for span in re.findall(r"`([^`]+)`", line) if span.startswith("edgetl ")]
    return [" ".join(f.split()) for f in found]


def _code(line: str) -> str:
    """The line without its shell comment (a # outside quotes)."""
    out, quote = [], None
    for ch in line:
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        if ch == "#" and quote is None:
            break
        out.append(ch)
    return "".join(out)


def resolve(line: str) -> list[str]:
    """What is wrong with one command line (empty: it resolves)."""
    try:
        words = shlex.split(line)[1:]
    except ValueError as exc:
        return [f"cannot split: {exc}"]
    command, path = cli, ["edgetl"]
    while words and words[0].startswith("-") and words[0] in ("-q", "--quiet"):
        words = words[1:]
    while isinstance(command, click.Group) and words and not words[0].startswith("-") and words[0] != "...":
        if words[0] not in command.commands:
            return [f"{' '.join(path)} has no command {words[0]!r}"]
        path.append(words[0])
        command, words = command.commands[words[0]], words[1:]
    if isinstance(command, click.Group):
        return [] if not words or words[0] in ("--help", "-h", "--version", "...") else \
            [f"{' '.join(path)} needs a command"]
    # an old spelling kept for a release is hidden: the docs show the new one
    options = {name: p for p in command.params if isinstance(p, click.Option) and not p.hidden
               for name in (*p.opts, *p.secondary_opts)}
    problems = []
    for i, word in enumerate(words):
        if not word.startswith("--") or word in ("--help",):
            continue
        name = word.split("=", 1)[0]
        if name not in options:
            problems.append(f"{' '.join(path)} has no option {name}")
            continue
        p = options[name]
        takes_value = not p.is_flag and not p.count
        if takes_value and "=" not in word and (i + 1 >= len(words) or words[i + 1].startswith("--")):
            problems.append(f"{' '.join(path)} {name} needs a value")
    return problems


def _all_lines():
    for page in PAGES:
        if page.is_file():
            for line in command_lines(page.read_text()):
                yield page.relative_to(ROOT).as_posix(), line


def test_the_pages_show_many_commands():
    lines = list(_all_lines())
    assert len(lines) > 60 and len({page for page, _ in lines}) >= 8


@pytest.mark.parametrize("page, line", list(_all_lines()), ids=lambda v: v[:80])
def test_every_command_line_in_the_docs_resolves(page, line):
    assert resolve(line) == [], f"{page}: {line}"


def test_a_wrong_option_or_command_is_caught():
    assert resolve("edgetl finetune data --backbone x --out r --epochs 3") == []
    assert resolve("edgetl finetune data --epoch 3")
    assert resolve("edgetl fine-tune data")
    assert resolve("edgetl quantize m.onnx --target")
    assert resolve("edgetl data digits out --size 64") == []


def test_the_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) < 300
