"""The time estimate said before fine-tuning starts: each strategy's cost follows from the
two per-sample times measured here, it is printed first with the alternatives, and
measuring it leaves the training itself exactly as it would have been."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from edgetl.finetune import estimate
from edgetl.finetune.estimate import strategy_seconds


def test_each_strategy_costs_what_its_trainable_stages_cost():
    args = dict(epochs=4, n_train=100, n_val=20, n_stages=4, unfreeze=None, step=0.03, forward=0.01)
    probe = strategy_seconds("linear-probe", **args)
    full = strategy_seconds("full", **args)
    gradual = strategy_seconds("gradual", **args)
    assert probe == pytest.approx(120 * 0.01)  # one forward pass over train and val
    assert full == pytest.approx(4 * (100 * 0.03 + 20 * 0.01))
    # gradual trains 0, 1, 2, 3 of the 4 stages in its 4 epochs: the backward pass's share grows
    assert gradual == pytest.approx(sum(100 * (0.01 + 0.02 * k / 4) + 20 * 0.01 for k in range(4)))
    partial = strategy_seconds("partial", **{**args, "unfreeze": 2})
    assert probe < gradual < partial < full


def test_a_detectors_frozen_backbone_still_costs_its_neck_and_head_every_epoch():
    args = dict(epochs=3, n_train=100, n_val=10, n_stages=4, unfreeze=None, step=0.5, forward=0.1, head_step=0.2,
                features_once=False)
    assert strategy_seconds("linear-probe", **args) == pytest.approx(3 * (100 * 0.2 + 10 * 0.1))
    assert strategy_seconds("full", **args) == pytest.approx(3 * (100 * 0.5 + 10 * 0.1))


def _finetune(data, out, worth_it, monkeypatch):
    monkeypatch.setattr(estimate, "WORTH_IT", worth_it)
    result = CliRunner().invoke(cli, ["finetune", str(data), "--backbone", "efficientnet_lite0", "--strategy", "full",
                                      "--epochs", "2", "--input-size", "32", "--batch-size", "8", "--lr", "1e-3",
                                      "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result.output, json.loads((out / "history.json").read_text())


def test_the_estimate_comes_first_and_changes_nothing_it_measured(tiny_digits, tmp_path, monkeypatch):
    said, history = _finetune(tiny_digits, tmp_path / "a", 0, monkeypatch)
    line = next(line for line in said.splitlines() if line.startswith("estimated here:"))
    assert line.startswith("estimated here: full (2 epochs, 48 samples) about")
    assert "linear-probe" in line and "gradual" in line and "partial" not in line
    assert said.index("estimated here:") < said.index("epoch   1/2")  # before the first epoch
    quiet, plain = _finetune(tiny_digits, tmp_path / "b", 10**9, monkeypatch)  # small work: no estimate
    assert "estimated here" not in quiet
    # the card keeps the estimate beside the time training took, to compare them later
    estimated = [json.loads((tmp_path / run / "edgetl.json").read_text())["metrics"]["estimated_seconds"]
                 for run in ("a", "b")]
    assert estimated[0] > 0 and estimated[1] is None
    for a, b in zip(history, plain, strict=True):  # the same weights, batches and augmentation either way
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
