import subprocess
import sys

import numpy as np
import pytest

from edgetl.core.errors import ArtifactError, DataError
from edgetl.evaluate.accuracy import evaluate


def test_runtime_accuracy_matches_training_validation(tiny_run, tiny_digits):
    """The runtime's numpy/Pillow preprocessing reproduces training's validation figure."""
    from edgetl.core.card import ModelCard

    report = evaluate(tiny_run, tiny_digits, split="val")
    card = ModelCard.load(tiny_run)
    assert report.backend == "torch" and report.n == 24
    assert abs(report.accuracy - card.metrics["val_accuracy"]) <= 1 / 24 + 1e-9
    cm = np.asarray(report.confusion)
    assert cm.sum() == 24 and np.trace(cm) / 24 == pytest.approx(report.accuracy)
    assert set(report.per_class) == {"0", "1", "2"}


def test_flat_folder_is_evaluated_whole(tiny_run, tiny_digits):
    report = evaluate(tiny_run, tiny_digits / "val", split="val")
    assert report.n == 24


def test_unknown_class_and_missing_split(tiny_run, tiny_digits, tmp_path):
    from conftest import write_digit_folder

    other = write_digit_folder(tmp_path / "other", classes=(0, 7), per_split=(("val", 2),))
    with pytest.raises(DataError, match="outside the label set"):
        evaluate(tiny_run, other)
    with pytest.raises(DataError, match="no 'test' split"):
        evaluate(tiny_run, tiny_digits, split="test")


def test_folder_without_card(tmp_path, tiny_digits):
    with pytest.raises(ArtifactError, match="without a model card"):
        evaluate(tmp_path, tiny_digits)


def test_runtime_does_not_import_torch():
    code = ("import sys, edgetl, edgetl.runtime, edgetl.evaluate.accuracy, edgetl.modality.image, edgetl.core.card, "
            "edgetl.core.metrics; import edgetl.cli; assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
