"""A default lives in one place: every CLI option that sets a library parameter or a
settings field has the library's default, and shared options mean one thing."""
from __future__ import annotations

import dataclasses
import importlib
import inspect

import click
import pytest

from edgetl.cli import cli

# command -> the library objects it calls ("module:name", a function or settings dataclass)
LIBRARY = {
    "finetune": ["edgetl.finetune.settings:FinetuneSettings", "edgetl.modality.image:ImageTrainingOptions",
                 "edgetl.modality.audio:AudioTrainingOptions", "edgetl.finetune.job:finetune"],
    "adapt": ["edgetl.finetune.settings:AdaptSettings"],
    "evaluate": ["edgetl.evaluate.settings:EvaluateSettings", "edgetl.evaluate.settings:StreamEvalSettings"],
    "export": ["edgetl.export.settings:ExportSettings"],
    "import": ["edgetl.importer.settings:ImportSettings"],
    "quantize": ["edgetl.quantize.settings:QuantizeSettings", "edgetl.quantize.settings:NncfOptions",
                 "edgetl.quantize.settings:QatOptions"],
    "build-engine": ["edgetl.deploy.settings:EngineSettings"],
    "bench": ["edgetl.bench.settings:BenchSettings"],
    "package": ["edgetl.deploy.settings:PackageSettings"],
    "verify": ["edgetl.runtime.verify:verify"],
    "predict": ["edgetl.runtime.predict:PredictSettings"],
    "data digits": ["edgetl.data.settings:DigitsSettings"],
    "data digit-scenes": ["edgetl.data.settings:DigitScenesSettings"],
    "data keywords": ["edgetl.data.settings:KeywordsSettings"],
    "backbones": ["edgetl.backbones:list_backbones"],
    "run": ["edgetl.pipeline.run:run_recipe"],
    "cache clear": ["edgetl.core.disk_cache:clear"],
}
def _commands(group: click.Group = cli, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _library_defaults(refs: list[str]) -> dict:
    out = {}
    for ref in refs:
        module, name = ref.split(":")
        obj = getattr(importlib.import_module(module), name)
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                if f.default is not dataclasses.MISSING:
                    out.setdefault(f.name, f.default)
                elif f.default_factory is not dataclasses.MISSING:
                    out.setdefault(f.name, f.default_factory())
        else:
            for p in inspect.signature(obj).parameters.values():
                if p.default is not inspect.Parameter.empty:
                    out.setdefault(p.name, p.default)
    return out


def _cli_default(command: click.Command, param: click.Option):
    ctx = click.Context(command)
    raw = param.get_default(ctx)
    if raw is None or raw is getattr(click.core, "UNSET", None):  # no default: the library's None
        return () if param.multiple else None
    value = param.type_cast_value(ctx, raw)
    if param.callback and value is not None:
        value = param.callback(ctx, param, value)
    return value


def _same(a, b) -> bool:
    if isinstance(a, str) and isinstance(b, (list, tuple)):  # a comma-separated list on the command line
        a = a.split(",")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_every_cli_default_is_the_library_default(name):
    command = dict(_commands())[name]
    library = _library_defaults(LIBRARY[name])
    compared, differ = [], []
    for param in command.params:
        if not isinstance(param, click.Option) or param.is_flag and param.default in (False, None):
            continue
        key = param.name
        if key not in library:
            continue
        compared.append(key)
        cli_value = _cli_default(command, param)
        if not _same(cli_value, library[key]):
            differ.append(f"--{param.name.replace('_', '-')}: CLI {cli_value!r}, library {library[key]!r}")
    assert compared, f"{name}: no option of the command was compared with the library"
    assert differ == [], f"{name}: {differ}"


# the Python API (edgetl/__init__.py) -> the library function each one calls
FACADE = {"list_backbones": "edgetl.backbones:list_backbones", "finetune": "edgetl.finetune.job:finetune",
          "adapt": "edgetl.finetune.adaptation:adabn_run", "evaluate": "edgetl.evaluate.accuracy:evaluate",
          "export": "edgetl.export:export_run",
          "import_model": "edgetl.importer:import_model", "quantize": "edgetl.quantize:quantize",
          "bench": "edgetl.bench.harness:bench", "predict": "edgetl.runtime.predict:predict",
          "evaluate_stream": "edgetl.evaluate.stream:evaluate_stream", "package": "edgetl.deploy.package:package",
          "verify": "edgetl.deploy.tensorrt_engine:verify_on_device", "doctor": "edgetl.runtime.doctor:doctor",
          "run": "edgetl.pipeline.run:run_recipe", "make_digits": "edgetl.data.digits:make_digits",
          "make_digit_scenes": "edgetl.data.digit_scenes:make_digit_scenes",
          "make_keywords": "edgetl.data.keywords:make_keywords"}


def test_the_python_api_adds_no_defaults_of_its_own():
    """Every default a facade function declares is its library function's for the same
    parameter (most declare none and pass settings and options through)."""
    import ast

    import edgetl

    # read from the source: `edgetl.evaluate` and the like become their callable packages once imported
    tree = ast.parse(inspect.getsource(edgetl))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert set(functions) == set(FACADE) and set(FACADE) <= set(edgetl.__all__)
    declared = 0
    for name, ref in FACADE.items():
        module, attr = ref.split(":")
        library = inspect.signature(getattr(importlib.import_module(module), attr)).parameters
        args = functions[name].args
        positional = args.args[len(args.args) - len(args.defaults):]
        for arg, default in [*zip(positional, args.defaults), *zip(args.kwonlyargs, args.kw_defaults)]:
            if default is None:
                continue
            declared += 1
            assert arg.arg in library and library[arg.arg].default == ast.literal_eval(default), (name, arg.arg)
    assert declared >= 1  # the check reads the defaults there are


def test_every_command_is_mapped_to_its_library():
    commands = {n for n, _ in _commands()} - {"demo", "doctor"}  # a fixed recipe; no option with a default
    assert commands <= set(LIBRARY), commands - set(LIBRARY)


def test_shared_options_have_one_meaning_across_commands():
    """--threads is a count of at least 1 wherever it is, and every command that runs a
    model or trains takes it."""
    for name, command in _commands():
        params = {p.name: p for p in command.params if isinstance(p, click.Option)}
        if "threads" in params:
            assert isinstance(params["threads"].type, click.IntRange) and params["threads"].type.min == 1, name
            assert params["threads"].default is None, name
    computing = {"finetune", "evaluate", "predict", "bench", "verify"}
    have = {n for n, c in _commands() if any(p.name == "threads" for p in c.params)}
    assert computing <= have, computing - have


def test_finetune_threads_caps_torchs_threads(tiny_digits, tmp_path):
    import torch
    from click.testing import CliRunner

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = CliRunner().invoke(cli, ["-q", "finetune", str(tiny_digits), "--backbone", "efficientnet_lite0",
                                          "--strategy", "linear-probe", "--epochs", "1", "--input-size", "32",
                                          "--batch-size", "8", "--threads", "1", "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        from edgetl.core.card import ModelCard

        assert ModelCard.load(tmp_path / "run").source["config"]["threads"] == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command, old, new", [
    (["bench", "{onnx}", "--iters", "2", "--warmup", "0", "--threads", "1"], ["--batch", "1,2"], ["--batch-sizes", "1,2"]),
])
def test_an_old_spelling_still_works_for_a_release_and_names_the_new_one(command, old, new, quant_onnx):
    from click.testing import CliRunner

    args = [a.format(onnx=quant_onnx) for a in command]
    result = CliRunner().invoke(cli, ["-q", *args, *old, "--json"])
    assert result.exit_code == 0, result.output
    assert f"{old[0]} is now {new[0]}" in result.output
    import json

    rows = json.loads(result.output[result.output.index("{"):])["rows"]
    assert sorted({r["batch"] for r in rows}) == [1, 2]
    both = CliRunner().invoke(cli, ["-q", *args, *old, *new])
    assert both.exit_code == 2 and "one option" in both.output


def test_old_spellings_are_hidden_and_every_name_has_one_meaning():
    """--batch, --stream and a --json PATH were each two things; their old spellings are
    hidden, and the visible names mean one thing across commands."""
    meanings: dict[str, set] = {}
    for _, command in _commands():
        for p in command.params:
            if isinstance(p, click.Option) and not p.hidden:
                for opt in p.opts:
                    meanings.setdefault(opt, set()).add("flag" if p.is_flag or p.flag_value is not None else "value")
    assert meanings["--json"] == {"flag"}
    assert "--batch" not in meanings and "--stream-minutes" in meanings and "--batch-profile" in meanings
