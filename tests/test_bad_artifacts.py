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
