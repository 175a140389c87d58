"""edgetl predict: raw files through any artifact, preprocessed as in evaluation; bad files
named one per line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_refused

from edgetl.cli import cli
from edgetl.data.folders import select_split
from edgetl.evaluate.accuracy import evaluate
from edgetl.runtime.predict import predict


@pytest.mark.parametrize("artifact", ["run", "onnx"])
def test_predictions_of_raw_files_match_evaluation(artifact, tiny_run, tiny_digits, quant_onnx, quant_digits):
    model, data = (tiny_run, tiny_digits) if artifact == "run" else (quant_onnx, quant_digits)
    report = evaluate(model, data, split="val")
    folder = select_split(data, "val", report.labels, "image")
    results = predict(model, folder.paths, top_k=2)
    assert [r.file for r in results] == [str(p) for p in folder.paths] and all(r.ok for r in results)
    accuracy = np.mean([r.labels[0] == report.labels[y] for r, y in zip(results, folder.labels)])
    assert accuracy == pytest.approx(report.accuracy)
    for r in results:
        assert len(r.labels) == 2 and r.scores[0] >= r.scores[1] and 0 < sum(r.scores) <= 1 + 1e-6


def test_unusable_files_are_named_and_the_rest_predicted(tiny_run, tiny_digits, tmp_path):
    good = next((tiny_digits / "val" / "1").glob("*.png"))
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"not a jpeg")
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    runner = CliRunner()
    result = runner.invoke(cli, ["predict", str(tiny_run), str(good), str(corrupt), str(clip),
                                 str(tmp_path / "missing.png"), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["error"] is None for r in rows] == [True, False, False, False]
    assert "cannot read image" in rows[1]["error"] and "takes images" in rows[2]["error"]
    assert "does not exist" in rows[3]["error"]
    assert len([line for line in result.stderr.splitlines() if line.startswith("skipped: ")]) == 3
    result = runner.invoke(cli, ["predict", str(tiny_run), str(corrupt), str(clip)])
    assert_refused(result, "none of the 2 files could be predicted")
    assert "re-save it" in result.stderr and "pass images" in result.stderr  # each file's own remedy
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    result = runner.invoke(cli, ["predict", str(tiny_run), str(notes)])  # one file: its own error and remedy
    assert_refused(result, "notes.txt is not an image edgetl can read (.txt)")
    assert ".png" in result.stderr.splitlines()[-1]
    assert_refused(runner.invoke(cli, ["predict", str(tiny_run), str(tmp_path)]), "is a folder")
    assert_refused(runner.invoke(cli, ["predict", str(tiny_run), str(good), "--top-k", "0"]), "--top-k")
    assert_refused(runner.invoke(cli, ["predict", str(tiny_run)]), "no files to predict")


def test_predict_needs_no_torch(quant_onnx, quant_digits):
    image = next((quant_digits / "val" / "0").glob("*.png"))
    code = ("import sys; from edgetl.runtime.predict import predict; "
            f"r = predict({str(quant_onnx)!r}, [{str(image)!r}]); assert r[0].ok, r; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not shutil.which("setpriv") or os.geteuid() != 0, reason="needs root to become another user")
def test_a_file_another_user_cannot_read_is_skipped_and_the_rest_predicted(quant_onnx, quant_digits, tmp_path):
    """As an ordinary user (uid 65534, root reads every file): a photo without read
    permission among readable ones is a `skipped:` line naming it, the others are predicted."""
    import tempfile

    world = Path(tempfile.mkdtemp(prefix="edgetl-nobody-"))  # pytest's folders are root's alone
    request_cleanup = world
    for name in (quant_onnx.name, "edgetl.json"):
        shutil.copy(quant_onnx.parent / name, world / name)
    good, locked = world / "good.png", world / "locked.png"
    shutil.copy(next((quant_digits / "val" / "0").glob("*.png")), good)
    shutil.copy(good, locked)
    locked.chmod(0)
    (world / "home").mkdir()
    for path in (world, world / "home"):
        path.chmod(0o777)
    env = {**os.environ, "HOME": str(world / "home"), "XDG_CACHE_HOME": str(world / "home" / ".cache")}
    env.pop("EDGETL_CACHE", None)
    as_nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    done = subprocess.run([*as_nobody, sys.executable, "-m", "edgetl", "predict", str(world / quant_onnx.name),
                           str(good), str(locked), "--json"], capture_output=True, text=True, env=env, cwd=world)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows[0]["error"] is None and rows[0]["labels"]
    assert rows[1]["error"] and "permission" in rows[1]["error"].lower() and "locked.png" in rows[1]["error"]
    assert [line for line in done.stderr.splitlines() if line.startswith("skipped: ")]
    alone = subprocess.run([*as_nobody, sys.executable, "-m", "edgetl", "predict", str(world / quant_onnx.name),
                            str(locked)], capture_output=True, text=True, env=env, cwd=world)
    assert alone.returncode == 2 and "Traceback" not in alone.stderr and "locked.png" in alone.stderr
    hidden = world / "hidden"  # a model in a folder this user cannot enter
    hidden.mkdir(mode=0o700)
    shutil.copy(world / quant_onnx.name, hidden / quant_onnx.name)
    refused = subprocess.run([*as_nobody, sys.executable, "-m", "edgetl", "predict", str(hidden / quant_onnx.name),
                              str(good)], capture_output=True, text=True, env=env, cwd=world)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "permission denied" in refused.stderr and "ls -ld" in refused.stderr
    shutil.rmtree(request_cleanup)
