"""Export to ONNX and OpenVINO IR behind the parity gate, on real samples."""
import json
import shutil
import warnings

import numpy as np
import onnx
import pytest
from conftest import bf16_possible
from onnx import numpy_helper

from edgetl.core.errors import ArtifactError, ConfigError
from edgetl.evaluate.accuracy import evaluate
from edgetl.export import export_run, verify
from edgetl.export.parity import ParityError
from edgetl.runtime import open_runner


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_digits, tiny_run):
    """A ResNet, a MobileNetV3 (both 1 epoch from scratch) and the packaged EfficientNet-Lite0 run."""
    from edgetl import finetune

    out = {"efficientnet_lite0": tiny_run}
    for name in ("resnet18", "mobilenet_v3_small"):
        path = tmp_path_factory.mktemp("exportruns") / name
        finetune(tiny_digits, name, path, weights="none", strategy="full", epochs=1, input_size=32, batch_size=8)
        out[name] = path
    return out


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """Each run's ONNX model and IR, exported once for the tests that only read them
    (an export of Lite0 takes half a minute here): {name: (folder, ExportResult)}."""
    made = {}
    for name in ("efficientnet_lite0", "resnet18"):
        folder = tmp_path_factory.mktemp(f"exported-{name}")
        made[name] = folder, export_run(runs[name], folder / "m.onnx", openvino=True)
    return made


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_lite0"])
def test_three_families_pass_the_gate_on_onnxruntime_and_openvino(runs, tmp_path, name):
    result = export_run(runs[name], tmp_path / "m.onnx", openvino=True)
    assert [r.backend for r in result.parity] == ["onnxruntime", "openvino"]
    assert all(r.passed and r.agreement == 1.0 and r.n == 24 for r in result.parity)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto)
    assert not {n.op_type for n in proto.graph.node} & {"Dropout"}, "training-only nodes left in the graph"
    card = json.loads({p.key: p.value for p in proto.metadata_props}["edgetl"])
    assert card["metrics"]["parity"]["passed"] and card["source"]["export"]["exporter"] in ("torch.export", "torchscript")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.onnx", "m.xml"]


def test_dynamic_batch_accepts_1_and_7(exported):
    folder, _ = exported["resnet18"]
    for artifact in ("m.onnx", "m.xml"):
        with open_runner(folder / artifact) as runner:
            for batch in (1, 7):
                assert runner.infer(np.zeros((batch, 3, 32, 32), np.float32)).shape == (batch, 3)


def test_static_batch(runs, tmp_path):
    result = export_run(runs["resnet18"], tmp_path / "s.onnx", static_batch=4)
    assert result.parity[0].passed
    proto = onnx.load(str(tmp_path / "s.onnx"))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4


def test_evaluate_gives_the_same_accuracy_on_every_artifact(runs, exported, tiny_digits):
    folder, _ = exported["efficientnet_lite0"]
    accs = {p: evaluate(p, tiny_digits).accuracy for p in (runs["efficientnet_lite0"], folder / "m.onnx",
                                                            folder / "m.xml")}
    assert len(set(accs.values())) == 1, accs


def test_a_tampered_onnx_fails_the_gate_with_figures(runs, exported, tmp_path):
    proto = onnx.load(str(exported["resnet18"][0] / "m.onnx"))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)) if len(t.dims) == 2 else 0)
    weights = numpy_helper.to_array(init).copy()
    weights[0] += 1.0  # one class's head weights changed
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(proto, str(tmp_path / "tampered.onnx"))
    with pytest.raises(ParityError) as err:
        verify(runs["resnet18"], [tmp_path / "tampered.onnx"])
    assert "tampered.onnx" in err.value.message and "max-abs" in err.value.message


def test_export_errors(runs, tmp_path):
    with pytest.raises(ConfigError, match="opset 99"):
        export_run(runs["resnet18"], tmp_path / "m.onnx", opset=99)
    broken = tmp_path / "broken"
    shutil.copytree(runs["resnet18"], broken)
    (broken / "model.pt").unlink()
    with pytest.raises(ArtifactError, match="no checkpoint"):
        export_run(broken, tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="--openvino"):
        export_run(runs["resnet18"], tmp_path / "m.onnx", fp16=True)
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob(".m.*"))


