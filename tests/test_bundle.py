"""Deployment bundles: package, then verify on this machine; tampering, a changed
preprocessing, schemas and targets; predict through every backend, folder and zip alike."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_refused

from edgetl.cli import cli
from edgetl.core.errors import ArtifactError
from edgetl.runtime import open_runner
from edgetl.runtime.artifacts import kind_of, read_card, write_card
from edgetl.runtime.bundle import sha256
from edgetl.runtime.verify import verify


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """A copy of the tiny run: packaging exports into it."""
    out = tmp_path_factory.mktemp("bundle-run") / "run"
    shutil.copytree(tiny_run, out)
    return out


@pytest.fixture(scope="module")
def bundle(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "lite0"
    result = CliRunner().invoke(cli, ["-q", "package", str(run), "--targets", "openvino,onnxruntime,tensorrt",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def fresh_copy(bundle, tmp_path):
    copy = tmp_path / bundle.name
    shutil.copytree(bundle, copy)
    return copy


def test_a_package_holds_a_model_per_target_reference_files_and_checksums(bundle, run):
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert set(manifest["targets"]) == {"openvino", "onnxruntime", "tensorrt"}
    assert manifest["targets"]["tensorrt"]["build"] == "edgetl verify lite0"  # builds the engine on the device
    assert "edgetl verify" in (bundle / "models" / "build-engine.sh").read_text()
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"bundle.json"}
    assert set(manifest["files"]) == files
    assert all(sha256(bundle / f) == h for f, h in manifest["files"].items())
    card = read_card(run)
    references = sorted((bundle / "reference").glob("*.png"))
    assert len(references) == min(16, manifest["references"]) and manifest["references"] >= len(card.labels)
    assert {r.stem.split("_", 1)[1] for r in references} == set(card.labels)  # every class is there
    readme = (bundle / "README.md").read_text()
    assert "edgetl verify lite0" in readme and "edgetl predict lite0 reference/" in readme and "ms |" in readme
    # TensorRT's model is only emulated here: no CPU latency passed off as its own
    assert manifest["targets"]["tensorrt"]["p50_ms_batch1"] is None and manifest["targets"]["openvino"]["p50_ms_batch1"]
    assert "| tensorrt |" in readme and "on the device: `edgetl bench`" in readme
    assert kind_of(bundle).name == "bundle" and read_card(bundle).labels == card.labels
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # nothing half-written beside it


def test_verify_passes_on_every_backend_this_machine_has(bundle):
    result = CliRunner().invoke(cli, ["verify", str(bundle), "--json"])
    assert result.exit_code == 0, result.output
    checks = json.loads(result.output[result.output.index("["):])
    assert {c["target"] for c in checks} == {"openvino", "onnxruntime", "tensorrt"}
    assert all(c["passed"] and c["agreement"] == 1.0 and c["n"] >= 3 for c in checks)
    trt = next(c for c in checks if c["target"] == "tensorrt")
    assert trt["backend"] == "onnxruntime"  # no engine here: its QDQ/ONNX model, and why
    assert trt["notes"] and "QDQ model in ONNX Runtime" in trt["notes"][0] and "tensorrt" in trt["notes"][0]
    assert not any(c["skipped"] for c in checks)


@pytest.mark.parametrize("member", ["models/model.onnx", "models/model.bin", "reference/expected.json", "edgetl.json"])
def test_one_flipped_byte_anywhere_fails_verification_naming_the_file(bundle, tmp_path, member):
    copy = fresh_copy(bundle, tmp_path)
    data = bytearray((copy / member).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / member).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"{member} \\(checksum mismatch\\)"):
        verify(copy)
    assert_refused(CliRunner().invoke(cli, ["verify", str(copy)]), member, "package the run again")
    if member.startswith("models/model.onnx"):  # loading for predict checks the model it opens
        with pytest.raises(ArtifactError, match="checksum mismatch"):
            open_runner(copy, backend="onnxruntime")


def test_a_preprocessing_changed_behind_the_checksums_fails_the_reference_check(bundle, tmp_path):
    """The classic silent failure: the device normalises differently from training. Here
    the model's own card gets another mean and the manifest is made to agree, so only
    running the reference files can tell."""
    copy = fresh_copy(bundle, tmp_path)
    model = copy / "models" / "model.onnx"
    card = read_card(model)
    card.preprocessing = {**card.preprocessing, "mean": [0.2, 0.2, 0.2]}
    write_card(model, card)
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["files"]["models/model.onnx"] = sha256(model)
    (copy / "bundle.json").write_text(json.dumps(manifest))
    checks = {c.target: c for c in verify(copy)}
    assert not checks["onnxruntime"].passed and checks["onnxruntime"].max_score_diff > checks["onnxruntime"].tolerance
    assert checks["openvino"].passed  # the IR was left alone
    result = CliRunner().invoke(cli, ["verify", str(copy)])
    assert result.exit_code == 1 and "do not compute what was packaged" in result.output
    assert "onnxruntime: reference/" in result.output  # the figures of each file that moved
    from edgetl.runtime import load

    with pytest.raises(ArtifactError, match="does not compute what was packaged"):
        load(copy, backend="onnxruntime", check_references=True)
    load(copy, backend="openvino", check_references=True).close()


def test_predict_answers_the_same_through_every_backend_and_from_the_zip(bundle, run, tmp_path):
    from edgetl.runtime.predict import predict

    files = sorted((bundle / "reference").glob("*.png"))[:6]
    answers = {b: predict(bundle, files, backend=b, top_k=3) for b in ("openvino", "onnxruntime", "tensorrt")}
    zipped = tmp_path / "lite0.zip"
    result = CliRunner().invoke(cli, ["-q", "package", str(run), "--out", str(tmp_path / "lite0"), "--zip"])
    assert result.exit_code == 0 and zipped.is_file() and not (tmp_path / "lite0").exists(), result.output
    answers["zip"] = predict(zipped, files, top_k=3)
    reference = answers["onnxruntime"]
    for name, got in answers.items():
        assert [r.labels[0] for r in got] == [r.labels[0] for r in reference], name
        assert np.allclose([r.scores for r in got], [r.scores for r in reference], atol=1e-4), name
    assert all(c.passed for c in verify(zipped))  # which also times each target here
    from edgetl.runtime.bundle import Bundle
    from edgetl.runtime.measured import measured

    timed = measured(Bundle.open(zipped))
    with open_runner(zipped) as runner:  # auto: the fastest target measured here
        assert runner.target == min(timed, key=timed.get) and runner.backend == runner.target


def test_evaluate_and_bench_take_a_bundle_like_any_artifact(bundle, run, tiny_digits, tmp_path):
    from edgetl.evaluate.accuracy import evaluate

    direct = evaluate(run / "model.onnx", tiny_digits).accuracy
    assert evaluate(bundle, tiny_digits, backend="onnxruntime").accuracy == direct
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["-q", "bench", str(bundle), "--data", str(tiny_digits), "--iters", "5",
                                      "--warmup", "1", "--json-file", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert {(r["backend"], r["name"]) for r in rows} >= {("openvino", "model.xml"), ("onnxruntime", "model.onnx")}
    assert all(str(bundle) in r["artifact"] for r in rows)


def test_bundle_errors_say_what_to_do(bundle, run, tmp_path):
    copy = fresh_copy(bundle, tmp_path)
    manifest = json.loads((copy / "bundle.json").read_text())
    (copy / "bundle.json").write_text(json.dumps({**manifest, "schema": 99, "edgetl": "9.0"}))
    assert_refused(CliRunner().invoke(cli, ["verify", str(copy)]), "schema 99", "edgetl 9.0", "upgrade edgetl")
    two = tmp_path / "two"
    assert CliRunner().invoke(cli, ["-q", "package", str(run), "--targets", "onnxruntime", "--out", str(two)]).exit_code == 0
    assert_refused(CliRunner().invoke(cli, ["predict", str(two), str(next((bundle / "reference").glob("*.png"))),
                                            "--backend", "openvino"]), "has no openvino model", "--targets openvino")
    with pytest.raises(ArtifactError, match="checksummed"):
        write_card(two, read_card(two))
    runner = CliRunner()
    assert_refused(runner.invoke(cli, ["package", str(run), "--targets", "coreml", "--out", str(tmp_path / "x")]),
                   "--targets")
    assert_refused(runner.invoke(cli, ["package", str(bundle), "--out", str(tmp_path / "x")]), "takes a run directory")
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "todo.txt").write_text("mine")
    assert_refused(runner.invoke(cli, ["package", str(run), "--out", str(keep)]), "never replaces")
    assert (keep / "todo.txt").read_text() == "mine"
    assert_refused(runner.invoke(cli, ["package", str(run), "--out", str(two)]), "--overwrite")
    assert not (tmp_path / "x").exists()


def test_an_int8_model_is_packaged_only_within_its_bound():
    from edgetl.core.card import ModelCard
    from edgetl.deploy.package import within_bound

    card = ModelCard(labels=["a", "b"], modality="image", input={}, preprocessing={}, precision="int8")
    held = dataclasses.replace(card, metrics={"accuracy_drop": 0.004}, source={"quantization": {"max_drop": 0.01}})
    lost = dataclasses.replace(held, metrics={"accuracy_drop": 0.03})
    unbounded = dataclasses.replace(held, source={"quantization": {"max_drop": None}})
    assert within_bound(held) and not within_bound(lost) and not within_bound(unbounded)


def test_a_device_with_only_the_base_install_verifies_and_predicts(bundle):
    """The device story: `pip install edgetl` without extras (make device-venv, which
    make test runs first) verifies the bundle and predicts from it, without torch."""
    import subprocess
    from pathlib import Path

    venv = Path(__file__).resolve().parents[1] / ".venv-device"
    if not (venv / ".installed").is_file():
        pytest.skip("no base-install environment: `make device-venv` makes it (make test does)")
    python, edgetl = venv / "bin" / "python", venv / "bin" / "edgetl"
    for library in ("torch", "openvino"):
        missing = subprocess.run([python, "-c", f"import {library}"], capture_output=True, text=True)
        assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr, library
    checked = subprocess.run([edgetl, "verify", str(bundle), "--json"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checks = {c["target"]: c for c in json.loads(checked.stdout)}
    assert checks["openvino"]["skipped"] == "openvino is not installed: pip install 'edgetl[openvino]'"
    told = subprocess.run([edgetl, "verify", str(bundle)], capture_output=True, text=True)  # as people read it
    assert "openvino: skipped: openvino is not installed: pip install 'edgetl[openvino]'" in told.stderr
    assert "\\[" not in told.stderr  # a line to copy, without markup escapes
    assert checks["onnxruntime"]["n"] > 0 and checks["tensorrt"]["n"] > 0 and all(c["passed"] for c in checks.values())
    image = sorted((bundle / "reference").glob("*.png"))[0]
    answered = subprocess.run([edgetl, "predict", str(bundle), str(image), "--json"], capture_output=True, text=True)
    assert answered.returncode == 0, answered.stderr
    assert "onnxruntime" in answered.stderr  # the backend it picked, said, and why not the faster ones
    assert "not openvino: openvino is not installed: pip install 'edgetl[openvino]'" in answered.stderr
    packaged = json.loads((bundle / "reference" / "expected.json").read_text())["onnxruntime"]["answers"][0]
    assert json.loads(answered.stdout)[0]["labels"][0] == packaged["label"]


def test_verify_names_a_run_directory_and_a_missing_path_for_what_they_are(tiny_run, tmp_path):
    runner = CliRunner()
    assert_refused(runner.invoke(cli, ["verify", str(tiny_run)]), "is a run directory", "edgetl package")
    assert_refused(runner.invoke(cli, ["verify", str(tmp_path / "gone")]), "does not exist")
    assert_refused(runner.invoke(cli, ["verify", str(tmp_path)]), "not a bundle")


def test_bench_on_a_bundle_without_data_scores_its_reference_files(bundle, run):
    """On a device the training data is not there: the bundle's own labelled reference
    files are the samples accuracy is measured on."""
    result = CliRunner().invoke(cli, ["-q", "bench", str(bundle), "--iters", "3", "--warmup", "0", "--threads", "1",
                                      "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    references = len(list((bundle / "reference").glob("*.png")))
    assert rows and all(r["split"].startswith("reference/") and r["n"] == references for r in rows), rows
    assert all(0 <= r["accuracy"] <= 1 for r in rows)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="checks a machine without TensorRT")
def test_a_bundle_with_only_a_tensorrt_target_says_how_to_run_it_without_tensorrt(run, tmp_path):
    only = tmp_path / "trt-only"
    packaged = CliRunner().invoke(cli, ["-q", "package", str(run), "--targets", "tensorrt", "--out", str(only)])
    assert packaged.exit_code == 0, packaged.output
    image = sorted((only / "reference").glob("*.png"))[0]
    refused = CliRunner().invoke(cli, ["predict", str(only), str(image)])
    assert_refused(refused, "none of the bundle's models", "tensorrt is not installed", "--backend tensorrt")
    followed = CliRunner().invoke(cli, ["predict", str(only), str(image), "--backend", "tensorrt", "--json"])
    assert followed.exit_code == 0, followed.output  # the hint, followed, works
    packaged_label = json.loads((only / "reference" / "expected.json").read_text())["tensorrt"]["answers"][0]["label"]
    assert json.loads(followed.output[followed.output.index("["):])[0]["labels"][0] == packaged_label
    measured = CliRunner().invoke(cli, ["bench", str(only), "--iters", "3", "--json"])  # as verify runs it
    assert measured.exit_code == 0, measured.output
    rows = json.loads(measured.output[measured.output.index("{"):])["rows"]
    precision = json.loads((only / "bundle.json").read_text())["targets"]["tensorrt"]["precision"]
    assert [(r["backend"], r["precision"]) for r in rows] == [("onnxruntime", precision)]
    assert_refused(CliRunner().invoke(cli, ["bench", str(only), "--backend", "openvino"]), "openvino", "edgetl doctor")


def test_auto_follows_what_verify_measured_here(bundle, tmp_path, monkeypatch):
    """Without figures measured here, `auto` takes the preference order and says so; verify
    times each target it runs on its own backend and keeps the figures outside the bundle;
    then `auto` takes the fastest measured, whichever the preference order puts first."""
    from edgetl.runtime.bundle import Bundle
    from edgetl.runtime.measured import measured, record

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    copy = fresh_copy(bundle, tmp_path)
    image = sorted((copy / "reference").glob("*.png"))[0]

    def picked():
        done = CliRunner().invoke(cli, ["predict", str(copy), str(image), "--json"])
        assert done.exit_code == 0, done.output
        line = next(line for line in done.stderr.splitlines() if line.startswith(f"bundle {copy.name}:"))
        return line.split(": ", 1)[1].split()[0], line

    target, line = picked()
    assert target == "openvino" and "first by preference; `edgetl verify` measures" in line
    checked = json.loads(CliRunner().invoke(cli, ["-q", "verify", str(copy), "--json"]).stdout)
    timed = {c["target"]: c["p50_ms"] for c in checked}
    assert timed["openvino"] > 0 and timed["onnxruntime"] > 0 and timed["tensorrt"] is None  # emulated: not timed
    assert measured(Bundle.open(copy)) == pytest.approx({t: timed[t] for t in ("openvino", "onnxruntime")}, rel=1e-3)
    assert sha256(copy / "bundle.json") == sha256(bundle / "bundle.json")  # the bundle's files untouched
    for slower, faster in (("openvino", "onnxruntime"), ("onnxruntime", "openvino")):
        record(Bundle.open(copy), slower, 9.0)
        record(Bundle.open(copy), faster, 3.0)
        target, line = picked()
        assert target == faster and f"the fastest measured here: 3.00 ms against {slower} 9.00 ms" in line


def test_the_readme_gives_what_bench_measured_on_new_data(run, tmp_path):
    """Given a bench report (a pipeline's bench stage), the bundle's README shows each
    target's figure on the split bench scored (test: data that chose nothing), beside the
    validation figure, and bench's latency rather than a second measurement."""
    report = tmp_path / "bench.json"
    row = {"artifact": str(run / "model.onnx"), "backend": "onnxruntime", "batch": 1, "p50_ms": 1.234,
           "accuracy": 0.625, "split": "test", "note": None, "error": None}
    report.write_text(json.dumps({"rows": [row, {**row, "batch": 8, "p50_ms": 5.0}]}))
    out = tmp_path / "bundle"
    result = CliRunner().invoke(cli, ["-q", "package", str(run), "--targets", "onnxruntime", "--latency-from",
                                      str(report), "--out", str(out)])
    assert result.exit_code == 0, result.output
    readme = (out / "README.md").read_text()
    assert "| accuracy | accuracy on test | p50 |" in readme
    assert "| onnxruntime | `models/model.onnx` | fp32 |" in readme and "| 62.5% | 1.23 ms |" in readme
    report.write_text(json.dumps({"rows": [{**row, "split": "val"}]}))  # validation again: nothing new to show
    result = CliRunner().invoke(cli, ["-q", "package", str(run), "--targets", "onnxruntime", "--latency-from",
                                      str(report), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "accuracy on" not in (out / "README.md").read_text()
