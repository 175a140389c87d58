"""--threads reaches every library that computes, read back from each; without it, the
count is edgetl's default (half the usable cores), never the library's."""
import numpy as np
import onnxruntime
import openvino as ov
import pytest
import torch

from edgetl.core.threads import default_threads, resolve_threads, usable_cores, using_threads
from edgetl.quantize.threads import library_threads
from edgetl.runtime import open_runner


def _ort_threads(runner) -> int:
    return runner.session.get_session_options().intra_op_num_threads


def _spins(options) -> str:
    """ONNX Runtime's setting of whether waiting threads spin, read back from a session's options."""
    return options.get_session_config_entry("session.intra_op.allow_spinning")


@pytest.fixture(scope="module")
def quant_ir(quant_onnx, tmp_path_factory):
    from edgetl.export.openvino_ir import export_openvino
    from edgetl.runtime.artifacts import read_onnx_card

    xml = tmp_path_factory.mktemp("ir") / "model.xml"
    export_openvino(quant_onnx, xml, read_onnx_card(quant_onnx), False)
    return xml


@pytest.mark.parametrize("threads", [1, 2])
def test_onnxruntime_and_openvino_runners_use_the_count_asked_for(quant_onnx, quant_ir, threads):
    with open_runner(quant_onnx, backend="onnxruntime", threads=threads) as runner:
        assert _ort_threads(runner) == threads and runner.threads == threads
        # never ONNX Runtime's default (spin): waiting threads sleep, so a second thread does
        # not fight a busy neighbour for its core (benchmarks/threads.py --passive)
        assert _spins(runner.session.get_session_options()) == "0"
    with open_runner(quant_ir, backend="openvino", threads=threads) as runner:
        assert int(runner.compiled.get_property("INFERENCE_NUM_THREADS")) == threads


def test_without_threads_the_default_is_edgetls_and_a_command_sets_it_for_what_it_opens(quant_onnx):
    assert default_threads() == max(1, usable_cores() // 2)
    with open_runner(quant_onnx, backend="onnxruntime") as runner:
        assert _ort_threads(runner) == default_threads()
    other = 2 if default_threads() == 1 else 1
    with using_threads(other):
        assert resolve_threads(None) == other and resolve_threads(3) == 3
        with open_runner(quant_onnx, backend="onnxruntime") as runner:
            assert _ort_threads(runner) == other
    assert resolve_threads(None) == default_threads()


def test_the_torch_runner_sets_torchs_threads(tiny_run):
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            with open_runner(tiny_run, backend="torch", threads=n):
                assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


def test_the_quantization_libraries_own_sessions_get_the_count(quant_onnx, tmp_path):
    """NNCF compiles with a fresh ov.Core() and ONNX Runtime's calibrator makes its own
    session: both take the count inside library_threads, and nothing stays patched."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    model = ov.Core().read_model(str(quant_onnx))
    original = onnxruntime.SessionOptions
    with library_threads(1):
        compiled = ov.Core().compile_model(model, "CPU")
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        named = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 2})  # an explicit count stays
        assert int(named.get_property("INFERENCE_NUM_THREADS")) == 2
        calibrator = create_calibrator(str(quant_onnx), augmented_model_path=str(tmp_path / "aug.onnx"),
                                       calibrate_method=CalibrationMethod.MinMax)
        assert calibrator.infer_session.get_session_options().intra_op_num_threads == 1
        assert _spins(calibrator.infer_session.get_session_options()) == "0"
    assert onnxruntime.SessionOptions is original
    assert int(ov.Core().compile_model(model, "CPU").get_property("INFERENCE_NUM_THREADS")) != 1 or usable_cores() == 1


def test_quantize_records_the_count_it_used(quant_onnx, tmp_path):
    from edgetl.quantize import quantize
    from edgetl.runtime.artifacts import read_onnx_card

    result = quantize(quant_onnx, target="onnxruntime", out=tmp_path / "int8.onnx", threads=1, max_drop=None)
    card = read_onnx_card(result.out)
    assert card.source["quantization"]["threads"] == 1
    assert np.isfinite(result.int8_accuracy)
