"""The artifact contract (runtime/artifacts.py) over every entry of the backend table:
each backend loads a known kind, each kind's card reads and writes back where the kind
keeps it, and the artifact's kind picks its backend."""
from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

from edgetl.core.errors import ArtifactError
from edgetl.runtime import BACKENDS, Runner, open_runner
from edgetl.runtime.artifacts import KINDS, engine_card_path, is_edgetl_artifact, kind_of, read_card, write_card
from edgetl.runtime.backends import backend_for


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_backend_loads_known_kinds_through_the_runner_contract(backend):
    info = BACKENDS[backend]
    assert info.kinds and set(info.kinds) <= set(KINDS)
    cls = getattr(importlib.import_module(info.module), info.runner)  # no backend library imported at module level
    assert issubclass(cls, Runner) and cls.backend == backend
    params = list(inspect.signature(cls.load).parameters)
    assert params[:4] == ["path", "device", "threads", "precision_hint"]
    assert cls.load.__func__ is not Runner.load.__func__ and not inspect.isabstract(cls)


def test_every_kind_but_the_bundle_has_a_backend_that_loads_it():
    for kind in set(KINDS) - {"bundle"}:  # a bundle holds one model per target, each loaded by its backend
        assert any(kind in b.kinds for b in BACKENDS.values()), kind


@pytest.fixture(scope="module")
def artifacts(tiny_run, tmp_path_factory):
    from edgetl.export import export_run

    out = tmp_path_factory.mktemp("contract")
    result = export_run(tiny_run, out / "model.onnx", openvino=True)
    return {"run": tiny_run, "onnx": result.onnx, "openvino": result.openvino}


@pytest.mark.parametrize("kind", ["run", "onnx", "openvino"])
def test_each_kind_reads_and_writes_its_card_where_it_keeps_it(artifacts, kind, tmp_path):
    import shutil

    source = artifacts[kind]
    path = tmp_path / source.name
    (shutil.copytree if source.is_dir() else shutil.copy)(source, path)
    if kind == "openvino":
        shutil.copy(source.with_suffix(".bin"), path.with_suffix(".bin"))
    assert kind_of(path).name == kind and is_edgetl_artifact(path)
    card = read_card(path)
    assert card.labels and card.modality == "image"
    changed = dataclasses.replace(card, metrics={**card.metrics, "contract": 1.5})
    write_card(path, changed)
    assert read_card(path).metrics["contract"] == 1.5
    info = backend_for(path)
    assert kind in info.kinds
    with open_runner(path) as runner:  # the backend reads the same card
        assert runner.card.metrics["contract"] == 1.5 and runner.backend == info.name
    assert not list(tmp_path.glob(".*"))  # written in place, no temporary left behind


def test_an_engine_keeps_its_card_beside_it_and_reads_it_without_tensorrt(artifacts, tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a real engine: the card is what is checked here")
    assert not is_edgetl_artifact(engine)
    card = read_card(artifacts["onnx"])
    write_card(engine, card)
    assert engine_card_path(engine).is_file() and is_edgetl_artifact(engine)
    assert kind_of(engine).name == "tensorrt" and read_card(engine).labels == card.labels
    assert backend_for(engine).name == "tensorrt"


def test_what_is_not_an_artifact_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ArtifactError, match="not an artifact edgetl knows"):
        kind_of(tmp_path / "notes.txt")
    with pytest.raises(ArtifactError, match="folder without a model card"):
        kind_of(tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        kind_of(tmp_path / "missing.onnx")
    (tmp_path / "lonely.engine").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="no card beside it"):
        read_card(tmp_path / "lonely.engine")


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_device_auto_is_decided_by_edgetl_not_by_the_library(artifacts, kind):
    """--device auto: the backend's GPU where there is one it can use, else the CPU; never
    OpenVINO's own AUTO plugin, which may pick another device and precision."""
    with open_runner(artifacts[kind], device="auto") as runner:
        assert runner.device == "cpu"  # no GPU is lent to this project
        if kind == "openvino":
            assert list(runner.compiled.get_property("EXECUTION_DEVICES")) == ["CPU"]