def test_onnx_without_card_is_refused(tmp_path, exported):
    proto = onnx.load(str(exported["resnet18"][0] / "m.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ArtifactError, match="no edgetl model card"):
        open_runner(tmp_path / "bare.onnx")


def test_an_unsupported_operator_names_its_module(tmp_path):
    """Neither exporter handles eigenvalues: the error names the operator and the module."""
    import torch

    from edgetl.core.card import ModelCard
    from edgetl.core.errors import ArtifactError
    from edgetl.export.onnx_export import export_onnx

    class Spectral(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x[:, 0, :4, :4]).real.sum(-1, keepdim=True) + x.mean((1, 2, 3))[:, None]

    model = torch.nn.Sequential(torch.nn.Identity(), Spectral())
    card = ModelCard(labels=["a"], modality="image", input={"name": "input", "shape": [None, 3, 8, 8]},
                     preprocessing={})
    with pytest.raises(ArtifactError) as exc:
        export_onnx(model, card, tmp_path / "m.onnx")
    assert "aten::linalg_eig" in exc.value.message and "module 1 (Spectral)" in exc.value.message
    assert not (tmp_path / "m.onnx").exists()


def test_openvino_computes_an_fp32_ir_in_f32_on_every_cpu(exported, tiny_digits):
    """OpenVINO's CPU plugin would pick bf16 by itself on AVX-512 BF16 / AMX CPUs; the
    runner must ask for f32 and the compiled model must say so."""
    folder, result = exported["efficientnet_lite0"]
    with open_runner(folder / "m.xml") as runner:
        assert runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        assert runner.inference_precision == "f32"
    assert [r.inference_precision for r in result.parity] == ["f32", "f32"]
    card = open_runner(folder / "m.xml").card
    assert card.metrics["parity"]["inference_precision"] == "f32"  # the card records what ran
    assert evaluate(folder / "m.xml", tiny_digits).inference_precision == "f32"


def test_a_bf16_request_is_honoured_only_where_the_cpu_has_it(exported, tiny_digits):
    from edgetl.core.errors import BackendUnavailable

    folder, _ = exported["efficientnet_lite0"]
    if bf16_possible():
        with open_runner(folder / "m.xml", precision_hint="bf16") as runner:
            assert runner.inference_precision == "bf16"
            assert runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
        assert evaluate(folder / "m.xml", tiny_digits, precision_hint="bf16").inference_precision == "bf16"
    else:
        with pytest.raises(BackendUnavailable, match="bf16"):
            open_runner(folder / "m.xml", precision_hint="bf16")
    with pytest.raises(ConfigError, match="applies to the openvino backend"):
        open_runner(folder / "m.onnx", precision_hint="bf16")


def test_a_bf16_request_on_an_avx2_cpu_is_one_clear_error(exported, tiny_digits):
    """oneDNN's ISA cap makes OpenVINO use AVX2 kernels only, as on an AVX2-only CPU
    (on such a CPU it changes nothing): bf16 cannot be compiled there."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    args = [sys.executable, "-m", "edgetl", "evaluate", str(exported["efficientnet_lite0"][0] / "m.xml"), "--data",
            str(tiny_digits)]
    bf16 = subprocess.run([*args, "--precision-hint", "bf16"], env=env, capture_output=True, text=True)
    assert bf16.returncode == 2, bf16.stderr
    assert "error:" in bf16.stderr and "bf16" in bf16.stderr and "Traceback" not in bf16.stderr
    assert "--precision-hint at f32" in bf16.stderr
    f32 = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True)
    assert f32.returncode == 0, f32.stderr
    assert json.loads(f32.stdout)["inference_precision"] == "f32"


def test_dft_kernels_are_generated_in_the_graph_and_compute_the_stored_ones():
    """A front-end convolution holding the STFT kernels (1 MB) gets them from a few graph
    operations instead; ONNX Runtime computes the same spectrum, and weights that are not
    exactly such kernels are left alone."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgetl.backbones.frontend import dft_kernels
    from edgetl.export.frontend_kernels import generate_kernels

    def model(weights):
        conv = helper.make_node("Conv", ["wave", "dft"], ["spec"], name="frontend/conv", strides=[160])
        graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("wave", TensorProto.FLOAT, [1, 1, 1632])],
                                  [helper.make_tensor_value_info("spec", TensorProto.FLOAT, [1, 514, 8])],
                                  [numpy_helper.from_array(weights.astype(np.float32), "dft")])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])

    def run(proto):
        return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"wave": wave})[0]

    wave = np.random.default_rng(0).normal(0, 3000, (1, 1, 1632)).astype(np.float32)
    stored = model(dft_kernels(512, 400))
    generated = model(dft_kernels(512, 400))
    assert generate_kernels(generated, "frontend") == 514 * 512 * 4
    assert [i.name for i in generated.graph.initializer] == [] and stored.ByteSize() - generated.ByteSize() > 1_000_000
    onnx.checker.check_model(generated)
    reference = run(stored)
    assert np.abs(run(generated) - reference).max() <= 1e-5 * np.abs(reference).max()
    other = model(dft_kernels(512, 400) * 1.01)  # not the kernels: kept as they are
    assert generate_kernels(other, "frontend") == 0 and len(other.graph.initializer) == 1


