"""TensorRT: everything up to the engine is checked here (profiles, the trtexec line,
card checks, errors without TensorRT); building and running engines needs TensorRT and a
GPU (tests marked `tensorrt`, skipped elsewhere)."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from edgetl.core.card import ModelCard
from edgetl.core.errors import ArtifactError, BackendUnavailable, ConfigError
from edgetl.deploy.tensorrt_engine import BatchProfile, EngineSpec, build_engine, check_spec, plan_build, trtexec_command
from edgetl.runtime import open_runner
from edgetl.runtime.tensorrt_runner import check_compatible, engine_card_path

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_batch_profiles():
    assert BatchProfile.parse(None) == BatchProfile(1, 8, 32)
    assert BatchProfile.parse("2:4:8") == BatchProfile(2, 4, 8)
    assert BatchProfile.parse("16") == BatchProfile(1, 16, 16)
    assert BatchProfile.parse(None, static_batch=4) == BatchProfile(4, 4, 4)
    for bad in ("8:4:16", "0:1:2", "a:b:c", "1:2"):
        with pytest.raises(ConfigError):
            BatchProfile.parse(bad)
    with pytest.raises(ConfigError, match="static batch"):
        BatchProfile.parse("1:8:32", static_batch=4)


def test_trtexec_line_matches_the_spec(quant_onnx, tmp_path):
    card, qdq = check_spec(EngineSpec(quant_onnx, tmp_path / "m.engine", "fp16"))
    assert not qdq
    spec = EngineSpec(quant_onnx, tmp_path / "m.engine", "fp16", BatchProfile(1, 4, 16), workspace_mb=512,
                      timing_cache=tmp_path / "t.cache")
    line = trtexec_command(spec, plan_build(spec, card, qdq))
    assert line.startswith("trtexec ") and f"--onnx={quant_onnx}" in line
    assert "--minShapes=input:1x3x32x32" in line and "--optShapes=input:4x3x32x32" in line
    assert "--maxShapes=input:16x3x32x32" in line and "--memPoolSize=workspace:512M" in line
    assert "--fp16" in line and "--int8" not in line and "--timingCacheFile=" in line and "--device=" not in line
    second = dataclasses.replace(spec, device=1)  # build-engine --gpu 1: trtexec builds on that GPU too
    assert "--device=1" in trtexec_command(second, plan_build(second, card, qdq))
    dla = EngineSpec(quant_onnx, tmp_path / "m.engine", "fp16", BatchProfile(4, 4, 4), dla_core=0)
    line = trtexec_command(dla, plan_build(dla, card, qdq))
    assert "--useDLACore=0" in line and "--allowGPUFallback" in line and "--minShapes=input:4x3x32x32" in line
    with pytest.raises(ConfigError, match="static shapes"):  # the DLA cannot run a dynamic profile
        plan_build(EngineSpec(quant_onnx, tmp_path / "m.engine", "fp16", BatchProfile(1, 4, 16), dla_core=0), card, qdq)


def test_int8_engines_need_the_qdq_model(quant_onnx, tmp_path):
    with pytest.raises(ConfigError, match="QDQ"):
        check_spec(EngineSpec(quant_onnx, tmp_path / "m.engine", "int8"))
    with pytest.raises(ConfigError):
        check_spec(EngineSpec(quant_onnx, tmp_path / "m.engine", "int4"))
    with pytest.raises(ArtifactError):
        check_spec(EngineSpec(tmp_path / "missing.onnx", tmp_path / "m.engine"))


def test_engine_compatibility_check():
    built = {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "onnx": "m.qdq.onnx"}
    check_compatible(built, {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}, Path("m.engine"))
    with pytest.raises(ArtifactError, match="TensorRT 10.3.0") as exc:
        check_compatible(built, {"version": "10.8.0", "gpu": "Orin", "compute_capability": "8.7"}, Path("m.engine"))
    assert "edgetl build-engine m.qdq.onnx" in exc.value.hint
    with pytest.raises(ArtifactError, match="compute capability 8.7") as exc:
        check_compatible(built, {"version": "10.3.0", "gpu": "NVIDIA H100", "compute_capability": "9.0"},
                         Path("m.engine"))
    assert "rebuild" in exc.value.hint


@pytest.mark.skipif(HAS_TRT, reason="checks the behaviour without TensorRT")
def test_without_tensorrt_the_errors_are_clear(quant_onnx, tmp_path):
    spec = EngineSpec(quant_onnx, tmp_path / "m.engine", "fp16")
    with pytest.raises(BackendUnavailable) as exc:
        build_engine(spec)
    assert "trtexec --onnx=" in exc.value.hint  # the way forward on a device without the bindings
    assert "for TensorRT 10.3 (JetPack 6; none installed here)" in exc.value.hint  # the version its flags are for
    assert not (tmp_path / "m.engine").exists()
    engine = tmp_path / "other.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        open_runner(engine)
    res = CliRunner().invoke(cli, ["build-engine", str(quant_onnx), "--out", str(tmp_path / "x.engine")])
    assert res.exit_code == 2 and "TensorRT is not installed" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["build-engine", str(quant_onnx), "--print-trtexec", "--batch-profile", "1:2:4"])
    assert res.exit_code == 0 and "--maxShapes=input:4x3x32x32" in res.output
    assert "# for TensorRT 10.3 (JetPack 6" in res.output and "--stronglyTyped" not in res.output
    res = CliRunner().invoke(cli, ["build-engine", str(quant_onnx), "--print-trtexec", "--tensorrt-version", "11.0",
                                   "--precision", "fp32"])
    assert res.exit_code == 0 and "# for TensorRT 11.0;" in res.output and "--stronglyTyped" in res.output


@pytest.mark.tensorrt
def test_build_and_run_engines(quant_onnx, tmp_path):
    """FP16 and INT8 (QDQ) engines agree with the FP32 model on real samples; the card
    records the GPU; a card from another GPU is refused with a rebuild hint."""
    from edgetl.data.samples import validation_samples
    from edgetl.export.parity import Tolerance, compare
    from edgetl.quantize import quantize
    from edgetl.runtime.artifacts import read_onnx_card

    val = validation_samples(read_onnx_card(quant_onnx))
    with open_runner(quant_onnx) as ref_runner:
        reference = ref_runner.infer(val.x)
    qdq = quantize(quant_onnx, "tensorrt", samples=32, out=tmp_path / "m.qdq.onnx").out
    for model, precision in ((quant_onnx, "fp16"), (qdq, "int8")):
        out = tmp_path / f"{precision}.engine"
        info = build_engine(EngineSpec(model, out, precision, BatchProfile(1, 8, 16),
                                       timing_cache=tmp_path / "timing.cache"))
        assert info["compute_capability"] and (tmp_path / "timing.cache").stat().st_size > 0
        with open_runner(out) as runner:
            assert runner.backend == "tensorrt" and runner.card.precision == precision
            result = compare(reference[:16], runner, val.x[:16], val.labels[:16], Tolerance.for_precision(precision))
            assert result.agreement >= 0.9
            assert runner.infer(val.x[:1]).shape == (1, 4)
            with pytest.raises(ConfigError):
                runner.infer(np.zeros((17, 3, 32, 32), np.float32))
    card = ModelCard.load(engine_card_path(tmp_path / "int8.engine"))
    card.source["tensorrt"]["compute_capability"] = "1.0"
    card.save(engine_card_path(tmp_path / "int8.engine"))
    with pytest.raises(ArtifactError, match="rebuild|compute capability"):
        open_runner(tmp_path / "int8.engine")
