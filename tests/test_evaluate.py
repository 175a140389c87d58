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


@pytest.fixture()
def mislabelled(tiny_digits, tmp_path):
    """The tiny validation split with its class folders renamed in a circle: most answers
    of the tiny run are now wrong, so the report has mistakes to show."""
    import shutil

    data = tmp_path / "mislabelled"
    for i in range(3):
        shutil.copytree(tiny_digits / "val" / str(i), data / "val" / str((i + 1) % 3))
    return data


def test_the_report_holds_every_figure_and_the_misclassified_files(tiny_run, mislabelled, tmp_path):
    import json
    from pathlib import Path

    from edgetl.evaluate.report import SHOWN

    out = tmp_path / "report"
    report = evaluate(tiny_run, mislabelled, split="val", report=str(out))
    cm = np.asarray(report.confusion)
    wrong = int(cm.sum() - np.trace(cm))
    assert wrong > 0 and len(report.misclassified) == wrong
    assert all(Path(m["file"]).is_file() and m["true"] != m["predicted"] == m["top"][0][0]
               for m in report.misclassified)
    confidence = [m["top"][0][1] for m in report.misclassified]
    assert confidence == sorted(confidence, reverse=True)
    for i, label in enumerate(report.labels):  # precision, recall and F1 from the confusion matrix
        m = report.classes[label]
        assert m["support"] == cm[i].sum() and m["recall"] == pytest.approx(cm[i, i] / cm[i].sum())
        if cm[:, i].sum():
            assert m["precision"] == pytest.approx(cm[i, i] / cm[:, i].sum())
    assert set(report.top_k) == {"2"} and report.accuracy <= report.top_k["2"] <= 1  # 3 labels: top-2 only

    page = (out / "index.html").read_text()
    assert f"{report.accuracy:.4f}" in page and 'src="confusion.png"' in page
    assert page.count('<img src="files/') == min(wrong, SHOWN)
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report.to_dict()))
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluate(tiny_run, mislabelled, split="val", report=str(out))  # an earlier report of ours is replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(Exception, match="not a report folder"):
        evaluate(tiny_run, mislabelled, split="val", report=str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.skipif(__import__("shutil").which("chromium") is None,
                    reason="Chromium is not installed (make test installs it with apt-get where it can)")
def test_the_report_opens_in_a_browser_with_its_confusion_matrix(tiny_run, mislabelled, tmp_path):
    """A real browser (headless Chromium) renders the page: its screenshot shows the
    confusion matrix's dark cells, which are gone when the picture is."""
    from PIL import Image

    out = tmp_path / "report"
    evaluate(tiny_run, mislabelled, split="val", report=str(out))

    def dark_blue_pixels(name: str) -> int:
        shot = tmp_path / name
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'browser'}", "--window-size=1000,1400",
                        f"--screenshot={shot}", (out / "index.html").as_uri()],
                       capture_output=True, timeout=120, check=True)
        rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        return int(((rgb[..., 0] < 60) & (rgb[..., 1] < 110) & (rgb[..., 2] > 100)).sum())

    shown = dark_blue_pixels("with.png")
    (out / "confusion.png").unlink()
    assert shown > 2000 and dark_blue_pixels("without.png") < shown / 20
