"""The CLI contract: results on stdout, user errors as one line + hint with exit code 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in result.output


def test_evaluate_json(tiny_run, tiny_digits):
    result = run("evaluate", tiny_run, "--data", tiny_digits, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"accuracy", "n", "backend"} <= set(report) and report["n"] == 24


def test_evaluate_table(tiny_run, tiny_digits):
    result = run("evaluate", tiny_run, "--data", tiny_digits)
    assert result.exit_code == 0 and "confusion matrix" in result.output and "per-class" in result.output


def test_data_digits(tmp_path):
    result = run("data", "digits", tmp_path / "d", "--size", "16")
    assert result.exit_code == 0 and "10 classes" in result.output
    assert_user_error(run("data", "digits", tmp_path / "d"), "already exists", "--overwrite")


def test_backbones_json():
    result = run("-q", "backbones", "--json")
    assert result.exit_code == 0
    names = {b["name"]: b for b in json.loads(result.stdout)}
    assert names["efficientnet_lite0"]["offline_weights"] is True and "resnet50" in names


@pytest.mark.parametrize("make_args, fragments", [
    (lambda d, t: ["finetune", t / "nope", "--backbone", "resnet18", "--out", t / "o"], ["does not exist"]),
    (lambda d, t: ["finetune", d, "--backbone", "resnet19", "--out", t / "o"], ["unknown backbone", "resnet18"]),
    (lambda d, t: ["finetune", d, "--backbone", "resnet18", "--out", t / "o"], ["offline", "--weights"]),
    (lambda d, t: ["finetune", d, "--backbone", "resnet18", "--weights", t / "w.pt", "--out", t / "o"],
     ["does not exist"]),
    (lambda d, t: ["finetune", d, "--backbone", "resnet18", "--strategy", "partial", "--weights", "none", "--out",
                   t / "o"], ["--unfreeze"]),
    (lambda d, t: ["finetune", d, "--backbone", "resnet18", "--strategy", "bogus", "--out", t / "o"], ["bogus"]),
    (lambda d, t: ["evaluate", t, "--data", d], ["model card"]),
    (lambda d, t: ["evaluate", t / "missing", "--data", d], ["does not exist"]),
])
def test_user_errors(tiny_digits, tmp_path, make_args, fragments, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert_user_error(run(*make_args(tiny_digits, tmp_path)), *fragments)
    assert not (tmp_path / "o").exists()


def test_empty_class_folder(tmp_path):
    from conftest import write_digit_folder

    root = write_digit_folder(tmp_path / "d", per_split=(("train", 4),))
    (root / "train" / "empty").mkdir()
    assert_user_error(run("finetune", root, "--backbone", "resnet18", "--weights", "none", "--out", tmp_path / "o"),
                      "no images", "empty")


def test_console_script_exit_code(tmp_path):
    exe = Path(sys.executable).with_name("edgetl")
    proc = subprocess.run([str(exe), "finetune", str(tmp_path), "--backbone", "resnet18", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "no class folders" in lines[0] and lines[1].startswith("hint: ")


def test_names_with_brackets_are_printed_as_they_are(capsys):
    """Paths, file and class names go through rich: '[v2]' or "[tensorrt]" must not be
    taken for styles and dropped."""
    import io

    from rich.console import Console

    from edgetl.bench.report import BenchReport, BenchRow
    from edgetl.core import progress

    progress.set_quiet(False)
    progress.info("pip install 'edgetl[tensorrt]' for data/[v2]")
    row = BenchRow(artifact="m[v2].onnx", name="m[v2].onnx", backend="onnxruntime", device="cpu", batch=1,
                   error="backend tensorrt is not installed (hint: pip install 'edgetl[tensorrt]')")
    buf = io.StringIO()
    BenchReport([row], {"cpu": "x"}, {}, {"threads": 1}).print_table(Console(file=buf, width=300))
    assert "edgetl[tensorrt]' for data/[v2]" in capsys.readouterr().err
    assert "m[v2].onnx" in buf.getvalue() and "edgetl[tensorrt]" in buf.getvalue()


def test_piped_progress_prints_plain_lines_during_slow_work(tiny_run, tiny_digits, monkeypatch):
    """stderr is not a terminal (a log, CI): no live bars, but a line per task at least
    every EDGETL_PROGRESS_SECONDS with what remains, and a line when it ends."""
    monkeypatch.setenv("EDGETL_PROGRESS_SECONDS", "0")
    result = CliRunner().invoke(cli, ["evaluate", str(tiny_run), "--data", str(tiny_digits), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(("decoding", "torch:", "torch "))
             or " so far, about " in line or "/24 in " in line]
    assert any("left" in line for line in lines) and any(" in " in line and "/24" in line for line in lines), lines
    monkeypatch.setenv("EDGETL_PROGRESS_SECONDS", "3600")  # short work on a quiet log says nothing
    quiet = CliRunner().invoke(cli, ["evaluate", str(tiny_run), "--data", str(tiny_digits), "--batch-size", "4"])
    assert " so far, about " not in quiet.output
