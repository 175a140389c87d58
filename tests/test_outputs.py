"""One rule for outputs: edgetl never deletes or replaces what it did not make; a NaN
model never passes; SIGTERM leaves nothing behind. Each case checks the exit code, the
message and what is left on disk, byte for byte."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import assert_refused as refused
from onnx import numpy_helper

from edgetl.cli import cli


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(*args, cwd: Path | None = None):
    if cwd is None:
        return CliRunner().invoke(cli, [str(a) for a in args])
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, [str(a) for a in args])
    finally:
        os.chdir(old)


@pytest.fixture
def project(tmp_path, tiny_digits):
    """A user's project folder: a copy of the data set and an unrelated notes file."""
    shutil.copytree(tiny_digits, tmp_path / "data")
    (tmp_path / "notes.txt").write_text("my notes\n")
    return tmp_path


FINETUNE = ["finetune", "--backbone", "efficientnet_lite0", "--strategy", "linear-probe", "--epochs", "1",
            "--input-size", "32", "--batch-size", "8"]


@pytest.mark.parametrize("out, relation", [("data", "is the data set"), (".", "contains the data set"),
                                           ("data/train/new", "lies inside the data set")])
def test_finetune_never_writes_over_or_into_its_data(project, out, relation):
    before = snapshot(project)
    refused(run(*FINETUNE, "data", "--out", out, "--overwrite", cwd=project), relation)
    assert snapshot(project) == before
    assert sorted(p.name for p in project.iterdir()) == ["data", "notes.txt"]


def test_finetune_overwrite_replaces_only_an_edgetl_run(project):
    other = project / "results"
    other.mkdir()
    (other / "paper.tex").write_text("draft\n")
    before = snapshot(project)
    result = run(*FINETUNE, project / "data", "--out", other, "--overwrite")
    refused(result, "is not an edgetl run directory")
    assert "--overwrite" not in result.output.split("hint:")[1]  # the hint must not lead there
    assert snapshot(project) == before

    first = run(*FINETUNE, project / "data", "--out", project / "run")
    assert first.exit_code == 0, first.output
    again = run(*FINETUNE, project / "data", "--out", project / "run")
    refused(again, "already exists", "--overwrite")
    replaced = run(*FINETUNE, project / "data", "--out", project / "run", "--overwrite", "--seed", "1")
    assert replaced.exit_code == 0, replaced.output
    assert not [p for p in project.iterdir() if p.name.startswith(".")]


def test_quantize_and_export_never_replace_their_input_or_foreign_files(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    exported = run("export", run_dir)
    assert exported.exit_code == 0, exported.output
    model = run_dir / "model.onnx"
    before = snapshot(tmp_path)
    refused(run("quantize", model, "--target", "onnxruntime", "--out", model, "--overwrite"), "is the input model")
    foreign = tmp_path / "notes.onnx"
    foreign.write_text("not a model\n")
    before = snapshot(tmp_path)
    refused(run("export", run_dir, "--out", foreign, "--overwrite"), "not a model file with an edgetl card")
    refused(run("quantize", model, "--target", "tensorrt", "--out", foreign, "--overwrite"),
            "not a model file with an edgetl card")
    refused(run("export", run_dir), "already exists", "--overwrite")  # its own earlier export
    assert snapshot(tmp_path) == before
    again = run("export", run_dir, "--overwrite")
    assert again.exit_code == 0, again.output
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]


def test_data_digits_replaces_only_a_data_set_it_wrote(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8 a photo")
    refused(run("data", "digits", folder, "--overwrite"), "is not a data set written by edgetl")
    assert (folder / "holiday.jpg").read_bytes() == b"\xff\xd8 a photo"
    made = run("data", "digits", tmp_path / "digits", "--size", "8")
    assert made.exit_code == 0, made.output
    assert run("data", "digits", tmp_path / "digits", "--size", "8", "--overwrite").exit_code == 0


def test_outputs_get_the_mode_of_any_new_file_not_a_private_one(tmp_path):
    """Outputs are written under a private temporary name (mkdtemp 0700, mkstemp 0600) and
    renamed: what is renamed into place must be readable as the umask says."""
    from edgetl.core.outputs import write_atomic

    old = os.umask(0o022)
    try:
        made = run("data", "digits", tmp_path / "digits", "--size", "8")
        write_atomic(tmp_path / "report.json", "{}")
    finally:
        os.umask(old)
    assert made.exit_code == 0, made.output
    assert oct((tmp_path / "digits").stat().st_mode & 0o777) == oct(0o755)
    assert oct((tmp_path / "report.json").stat().st_mode & 0o777) == oct(0o644)


def test_a_diverging_run_stops_with_a_clear_error_and_writes_nothing(project):
    result = run(*FINETUNE, "data", "--out", "run", "--lr", "1e12", "--strategy", "full", cwd=project)
    refused(result, "diverged", "--lr 1e+11")
    assert sorted(p.name for p in project.iterdir()) == ["data", "notes.txt"]


@pytest.fixture(scope="module")
def nan_model(tiny_run, tmp_path_factory) -> Path:
    """tiny_run's ONNX export with one head weight NaN: one class's score is NaN for every input."""
    from edgetl.export import export_run

    folder = tmp_path_factory.mktemp("nan")
    export_run(tiny_run, folder / "m.onnx")
    proto = onnx.load(str(folder / "m.onnx"))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)) if len(t.dims) == 2 else 0)
    weights = numpy_helper.to_array(init).copy()
    weights[0, 0] = np.nan
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(proto, str(folder / "nan.onnx"))
    return folder / "nan.onnx"