@pytest.mark.parametrize("kind", ["run", "onnx", "openvino"])
def test_a_runner_fed_another_shape_or_dtype_names_the_cards_input(artifacts, kind):
    """Runner.infer checks the batch against the card in the base class, for every backend:
    a wrong rank, a wrong static size or an integer array is one error naming the card's
    shape; a float64 batch is cast and answers as float32 does."""
    import numpy as np

    from edgetl.core.errors import DataError

    with open_runner(artifacts[kind], threads=1) as runner:
        shape = [d if isinstance(d, int) else 2 for d in runner.card.input["shape"]]
        shown = "x".join("N" if not isinstance(d, int) else str(d) for d in runner.card.input["shape"])
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        for bad in (x[0], x[:, :, :-1], (x * 255).astype(np.uint8)):
            with pytest.raises(DataError, match=shown):
                runner.infer(bad)
        np.testing.assert_allclose(runner.infer(x.astype(np.float64)), runner.infer(x), atol=1e-6)


def test_a_new_backend_is_one_runner_module_and_one_row(tiny_run, tiny_digits, tmp_path, monkeypatch):
    """docs/architecture.md's promise: with tests/mirror_backend.py and one row in the
    backend table, evaluate, bench, package, verify and doctor run through the new backend
    (and its figures are those of the backend it mirrors)."""
    import shutil
    import sys
    from pathlib import Path

    from edgetl.bench.harness import bench
    from edgetl.deploy.package import package
    from edgetl.evaluate.accuracy import evaluate
    from edgetl.export import export_run
    from edgetl.runtime.backend_table import BackendInfo
    from edgetl.runtime.doctor import doctor
    from edgetl.runtime.verify import verify

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setitem(BACKENDS, "mirror", BackendInfo(
        "mirror", "mirror_backend", "MirrorRunner", ("onnx",), ("cpu",), "base install", "onnxruntime",
        versions=("onnxruntime",), preference=5, reference_rank=5, model_suffix=".onnx", int8_suffix=".int8.onnx"))
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    onnx = export_run(run).onnx
    mirror = sys.modules.get("mirror_backend") or importlib.import_module("mirror_backend")
    calls = mirror.MirrorRunner.calls

    mirrored = evaluate(onnx, tiny_digits, backend="mirror", threads=1)
    assert mirrored.backend == "mirror" and mirrored.n > 0
    assert mirrored.accuracy == evaluate(onnx, tiny_digits, backend="onnxruntime", threads=1).accuracy
    rows = bench([onnx], backends=("mirror",), batches=(1,), iters=3, warmup=1, threads=1, data=str(tiny_digits)).rows
    assert [(r.backend, r.ok) for r in rows] == [("mirror", True)] and rows[0].accuracy == mirrored.accuracy
    bundle = package(run, tmp_path / "bundle", targets=("mirror",), samples=3, threads=1).out
    checks = verify(bundle)
    assert [(c.target, c.passed) for c in checks] == [("mirror", True)]
    assert doctor()["backends"]["mirror"]["installed"]
    assert mirror.MirrorRunner.calls > calls + 3


def test_a_large_ir_is_known_as_edgetls_by_the_card_at_its_end(artifacts, tmp_path):
    """OpenVINO writes rt_info after the layers: an .xml of over a megabyte (an INT8
    detector's) holds its card past the first megabyte, and --overwrite must still know it."""
    xml = artifacts["openvino"].read_text()
    header_end = xml.index("?>") + 2
    padded = xml[:header_end] + "<!--" + "x" * (2 << 20) + "-->" + xml[header_end:]
    big = tmp_path / "big.xml"
    big.write_text(padded)
    assert big.stat().st_size > 2 << 20 and is_edgetl_artifact(big)
    foreign = tmp_path / "foreign.xml"
    foreign.write_text(xml[:header_end] + "<net name='x'></net>")
    assert not is_edgetl_artifact(foreign)
