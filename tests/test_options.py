"""Every command with invalid option values: exit 2, one `error:` line and one `hint:`
line, no traceback, and nothing written. A new option that skips validation fails here."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgetl.cli import cli

# {data}, {run}, {onnx} and {out} are filled in by the test.
CASES = {
    "finetune": [
        ["--epochs", "0"], ["--epochs", "abc"], ["--batch-size", "1"], ["--lr", "0"], ["--lr", "1e12"],
        ["--weight-decay", "-1"], ["--label-smoothing", "2"], ["--patience", "-1"], ["--patience", "0"],
        ["--input-size", "8"], ["--val-split", "1.5"], ["--limit-per-class", "0"], ["--unfreeze", "0"],
        ["--strategy", "linear-probe", "--unfreeze", "2"], ["--strategy", "full", "--gradual-every", "plateau"],
        ["--strategy", "partial"], ["--strategy", "partial", "--unfreeze", "99"], ["--strategy", "sideways"],
        ["--device", "tpu"], ["--backbone-lr-scale", "-1"], ["--backbone", "resnet19"],
        ["--noise-snr", "5-20"], ["--noise-snr", "20:5"], ["--noise-prob", "2"], ["--shift-ms", "-1"],
        ["--gain-db", "99"],
        ["--adapt", "coral"], ["--target-data", "{data}"], ["--adapt", "mmd", "--target-data", "{data}"],
        ["--adapt", "dann", "--target-data", "{data}", "--strategy", "linear-probe"],
        ["--adapt", "coral", "--target-data", "{data}", "--adapt-weight", "0"],
        ["--adapt", "adabn", "--target-data", "{out}/missing"], ["--target-val", "{data}"], ["--threads", "0"],
        ["--seed", "-1"],
    ],
    "adapt": [["--target-data", "{out}/missing"], ["--target-data", "{data}", "--out", "{data}"],
              ["--target-data", "{data}", "--threads", "0"]],
    "evaluate": [["--batch-size", "0"], ["--split", "nope"], ["--backend", "tflite"], ["--precision-hint", "q4"],
                 ["--data", "{out}/missing"], ["--target-fa-per-hour", "1"], ["--plot", "{out}/det.png"],
                 ["--threads", "0"], ["--stream", "{out}/missing.wav"],
                 ["--stream", "{out}/missing.wav", "--smoothing", "0"], ["--stream", "{out}/missing.wav", "--hop-ms", "-5"],
                 ["--stream", "{out}/missing.wav", "--smoothing", "100000"],
                 ["--stream", "{out}/missing.wav", "--refractory-ms", "-5"]],
    "export": [["--atol", "-1"], ["--static-batch", "0"], ["--fp16"], ["--opset", "99"], ["--out", "{out}/m.txt"],
               ["--threads", "0"]],
    "quantize": [["--max-drop", "5"], ["--max-drop", "abc"], ["--samples", "0"], ["--target", "coreml"],
                 ["--target", "tensorrt", "--qat"], ["--target", "openvino", "--out", "{out}/m.onnx"],
                 ["--target", "openvino", "--qat", "--qat-epochs", "0"], ["--target", "onnxruntime", "--cpu", "avx2"],
                 ["--target", "openvino", "--qat", "--qat-lr", "0"],
                 ["--threads", "0"]],
    "build-engine": [["--workspace", "0"], ["--dla", "-1"], ["--batch-profile", "0:1:2"], ["--batch-profile", "4:2:1"],
                     ["--precision", "int4"], ["--gpu", "-1"]],
    "bench": [["--batch-sizes", "0"], ["--iters", "0"], ["--rounds", "0"], ["--threads", "0"], ["--warmup", "-1"],
              ["--max-drop", "2"], ["--precision-hint", "q8"], ["--backend", "tflite"], ["--min-time", "-1"],
              ["--max-slowdown", "0"]],
    "import": [["--crop-pct", "0"], ["--crop-pct", "2"], ["--opset", "3"], ["--threads", "0"], ["--pixel-range", "7"],
               ["--mean", "a,b"], ["--std", "0,1,1"], ["--input-size", "0"], ["--input-size", "2x2x2"],
               ["--layout", "hwc"], ["--output", "nope"], ["--task", "segmentation"], ["--labels", "a,b"],
               ["--labels", "{out}/missing.txt"], ["--data", "{out}/missing"], ["--sample-rate", "10"],
               ["--window", "0"], ["--sample-rate", "16000"]],
    "data digits": [["--size", "4"], ["--size", "abc"], ["--seed", "-1"]],
    "data digit-scenes": [["--images", "5"], ["--size", "32"], ["--classes", "11"], ["--max-objects", "0"],
                          ["--seed", "-1"], ["--held-out", "0"], ["--images", "20", "--held-out", "10"]],
    "data keywords": [["--voices", "2"], ["--takes", "0"], ["--words", "yes"], ["--words", "y3s,no"],
                      ["--stream-minutes", "0.1"], ["--stream-minutes", "-1"], ["--seed", "-1"],
                      ["--held-out-voices", "-1"], ["--voices", "10", "--held-out-voices", "5"]],
    "backbones": [["--modality", "video"]],
    "package": [["--samples", "0"], ["--targets", "coreml"], ["--threads", "0"], ["--data", "{out}/missing"]],
    "verify": [["--threads", "0"], ["--backend", "tflite"]],
    "predict": [["--top-k", "0"], ["--threads", "0"], ["--backend", "tflite"]],
    "cache clear": [["--older-than", "-1"], ["--older-than", "soon"], ["--kind", "models"]],
}
REQUIRED = {
    "finetune": ["{data}", "--backbone", "efficientnet_lite0", "--input-size", "32", "--out", "{out}/run"],
    "evaluate": ["{run}", "--data", "{data}"],
    "adapt": ["{run}", "--out", "{out}/adapted"],
    "export": ["{run}", "--out", "{out}/m.onnx"],
    "import": ["{onnx}", "--out", "{out}/imported", "--labels", "0,1,2,3", "--mean", "0.5", "--std", "0.25"],
    "quantize": ["{onnx}", "--target", "onnxruntime", "--out", "{out}/q.onnx"],
    "build-engine": ["{onnx}", "--out", "{out}/m.engine"],
    "bench": ["{onnx}"],
    "data digits": ["{out}/digits"],
    "data digit-scenes": ["{out}/scenes"],
    "data keywords": ["{out}/keywords"],
    "backbones": [],
    "package": ["{run}", "--out", "{out}/bundle"],
    "verify": ["{run}"],
    "predict": ["{onnx}", "{image}"],
    "cache clear": [],
}


def _fill(args, **where):
    return [a.format(**where) for a in args]


@pytest.mark.parametrize("command, bad", [(c, b) for c, cases in CASES.items() for b in cases],
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_invalid_options_are_one_clear_error(command, bad, tiny_digits, tiny_run, quant_onnx, tmp_path):
    image = next((tiny_digits / "val").rglob("*.png"))
    where = dict(data=tiny_digits, run=tiny_run, onnx=quant_onnx, out=tmp_path, image=image)
    args = [*command.split(), *_fill(REQUIRED[command], **where), *_fill(bad, **where)]
    result = CliRunner().invoke(cli, ["-q", *args])
    assert result.exit_code == 2, f"{args}: {result.output}"
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    hints = [line for line in lines if line.startswith("hint: ")]
    assert len(errors) == 1 and len(hints) == 1, f"{args}: {result.output}"
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert list(tmp_path.iterdir()) == [], f"{args} left {list(tmp_path.iterdir())}"


def test_every_user_error_in_the_source_carries_a_hint():
    """Every `raise SomeEdgeTLError(...)` in edgetl/ passes hint=: the CLI prints it as the
    `hint:` line, and an error without a remedy is half an answer."""
    import ast
    from pathlib import Path

    import edgetl
    from edgetl.core import errors

    user_errors = {name for name, obj in vars(errors).items()
                   if isinstance(obj, type) and issubclass(obj, errors.EdgeTLError)}
    user_errors |= {"ParityError", "AccuracyDropError"}
    missing = []
    for path in Path(edgetl.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
                if name in user_errors and not any(k.arg == "hint" for k in node.exc.keywords):
                    missing.append(f"{path.name}:{node.lineno} {name}")
    assert len(user_errors) > 5 and not missing, missing


def _commands(group=cli, prefix=""):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_numeric_option_has_an_invalid_value_case():
    """Each option that takes a number (count, rate, size, threshold) is tried above with a
    value out of its range: a new numeric option without a case fails here."""
    import click

    missing = []
    for name, command in _commands():
        tried = {a for case in CASES.get(name, []) for a in case if a.startswith("--")}
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag or param.hidden:  # hidden: an old spelling
                continue
            numeric = isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)) or \
                param.type.name in ("integer", "float", "integer range", "float range")
            if numeric and not tried & set(param.opts + param.secondary_opts):
                missing.append(f"{name} {max(param.opts, key=len)}")
    assert missing == [], missing


def _leaf_paths(cls, prefix=""):
    """Every settable key of a settings class, as a recipe names it (a tuple of settings:
    its first entry)."""
    import dataclasses
    import types
    import typing

    from edgetl.core.settings import Settings

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        inner = next((a for a in args if typing.get_origin(a) is None and isinstance(a, type)
                      and issubclass(a, Settings)), None)
        listed = next((typing.get_args(a)[0] for a in args if typing.get_origin(a) is tuple and typing.get_args(a)
                       and isinstance(typing.get_args(a)[0], type) and issubclass(typing.get_args(a)[0], Settings)),
                      None)
        if inner is not None:
            yield from _leaf_paths(inner, f"{prefix}{f.name}.")
        elif listed is not None:
            yield from _leaf_paths(listed, f"{prefix}{f.name}[0].")
        else:
            yield f"{prefix}{f.name}"


def test_every_recipe_key_takes_nonsense_as_one_clear_error(tmp_path, tiny_digits):
    """The options sweep, for recipes: every key with NaN, infinity, a negative number, an
    empty string and a 10 MB string is either a valid recipe or one ConfigError of a
    short line, never another exception."""
    from edgetl.core.errors import ConfigError
    from edgetl.pipeline.recipe import Recipe

    base = {"name": "sweep", "data": {"folder": str(tiny_digits)},
            "finetune": {"backbone": "efficientnet_lite0", "strategy": "linear-probe"},
            "quantize": {"targets": [{"target": "onnxruntime"}]}, "bench": {}, "package": {"targets": ["onnxruntime"]},
            "evaluate": {}, "export": {}}
    import copy


    keys = sorted(set(_leaf_paths(Recipe)) - {"data.folder"})
    assert len(keys) > 60  # the walk reached the nested stage settings
    refused = 0
    huge = "x" * 10_000_000
    for key in keys:
        for bad in (float("nan"), float("inf"), -1, "", huge):
            doc = copy.deepcopy(base)
            node, *path, last = [doc, *key.split(".")]
            for step in path:  # the sections on the way, made where the base recipe has none
                node = node.setdefault(step[:-3], [{}])[0] if step.endswith("[0]") else node.setdefault(step, {})
            node[last] = bad
            try:
                Recipe.from_dict(doc, where="")
            except ConfigError as exc:
                refused += 1
                assert len(exc.message) < 400 and len(exc.hint or "") < 400 and exc.hint, \
                    (key, str(bad)[:20], exc.message[:200])
    assert refused > 3 * len(keys)
