"""Recipes and `edgetl run`: validated whole before any work, every stage reused when
nothing it depends on changed, a changed stage rerun with what follows it, an interrupted
stage redone, a failing gate stopping the pipeline with exit code 1 and its report."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgetl.cli import cli
from edgetl.core.errors import ConfigError
from edgetl.pipeline.recipe import load_recipe

MODELS = Path(__file__).resolve().parents[1] / "models"


def tiny_recipe(data: Path) -> dict:
    return {
        "name": "tiny",
        "data": {"folder": str(data)},
        "finetune": {"backbone": "efficientnet_lite0", "strategy": "linear-probe", "epochs": 1, "input_size": 32,
                     "batch_size": 8, "lr": 0.01, "image": {"hflip": False}, "threads": 1},
        "evaluate": {"split": "val"},
        "export": {"openvino": False},
        "quantize": {"targets": [{"target": "onnxruntime", "max_drop": 0.2, "samples": 24}]},
        "bench": {"split": "val", "batches": [1], "iters": 5, "warmup": 1, "threads": 1},
        "package": {"targets": ["onnxruntime"], "samples": 3},
    }


def write(tmp_path: Path, doc: dict, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def run(recipe: Path, out: Path, *args: str):
    result = CliRunner().invoke(cli, ["-q", "run", str(recipe), "--out", str(out), *args])
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else None
    return result, {s["name"]: s["status"] for s in summary["stages"]} if summary else {}


@pytest.mark.parametrize("change, path", [
    ({"finetune": {"epoch": 3}}, "finetune.epoch: unknown setting"),
    ({"finetune": {"epochs": "ten"}}, "finetune.epochs: expected int"),
    ({"finetune": {"strategy": "sideways"}}, "finetune.strategy: unknown value 'sideways'"),
    ({"quantize": {"targets": [{"target": "onnxruntime"}, {"target": "openvino", "max_drop": 5}]}},
     "quantize.targets[1].max_drop: must be at least 0 and below 1, got 5"),
    ({"bench": {"batches": [0]}}, "bench: batch sizes must be positive"),
    ({"stages": {}}, "stages: unknown setting"),
])
def test_a_bad_recipe_fails_before_any_work_with_its_key_path(tmp_path, tiny_digits, change, path):
    doc = tiny_recipe(tiny_digits)
    for section, value in change.items():
        doc[section] = {**doc.get(section, {}), **value} if isinstance(doc.get(section), dict) else value
    result = CliRunner().invoke(cli, ["run", str(write(tmp_path, doc)), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and path in result.output, result.output
    assert "hint:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing was started


def test_set_changes_one_key_and_names_a_missing_one(tmp_path, tiny_digits):
    recipe = write(tmp_path, tiny_recipe(tiny_digits))
    assert load_recipe(recipe, ["quantize.targets[0].max_drop=0.05"]).quantize.targets[0].max_drop == 0.05
    assert load_recipe(recipe, ["finetune.epochs=3"]).finetune.epochs == 3
    with pytest.raises(ConfigError, match=r"quantize.targets\[4\] is not in the recipe"):
        load_recipe(recipe, ["quantize.targets[4].max_drop=0.05"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_recipe(recipe, ["finetune.epochs"])


def test_a_top_level_threads_reaches_every_stage_that_sets_none(tmp_path, tiny_digits):
    doc = tiny_recipe(tiny_digits)
    doc["threads"] = 2
    r = load_recipe(write(tmp_path, doc))
    assert r.finetune.threads == 1 and r.bench.threads == 1  # a section's own wins
    assert r.quantize.targets[0].threads == 2 and r.package.threads == 2 and r.export.threads == 2
    assert r.evaluate.threads == 2
    del doc["threads"]
    assert load_recipe(write(tmp_path, doc)).package.threads is None  # each stage's default
    doc["threads"] = 0
    with pytest.raises(ConfigError, match="threads: must be at least 1"):
        load_recipe(write(tmp_path, doc))


def test_the_recipe_reference_page_is_the_settings():
    """docs/recipe-keys.md lists every key of every section as the settings declare it."""
    from edgetl.pipeline.reference import recipe_reference

    page = (Path(__file__).resolve().parents[1] / "docs" / "recipe-keys.md").read_text()
    assert page == recipe_reference(), "regenerate: python -m edgetl.pipeline.reference > docs/recipe-keys.md"
    for key in ("`max_drop`", "`quantize.targets[]`", "`finetune.image`", "`threads`", "`digit_scenes`"):
        assert key in page


@pytest.mark.parametrize("recipe", sorted(MODELS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(recipe):
    r = load_recipe(recipe)
    assert r.name == recipe.stem and r.finetune.backbone and r.package is not None
    assert (MODELS / f"{recipe.stem}.md").is_file(), "each recipe has its model card"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_digits):
    folder = tmp_path_factory.mktemp("pipeline")
    recipe = write(folder, tiny_recipe(tiny_digits))
    result, stages = run(recipe, folder / "out")
    assert result.exit_code == 0, result.output
    return recipe, folder / "out", stages


def test_a_recipe_runs_every_stage_into_an_ordinary_layout(pipeline):
    recipe, out, stages = pipeline
    assert stages == {"data": "ran", "finetune": "ran", "evaluate": "ran", "export": "ran",
                      "quantize.onnxruntime": "ran", "bench": "ran", "package": "ran"}
    whys = {s["why"] for s in json.loads((out / "summary.json").read_text())["stages"]}
    assert whys == {"no finished run of it in this folder"}
    assert (out / "run" / "model.pt").is_file() and (out / "run" / "model.int8.onnx").is_file()
    checked = CliRunner().invoke(cli, ["verify", str(out / "bundle"), "--json"])  # every command takes the outputs
    assert checked.exit_code == 0 and all(c["passed"] for c in json.loads(checked.output))
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert {r["backend"] for r in rows} == {"torch", "onnxruntime"}
    int8 = [r for r in rows if r["precision"] == "int8"]
    assert int8 and all(r["bound"] is not None and r["drop_ci95"][0] <= r["drop"] <= r["drop_ci95"][1] for r in int8)
    summary = json.loads((out / "summary.json").read_text())
    package = next(s for s in summary["stages"] if s["name"] == "package")
    assert package["figures"]["verified"] == {"onnxruntime": "onnxruntime"}  # the bundle checked where it was made
    from edgetl.runtime.bundle import Bundle

    packaged = Bundle.open(out / "bundle").targets["onnxruntime"]
    benched = next(r for r in rows if r["batch"] == 1 and r["backend"] == "onnxruntime"
                   and Path(r["artifact"]).name == Path(packaged.model).name)
    assert packaged.p50_ms_batch1 == round(benched["p50_ms"], 3)  # one latency figure per model, the bench stage's
    totals = summary["totals"]
    assert totals["seconds"] > 0 and totals["stage_seconds"] > 0 and totals["peak_rss_mb"] > 100
    assert totals["bundle_mb"] > 0 and totals["overrides"] == []
    bench = next(s for s in summary["stages"] if s["name"] == "bench")
    assert all("note" in r for r in bench["figures"]["rows"])  # the summary marks an emulated latency by it


def test_a_rerun_with_nothing_changed_reuses_every_stage_in_seconds(pipeline):
    recipe, out, first = pipeline
    started = time.perf_counter()
    result, stages = run(recipe, out)
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 10
    assert stages == {name: "reused" for name in first}
    assert "reused" in result.output


def test_a_changed_quantization_bound_reruns_quantize_and_what_follows_only(pipeline):
    recipe, out, _ = pipeline
    result, stages = run(recipe, out, "--set", "quantize.targets[0].max_drop=0.15")
    assert result.exit_code == 0, result.output
    assert stages == {"data": "reused", "finetune": "reused", "evaluate": "reused", "export": "reused",
                      "quantize.onnxruntime": "ran", "bench": "ran", "package": "ran"}
    card = json.loads((out / "summary.json").read_text())["recipe_settings"]["quantize"]["targets"][0]
    assert card["max_drop"] == 0.15
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["overrides"] == ["quantize.targets[0].max_drop=0.15"]
    why = {s["name"]: s["why"] for s in summary["stages"]}
    assert why["quantize.onnxruntime"] == "settings changed: max_drop 0.2 -> 0.15"  # the key that changed, named
    assert why["bench"].startswith("changed input:") and why["finetune"] is None  # reused: nothing to explain


def test_a_piped_log_says_each_stage_once_in_plain_lines(pipeline):
    """What a log file gets (stdout and stderr pipes, as under nohup or CI): every stage
    named with what it did (reused, or runs and why), no terminal control characters,
    no third-party progress bars, and the summary table."""
    import subprocess
    import sys

    recipe, out, _ = pipeline
    log = subprocess.run([sys.executable, "-m", "edgetl.cli", "run", str(recipe), "--out", str(out), "--from",
                          "quantize"], capture_output=True, text=True, timeout=600)
    assert log.returncode == 0, log.stderr
    text = log.stdout + log.stderr
    assert "\x1b" not in text and "\r" not in text and "━" not in text
    lines = text.splitlines()
    for stage in ("data", "finetune", "evaluate", "export"):
        assert sum(line.startswith(f"{stage}: reused") for line in lines) == 1, stage
    for stage in ("quantize.onnxruntime", "bench", "package"):
        assert sum(line.startswith(f"{stage}: runs (asked to") for line in lines) == 1, stage


def test_an_interrupted_stage_is_redone_and_nothing_takes_it_for_done(pipeline, monkeypatch):
    import edgetl.bench.harness

    recipe, out, _ = pipeline
    assert run(recipe, out)[0].exit_code == 0  # the recipe as written (an earlier test changed a bound)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgetl.bench.harness, "bench", interrupted)
    result, stages = run(recipe, out, "--from", "bench")
    assert result.exit_code != 0
    assert not (out / ".stages" / "bench.json").exists()
    monkeypatch.undo()
    result, stages = run(recipe, out)
    assert result.exit_code == 0, result.output
    assert stages["bench"] == "ran" and stages["export"] == "reused"
    # the bundle gives the bench stage's latencies: new figures, a new bundle, and it says so
    assert stages["package"] == "ran"
    why = {s["name"]: s["why"] for s in json.loads((out / "summary.json").read_text())["stages"]}
    assert why["package"].startswith("changed input: bench:"), why["package"]


def test_a_failing_gate_stops_the_pipeline_with_exit_1_and_its_report(pipeline, monkeypatch):
    """INT8 that cannot hold its bound (quantize's own gate, tested in test_quantize.py, is
    what raises here) stops the pipeline: exit 1, the report of what held, nothing after."""
    import edgetl.quantize
    from edgetl.quantize import AccuracyDropError

    recipe, out, _ = pipeline

    def cannot_hold(*args, **kwargs):
        raise AccuracyDropError("INT8 for onnxruntime loses 4.17 pt (0 layers in float), above --max-drop 1.00 pt",
                                hint="allow a larger --max-drop")

    monkeypatch.setattr(edgetl.quantize, "quantize", cannot_hold)
    result, stages = run(recipe, out, "--from", "quantize")
    assert result.exit_code == 1, result.output
    assert "stopped at quantize.onnxruntime" in result.output and "allow a larger --max-drop" in result.output
    assert stages == {"data": "reused", "finetune": "reused", "evaluate": "reused", "export": "reused",
                      "quantize.onnxruntime": "failed", "bench": "not run", "package": "not run"}
    assert "not run" in result.output  # the report printed before the error
    assert not (out / ".stages" / "quantize.onnxruntime.json").exists()


def test_the_demo_runs_the_default_recipe():
    from edgetl.cli.demo import RECIPES, models_dir

    for name in RECIPES.values():
        assert load_recipe(models_dir() / name).package is not None


def test_a_recipe_data_section_is_its_data_commands_settings():
    """One definition, so one default: a recipe's `digits:` and `keywords:` sections are the
    settings `edgetl data digits|keywords` and `edgetl.make_digits|make_keywords` take."""
    import typing

    from edgetl.data.settings import DigitScenesSettings, DigitsSettings, KeywordsSettings
    from edgetl.pipeline.recipe import DataSource

    hints = typing.get_type_hints(DataSource)
    assert DigitsSettings in typing.get_args(hints["digits"])
    assert KeywordsSettings in typing.get_args(hints["keywords"])
    assert DigitScenesSettings in typing.get_args(hints["digit_scenes"])
    scenes = DataSource.from_dict({"digit_scenes": {"images": 40}}).digit_scenes
    assert scenes.images == 40 and scenes.size == DigitScenesSettings().size
    source = DataSource.from_dict({"keywords": {"words": ["yes", "no"]}})
    assert source.keywords.voices == KeywordsSettings().voices and source.keywords.words == ("yes", "no")


def test_a_pipeline_never_writes_into_a_folder_it_did_not_make(tmp_path, tiny_digits):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["run", str(write(tmp_path, tiny_recipe(tiny_digits))), "--out",
                                      str(tmp_path / "mine")])
    assert result.exit_code == 2 and "did not write" in result.output
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_a_data_file_rewritten_with_its_time_put_back_reruns_the_stages_that_read_it(tmp_path, tiny_digits):
    """The data folder is keyed by its files' contents, as the sample cache keys a split:
    a file rewritten with the same size and its modification time put back (what a
    restore or a careful copy does) is a change, not a reuse."""
    import os
    import shutil

    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(tiny_digits, data)
    target = sorted((data / "train").rglob("*.png"))[0]
    side = Image.open(target).size
    Image.fromarray(np.zeros(side[::-1], np.uint8)).save(target, compress_level=0)  # its size: the pixels only
    doc = {k: v for k, v in tiny_recipe(data).items() if k in ("name", "data", "finetune", "export")}
    doc["quantize"] = {"targets": []}
    recipe = write(tmp_path, doc)
    result, stages = run(recipe, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert stages["data"] == "ran" and stages["finetune"] == "ran"
    before = target.stat()
    Image.fromarray(np.full(side[::-1], 255, np.uint8)).save(target, compress_level=0)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size and target.stat().st_mtime_ns == before.st_mtime_ns
    result, stages = run(recipe, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert stages["data"] == "ran" and stages["finetune"] == "ran" and stages["export"] == "ran"


def test_a_second_pipeline_on_a_folder_in_use_is_refused_naming_it(tmp_path, tiny_digits):
    """Two `edgetl run` on one folder: while one holds it, the other exits 2 naming the
    folder, and writes nothing (the lock goes with the process that holds it)."""
    import fcntl

    from edgetl.pipeline.run import LOCK

    out = tmp_path / "out"
    out.mkdir()
    with open(out / LOCK, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another pipeline is running here
        result, stages = run(write(tmp_path, tiny_recipe(tiny_digits)), out)
    assert result.exit_code == 2 and "another edgetl run is writing" in result.output and str(out) in result.output
    assert sorted(p.name for p in out.iterdir()) == [LOCK] and stages == {}


def test_a_pipeline_folder_inside_what_the_recipe_reads_is_refused(tmp_path, tiny_digits):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_digits, data)
    recipe = write(tmp_path, tiny_recipe(data))
    result, _ = run(recipe, data / "pipe")
    assert result.exit_code == 2 and "lies inside the recipe's data set" in result.output
    assert not (data / "pipe").exists()
    doc = tiny_recipe(data)
    doc["bench"]["data"] = str(tmp_path / "elsewhere")
    result, _ = run(write(tmp_path, doc, "two.yaml"), tmp_path / "elsewhere" / "out")
    assert result.exit_code == 2 and "bench.data" in result.output


@pytest.mark.parametrize("text, args, named", [
    (b"name: caf\xe9\n", [], "is not UTF-8 text"),
    (None, ["--set", "finetune.epochs=!!python/object/apply:os.system [ls]"], "--set finetune.epochs: the value"),
    (None, ["--set", "finetune.epochs=[1"], "--set finetune.epochs: the value is not plain YAML"),
    (None, ["--from", "target"], "the recipe has no target stage"),
])
def test_bad_recipe_text_and_options_are_one_line(tmp_path, tiny_digits, text, args, named):
    recipe = write(tmp_path, tiny_recipe(tiny_digits))
    if text is not None:
        recipe.write_bytes(text)
    result, _ = run(recipe, tmp_path / "out", *args)
    assert result.exit_code == 2 and named in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_an_alias_bomb_is_refused_in_a_short_line(tmp_path):
    levels = ['&a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"&{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefg", "bcdefgh")]
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(f"name: x\ndescription: [{', '.join(levels)}]\ndata: {{digits: {{}}}}\n"
                      "finetune: {backbone: efficientnet_lite0}\n")
    result, _ = run(recipe, tmp_path / "out")
    assert result.exit_code == 2 and "description: expected str" in result.output and len(result.output) < 600


def test_relative_paths_in_a_recipe_are_taken_from_its_folder(tmp_path, tiny_digits, monkeypatch):
    """docs/recipes.md: every relative path of a recipe (data, target data, calibration,
    bench and package data, weights, the report) names something beside the recipe,
    wherever edgetl runs from."""
    import shutil

    folder = tmp_path / "project"
    shutil.copytree(tiny_digits, folder / "digits")
    doc = tiny_recipe(Path("digits"))
    doc["quantize"]["targets"][0]["calib"] = "digits/train"
    doc["bench"]["data"] = "digits"
    doc["evaluate"]["report"] = "report"
    write(folder, doc)
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    recipe = load_recipe(folder / "recipe.yaml")
    assert recipe.data.folder == str(folder / "digits") and recipe.bench.data == str(folder / "digits")
    assert recipe.quantize.targets[0].calib == str(folder / "digits" / "train")
    assert recipe.evaluate.report == str(folder / "report") and recipe.finetune.weights == "default"


@pytest.mark.skipif(__import__("edgetl.core.threads").core.threads.usable_cores() < 2, reason="needs two cores")
def test_the_int8_targets_run_side_by_side_and_make_what_they_make_one_after_the_other(tmp_path, tiny_digits):
    """Two targets of one thread each on two cores: each in its own process at the same
    time, its lines named by its stage; then, one after the other, the same figures."""
    import subprocess
    import sys

    doc = tiny_recipe(tiny_digits)
    for section in ("evaluate", "bench", "package"):
        doc.pop(section)
    doc["quantize"]["targets"] = [{"target": "onnxruntime", "max_drop": 0.2, "samples": 24, "threads": 1},
                                  {"target": "tensorrt", "max_drop": 0.2, "samples": 24, "threads": 1}]
    recipe, out = write(tmp_path, doc), tmp_path / "out"
    log = subprocess.run([sys.executable, "-m", "edgetl.cli", "run", str(recipe), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert log.returncode == 0, log.stderr
    text = log.stdout + log.stderr
    assert "2 stages side by side, 2 at a time: quantize.onnxruntime, quantize.tensorrt" in text
    for target in ("onnxruntime", "tensorrt"):  # each child's lines carry its stage's name
        assert any(line.startswith(f"quantize.{target}: calibrating") for line in text.splitlines()), text

    def figures() -> dict:
        stages = json.loads((out / "summary.json").read_text())["stages"]
        return {s["name"]: s["figures"] for s in stages if s["name"].startswith("quantize.") and s["status"] == "ran"}

    together = figures()
    assert set(together) == {"quantize.onnxruntime", "quantize.tensorrt"}
    assert (out / "run" / "model.int8.onnx").is_file() and (out / "run" / "model.qdq.onnx").is_file()
    result, stages = run(recipe, out, "--from", "quantize", "--set", "quantize.side_by_side=false")
    assert result.exit_code == 0, result.output
    assert figures() == together

    # stopped while they run: the children stop too, and nothing half-written or taken for done is left
    import signal
    import time

    started = subprocess.Popen([sys.executable, "-m", "edgetl.cli", "run", str(recipe), "--out", str(out), "--from",
                                "quantize"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in started.stderr:
        if "side by side" in line:
            break
    time.sleep(3)  # the children spawned and started
    children = _children(started.pid)
    assert len(children) >= 2
    started.send_signal(signal.SIGTERM)
    assert started.wait(timeout=60) == 143
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    assert [p.name for p in (out / "run").iterdir() if p.name.startswith(".")] == []  # no temporary left
    assert not (out / ".stages" / "quantize.onnxruntime.json").exists()

    # one target stopped by bad input: the other's model is kept and taken for done
    empty = tmp_path / "empty"
    empty.mkdir()
    result, stages = run(recipe, out, "--from", "quantize", "--set", f"quantize.targets[0].calib={empty}")
    assert result.exit_code == 2, result.output
    assert stages["quantize.onnxruntime"] == "failed" and stages["quantize.tensorrt"] == "ran"
    failed = next(s for s in json.loads((out / "summary.json").read_text())["stages"] if s["status"] == "failed")
    assert failed["seconds"] > 0  # the time it took before stopping came back from its process
    assert (out / ".stages" / "quantize.tensorrt.json").exists()
    assert not (out / ".stages" / "quantize.onnxruntime.json").exists()


def _children(pid: int) -> list[int]:
    """The processes `pid` started (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_side_by_side_takes_whole_cores_and_4_gb_each(monkeypatch):
    from edgetl.pipeline import side_by_side

    monkeypatch.setattr(side_by_side, "usable_cores", lambda: 4)
    assert side_by_side.slots([1, 1, 1], memory=64 << 30) == 3
    assert side_by_side.slots([2, 1, 1], memory=64 << 30) == 2  # the most threads any target takes
    assert side_by_side.slots([1, 1, 1], memory=9 << 30) == 2  # 4 GB each
    assert side_by_side.slots([4, 4], memory=64 << 30) == 1
    assert side_by_side.slots([1, 1], memory=1 << 30) == 1