def test_a_model_with_nan_outputs_fails_the_parity_gate(tiny_run, nan_model):
    from edgetl.export import verify
    from edgetl.export.parity import ParityError

    nan = nan_model
    with pytest.raises(ParityError) as err:
        verify(tiny_run, [nan])
    assert "NaN" in err.value.message and "--atol" not in err.value.hint


def test_nan_outputs_are_an_error_in_every_command_that_runs_a_model(nan_model, tiny_digits):
    """argmax of NaN is class 0: evaluate, predict and bench must say the model is broken
    (naming it and how many samples), never report an accuracy or print NaN as JSON."""
    nan = nan_model
    image = next((tiny_digits / "val").rglob("*.png"))
    for args in (["evaluate", nan, "--data", tiny_digits], ["predict", nan, image, "--json"],
                 ["bench", nan, "--data", tiny_digits, "--iters", "2", "--warmup", "0", "--json"]):
        result = run("-q", *args)
        refused(result, "nan.onnx", "NaN or infinite scores")
        assert "accuracy" not in result.stdout and "NaN" not in result.stdout, result.stdout


def test_sigterm_during_finetune_leaves_nothing_behind(project):
    args = [sys.executable, "-m", "edgetl", "finetune", "data", "--backbone", "efficientnet_lite0", "--strategy", "full",
            "--epochs", "50", "--input-size", "32", "--out", "run"]
    proc = subprocess.Popen(args, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not [p for p in project.iterdir() if p.name.startswith(".run.")]:  # training has begun writing
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated; nothing was written" in err and "Traceback" not in err
    assert sorted(p.name for p in project.iterdir()) == ["data", "notes.txt"]


def test_huge_images_are_decoded_reduced_or_skipped_with_a_named_warning(tmp_path, monkeypatch, caplog):
    """Above MAX_PIXELS a JPEG decodes at a reduced scale (the same in training and at
    runtime) and another format is skipped with a warning that names it; the card counts
    the images actually used."""
    from PIL import Image

    import edgetl.modality.image as pre
    from edgetl import finetune

    monkeypatch.setattr(pre, "MAX_PIXELS", 5_000)
    big_jpeg = tmp_path / "big.jpg"
    Image.new("RGB", (400, 300), "white").save(big_jpeg)
    assert pre.load_image(big_jpeg).size[0] * pre.load_image(big_jpeg).size[1] <= 4 * 5_000
    data = tmp_path / "data"
    for split, n in (("train", 6), ("val", 3)):
        for c, color in (("a", "black"), ("b", "white")):
            (data / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (64, 64), color).save(data / split / c / f"{i}.png")
    Image.new("RGB", (200, 100), "black").save(data / "train" / "a" / "huge.png")
    import logging

    log = logging.getLogger("edgetl")  # the CLI may have stopped it propagating to the root logger
    log.addHandler(caplog.handler)
    try:
        result = finetune(data, "efficientnet_lite0", tmp_path / "run", strategy="linear-probe", epochs=1,
                          input_size=32, batch_size=4)
    finally:
        log.removeHandler(caplog.handler)
    assert any("huge.png" in r.getMessage() and "megapixels" in r.getMessage() for r in caplog.records)
    assert result.card.source["train_counts"] == {"a": 6, "b": 6}


@pytest.mark.parametrize("command", ["finetune", "export", "data"])
def test_an_out_that_cannot_be_created_is_one_clear_error(project, tiny_run, command):
    """--out under a file (as under a read-only folder or a missing mount, which root in
    CI would not see as read-only): one error, nothing written."""
    before = snapshot(project)
    out = project / "notes.txt" / "out"
    args = {"finetune": [*FINETUNE, project / "data", "--out", out],
            "export": ["export", tiny_run, "--out", out / "m.onnx"],
            "data": ["data", "digits", out, "--size", "8"]}[command]
    refused(run(*args), "cannot write in")
    assert snapshot(project) == before


def test_a_class_folder_linking_to_its_parent_is_refused(project):
    (project / "data" / "train" / "loop").symlink_to("..")
    refused(run(*FINETUNE, project / "data", "--out", project / "run"), "links to", "contains the data set")
    assert not (project / "run").exists()


def test_bench_refreshes_its_own_reports_and_keeps_anything_else(quant_onnx, tmp_path):
    args = ["-q", "bench", quant_onnx, "--iters", "2", "--warmup", "0", "--threads", "1"]
    reports = ["--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv", "--plot", tmp_path / "r.png"]
    first = run(*args, *reports)
    assert first.exit_code == 0, first.output
    again = run(*args, *reports)  # edgetl's own reports are refreshed without a flag
    assert again.exit_code == 0, again.output
    import io

    from PIL import Image

    photo = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(photo, "PNG")
    for flag, name, content in (("--json", "notes.json", b'{"mine": 1}'), ("--csv", "sheet.csv", b"a,b\n1,2\n"),
                                ("--plot", "photo.png", photo.getvalue())):
        (tmp_path / name).write_bytes(content)
        refused(run(*args, flag, tmp_path / name), "is not a report written by edgetl")
        assert (tmp_path / name).read_bytes() == content


def test_two_commands_racing_for_one_out_leave_one_whole_output(tmp_path):
    """Two `data digits` into the same new folder, started together: one writes it, the
    other exits 2 without touching it, and the folder is one whole data set."""
    out = tmp_path / "digits"
    cmd = [sys.executable, "-m", "edgetl", "-q", "data", "digits", str(out), "--size", "16"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "already exists" in loser and "Traceback" not in loser
    assert (out / "edgetl-data.json").is_file() and len(list(out.rglob("*.png"))) == 1797
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("folder", [True, False])
def test_publishing_is_exclusive_unless_overwrite_and_all_or_none(tmp_path, folder):
    """What appears at a destination while a command runs is never replaced without
    --overwrite; of several outputs either all are placed or none."""
    from edgetl.core.errors import ConfigError
    from edgetl.core.outputs import publish

    def staged(name: str, text: str) -> Path:
        tmp = tmp_path / f".staged-{name}"
        if folder:
            (tmp / "edgetl.json").parent.mkdir(parents=True)
            (tmp / "edgetl.json").write_text(text)
        else:
            tmp.write_text(text)
        return tmp

    kind = "run" if folder else "report"
    out = tmp_path / ("run" if folder else "report.json")
    publish({staged("a", '{"schema": "edgetl.a"}'): out}, kind, overwrite=False)
    second = staged("b", '{"schema": "edgetl.b"}')
    with pytest.raises(ConfigError, match="appeared while this command ran"):
        publish({second: out}, kind, overwrite=False)
    first_text = (out / "edgetl.json" if folder else out).read_text()
    assert "edgetl.a" in first_text and second.exists()  # the winner kept, the loser's output not placed
    other = tmp_path / ("run2" if folder else "report2.json")
    with pytest.raises(ConfigError):  # all or none: `other` is placed, then `out` is refused, `other` taken back
        publish({staged("c", '{"schema": "edgetl.c"}'): other, staged("d", '{"schema": "edgetl.d"}'): out}, kind,
                overwrite=False)
    assert not other.exists() and "edgetl.a" in (out / "edgetl.json" if folder else out).read_text()
    publish({second: out}, kind, overwrite=True)  # --overwrite: checked again, then replaced
    assert "edgetl.b" in (out / "edgetl.json" if folder else out).read_text()


def _unwritable(tmp_path: Path) -> Path:
    """A folder nothing can be written in: a read-only one, or /sys where root ignores modes."""
    if os.geteuid() == 0:
        return Path("/sys/edgetl-out")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_outputs_in_a_folder_that_cannot_be_written_are_refused_before_the_work(quant_onnx, tiny_run, tmp_path):
    """Reports, models and runs alike: one clear error naming the folder, before any work."""
    folder = _unwritable(tmp_path)
    bench = ["bench", quant_onnx, "--iters", "2", "--warmup", "0", "--threads", "1"]
    for args in ([*bench, "--json-file", folder / "r.json"], [*bench, "--csv", folder / "r.csv"],
                 [*bench, "--plot", folder / "r.png"], ["export", tiny_run, "--out", folder / "m.onnx"],
                 ["quantize", quant_onnx, "--target", "onnxruntime", "--out", folder / "m.int8.onnx"]):
        result = run("-q", *args)
        refused(result, "cannot write in")
        assert "p50" not in result.output and "parity" not in result.output  # refused before any work


def test_the_hint_for_an_out_that_is_its_input_keeps_the_suffix_the_command_asks_for(tmp_path):
    from edgetl.core.errors import ConfigError
    from edgetl.core.outputs import check_output

    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    with pytest.raises(ConfigError) as err:
        check_output(model, "model", False, {"input model": model})
    assert err.value.hint.endswith("model-out.onnx")


def test_the_hint_for_an_out_that_would_destroy_the_input_works_when_followed(quant_onnx, tiny_digits, tmp_path):
    """The remedy in the hint is a command line that works: its --out is taken as given."""
    import re

    model = tmp_path / "model.onnx"
    shutil.copy(quant_onnx, model)
    data = tmp_path / "digits"
    shutil.copytree(tiny_digits, data)
    for args in (["quantize", model, "--target", "onnxruntime", "--threads", "1", "--out", model],
                 ["finetune", data, "--backbone", "efficientnet_lite0", "--strategy", "linear-probe", "--input-size",
                  "32", "--threads", "1", "--out", data / "run"]):
        refused_result = run("-q", *args)
        refused(refused_result)
        suggested = re.search(r"e\.g\. --out (\S+)", refused_result.output).group(1)
        followed = run("-q", *args[:-1], suggested)
        assert followed.exit_code == 0, followed.output
        assert Path(suggested).exists()