def test_dft_kernels_are_generated_in_an_ir_converted_from_torch(tmp_path):
    """Quantization-aware training converts the torch model straight to OpenVINO, which
    stores the kernels with the front-end's input scale multiplied in: they become
    operations there too, and the IR computes the torch front-end's log-mel."""
    import openvino as ov
    import torch

    from edgetl.backbones.frontend import LogMel
    from edgetl.export.frontend_kernels import generate_kernels_openvino

    frontend = LogMel().eval()
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16000)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ov.convert_model(frontend, example_input=torch.zeros(1, 16000))
    assert generate_kernels_openvino(model, "frontend") == 514 * 512 * 4
    ov.save_model(model, str(tmp_path / "m.xml"), compress_to_fp16=False)
    assert (tmp_path / "m.bin").stat().st_size < 100_000  # the mel filterbank and a few numbers
    core = ov.Core()
    ir = core.compile_model(core.read_model(str(tmp_path / "m.xml")), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    reference = frontend(torch.from_numpy(wave)).detach().numpy()
    assert np.abs(ir(wave)[0] - reference).max() <= 1e-5 * np.abs(reference).max()
    assert generate_kernels_openvino(model, "frontend") == 0  # nothing left to generate


def _window_module(*nodes) -> "object":
    """A graph from `windows` [N, 14, 4] (windows of 14 frames of 4 bands) to `emb`."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)

    def weight(name, shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape, rng.normal(size=int(np.prod(shape))).tolist())
    weights = [weight("w", [3, 1, 14, 4]), weight("w1", [3, 1, 6, 4]), weight("w2", [5, 3, 5, 1]),
               helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph([helper.make_node("Unsqueeze", ["windows", "axes"], ["x"]), *nodes], "window",
                              [helper.make_tensor_value_info("windows", TensorProto.FLOAT, ["n", 14, 4])],
                              [helper.make_tensor_value_info("emb", TensorProto.FLOAT, None)], weights)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_export_measures_how_the_window_module_streams():
    """A valid convolution whose stride along the frames is the windows' step slides as
    one stage (its windows come out on axis 2); two strided convolutions are two stages,
    cut between them, whose widths compose to the window; one with another stride, or a
    module that pools over the whole window, does not stream: the card only claims what
    the graph does."""
    from onnx import helper

    from edgetl.export.sliding import stream_stages

    parts, tensors = {"frames": 14, "step": 4}, {"windows": "windows", "embeddings": "emb"}

    def conv(stride: int, then=()):
        return _window_module(helper.make_node("Conv", ["x", "w"], ["c" if then else "emb"], kernel_shape=[14, 4],
                                               strides=[stride, 1], name="m/conv"), *then)
    assert stream_stages(conv(4), parts, tensors) == [
        {"from": "windows", "to": "emb", "axis": 1, "out_axis": 2, "width": 14, "stride": 4}]
    two = _window_module(helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[6, 4], strides=[2, 1], name="m/c1"),
                         helper.make_node("Conv", ["c1", "w2"], ["emb"], kernel_shape=[5, 1], strides=[2, 1],
                                          name="m/c2"))
    assert [(s["to"], s["width"], s["stride"]) for s in stream_stages(two, parts, tensors)] == [("c1", 6, 2),
                                                                                               ("emb", 5, 2)]
    assert stream_stages(conv(1), parts, tensors) is None  # a window gives 1 output, a piece one per frame
    reduce = helper.make_node("ReduceMean", ["c"], ["emb"], keepdims=1, name="m/mean")
    assert stream_stages(conv(4, [reduce]), parts, tensors) is None
    assert stream_stages(conv(4), {"frames": 15, "step": 4}, tensors) is None  # no axis of the windows' frames
