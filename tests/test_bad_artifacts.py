"""Damaged or mismatched artifacts are one clear error (exit 2, error and hint), never a
traceback: a card edited by hand, a card of another model, a damaged checkpoint."""
from __future__ import annotations

import dataclasses
import shutil

import pytest
from click.testing import CliRunner
from conftest import assert_refused as _refused

from edgetl.cli import cli
from edgetl.export import export_run, write_artifact_card
from edgetl.runtime.artifacts import read_onnx_card


@pytest.fixture(scope="module")
def onnx_model(tiny_run, tmp_path_factory):
    return export_run(tiny_run, tmp_path_factory.mktemp("bad") / "m.onnx").onnx


def _evaluate(path, data):
    return CliRunner().invoke(cli, ["-q", "evaluate", str(path), "--data", str(data)])


def test_a_card_with_fewer_labels_than_outputs(onnx_model, tiny_digits, tmp_path):
    bad = tmp_path / "fewer.onnx"
    shutil.copy(onnx_model, bad)
    card = read_onnx_card(bad)
    write_artifact_card(bad, dataclasses.replace(card, labels=card.labels[:2]))
    data = tmp_path / "two"  # only the classes the card names, so that the data set is no objection
    for label in card.labels[:2]:
        shutil.copytree(tiny_digits / "val" / label, data / "val" / label)
    _refused(CliRunner().invoke(cli, ["-q", "evaluate", str(bad), "--data", str(data)]), "outputs (3,) scores",
             "names 2 labels")


@pytest.mark.parametrize("size", [["abc", 32], [32], [0, 0]])
def test_a_card_whose_preprocessing_is_not_numbers(onnx_model, tiny_digits, tmp_path, size):
    bad = tmp_path / "edited.onnx"
    shutil.copy(onnx_model, bad)
    card = read_onnx_card(bad)
    write_artifact_card(bad, dataclasses.replace(card, preprocessing={**card.preprocessing, "size": size}))
    _refused(_evaluate(bad, tiny_digits), "preprocessing is invalid")


def test_a_damaged_checkpoint_is_named_as_such(tiny_run, tiny_digits, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "model.pt").write_bytes((tiny_run / "model.pt").read_bytes()[:4000])
    result = _evaluate(run, tiny_digits)
    _refused(result, "damaged or truncated", "train it again")
    assert "weights_only" not in result.output and "utf-8" not in result.output.lower()


def test_a_broken_ir_is_named_for_what_is_wrong_without_other_frameworks_logs(onnx_model, tiny_digits, tmp_path):
    """A garbage .xml is not an IR (OpenVINO is not asked, so no TensorFlow/absl lines);
    a .bin cut short is blamed with the remedy that fixes it."""
    import subprocess
    import sys

    from edgetl.export.openvino_ir import export_openvino

    image = str(next((tiny_digits / "val").rglob("*.png")))
    garbage = tmp_path / "garbage.xml"
    garbage.write_text('<?xml version="1.0"?><net><layers')
    (tmp_path / "garbage.bin").write_bytes(b"\0" * 16)
    xml = tmp_path / "model.xml"
    export_openvino(onnx_model, xml, read_onnx_card(onnx_model), False)
    weights = xml.with_suffix(".bin").read_bytes()
    xml.with_suffix(".bin").write_bytes(weights[:len(weights) // 2])
    for model, words in ((garbage, ("is not an OpenVINO IR", "export the IR again")),
                         (xml, ("model.bin does not fit model.xml", "copy both files again"))):
        out = subprocess.run([sys.executable, "-m", "edgetl", "predict", str(model), image], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2 and all(w in out.stderr for w in words), out.stderr
        assert "GraphDef" not in out.stderr and "absl" not in out.stderr and "Traceback" not in out.stderr
