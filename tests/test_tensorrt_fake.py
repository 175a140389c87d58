"""The TensorRT build and runner against a recording stand-in for `tensorrt` (tests/
fake_tensorrt.py), because the real library cannot be installed here: the builder's
calls, flags and profiles for each kind of build, the trtexec line that must equal them
flag for flag, and the runner's binding of several inputs and outputs by name and dtype.
Where `tensorrt` imports, test_tensorrt.py builds and runs real engines."""
from __future__ import annotations

import json
import shlex
import sys

import fake_cudart
import fake_tensorrt as fake
import numpy as np
import onnx
import pytest

from edgetl.core.card import ModelCard
from edgetl.core.errors import ConfigError
from edgetl.deploy.tensorrt_engine import BatchProfile, EngineSpec, build_engine, check_spec, plan_build, trtexec_command
from edgetl.runtime.artifacts import read_card, set_onnx_card
from edgetl.runtime.tensorrt_runner import TensorRTRunner, engine_card_path


@pytest.fixture
def trt(monkeypatch):
    """The stand-in as `tensorrt`, and the stand-in of cuda-python's runtime under
    runtime/cuda_device.py, which runs for real."""
    from edgetl.runtime import targets

    fake.reset()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    fake_cudart.install(monkeypatch)
    monkeypatch.setattr("edgetl.runtime.machine.nvidia_driver", lambda: "540.3.0")  # JetPack 6's
    targets._gpu.cache_clear()  # the GPU facts a process read once
    return fake


@pytest.fixture(scope="module")
def models(quant_onnx, tmp_path_factory):
    """The float model, its Q/DQ form (a Q/DQ pair on the input) and a static-batch one."""
    folder = tmp_path_factory.mktemp("trt_models")
    proto = onnx.load(str(quant_onnx))
    name = proto.graph.input[0].name
    for node in proto.graph.node:
        node.input[:] = ["input_dq" if i == name else i for i in node.input]
    scale = onnx.helper.make_tensor("s", onnx.TensorProto.FLOAT, [], [0.05])
    zero = onnx.helper.make_tensor("z", onnx.TensorProto.INT8, [], [0])
    proto.graph.initializer.extend([scale, zero])
    proto.graph.node.insert(0, onnx.helper.make_node("DequantizeLinear", ["input_q", "s", "z"], ["input_dq"]))
    proto.graph.node.insert(0, onnx.helper.make_node("QuantizeLinear", [name, "s", "z"], ["input_q"]))
    qdq = folder / "m.qdq.onnx"
    onnx.save(proto, str(qdq))
    static = onnx.load(str(quant_onnx))
    card = read_card(quant_onnx)
    card.input = {**card.input, "shape": [4, *card.input["shape"][1:]]}
    set_onnx_card(static, card)
    static_path = folder / "m.b4.onnx"
    onnx.save(static, str(static_path))
    return {"float": quant_onnx, "qdq": qdq, "static": static_path}


STRONG = 1 << int(fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
FLAG_OPTION = {fake.BuilderFlag.FP16: "--fp16", fake.BuilderFlag.INT8: "--int8",
               fake.BuilderFlag.GPU_FALLBACK: "--allowGPUFallback",
               fake.BuilderFlag.OBEY_PRECISION_CONSTRAINTS: "--precisionConstraints=obey",
               fake.BuilderFlag.PREFER_PRECISION_CONSTRAINTS: None}  # what trtexec --useDLACore sets itself


def _as_trtexec(calls) -> set[str]:
    """What the recorded builder calls mean as trtexec options."""
    out = set()
    for call in calls:
        kind, args = call[0], call[1:]
        if kind == "create_network" and args[0] & STRONG:
            out.add("--stronglyTyped")
        elif kind == "set_flag" and FLAG_OPTION[args[0]]:
            out.add(FLAG_OPTION[args[0]])
        elif kind == "clear_flag" and args[0] == fake.BuilderFlag.TF32:
            out.add("--noTF32")
        elif kind == "workspace":
            out.add(f"--memPoolSize=workspace:{args[0] >> 20}M")
        elif kind == "profile":
            for flag, shape in zip(("--minShapes", "--optShapes", "--maxShapes"), args[1:]):
                out.add(f"{flag}={args[0]}:{'x'.join(map(str, shape))}")
        elif kind == "dla_core":
            out.add(f"--useDLACore={args[0]}")
    return out


def _line_options(line: str) -> set[str]:
    skip = ("--onnx=", "--saveEngine=", "--timingCacheFile=", "--layerPrecisions=", "--layerOutputTypes=")
    return {a for a in shlex.split(line)[1:] if not a.startswith(skip)}


CASES = {  # name: model, precision, batch, dla, TensorRT version, expected builder flags, strongly typed
    "fp16 dynamic": ("float", "fp16", BatchProfile(1, 8, 32), None, "10.3.0", {"--fp16"}, False),
    "fp32 static batch": ("static", "fp32", BatchProfile(4, 4, 4), None, "10.3.0", set(), False),
    "int8 qdq": ("qdq", "int8", BatchProfile(1, 8, 32), None, "10.3.0", {"--int8"}, False),
    "best qdq": ("qdq", "best", BatchProfile(1, 8, 32), None, "10.3.0", {"--int8", "--fp16"}, False),
    "best float": ("float", "best", BatchProfile(2, 4, 8), None, "10.3.0", {"--fp16"}, False),
    "int8 qdq, TensorRT 10.12": ("qdq", "int8", BatchProfile(1, 8, 32), None, "10.12.0", set(), True),
    "dla fp32 becomes fp16": ("float", "fp32", BatchProfile(1, 1, 1), 1, "10.3.0", {"--fp16", "--allowGPUFallback"},
                              False),
    "dla int8 qdq": ("qdq", "int8", BatchProfile(2, 2, 2), 0, "10.3.0", {"--int8", "--allowGPUFallback"}, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_builder_calls_and_the_trtexec_line_are_the_same_build(case, trt, models, tmp_path):
    model, precision, batch, dla, version, flags, strongly = CASES[case]
    trt.reset(version)
    spec = EngineSpec(models[model], tmp_path / "m.engine", precision, batch, dla_core=dla, workspace_mb=256,
                      timing_cache=tmp_path / "t.cache")
    info = build_engine(spec)
    calls = trt.RECORD.calls
    built = next(c for c in calls if c[0] == "build")[1]
    assert {FLAG_OPTION[f] for f in built if f in (trt.BuilderFlag.FP16, trt.BuilderFlag.INT8)} == flags - {
        "--allowGPUFallback"}
    assert bool(next(c for c in calls if c[0] == "create_network")[1] & STRONG) == strongly
    profiles = [c for c in calls if c[0] == "profile"]
    if model == "static":
        assert profiles == []  # a static model has no profile (and trtexec takes no shapes for it)
    else:
        assert profiles == [("profile", "input", *(spec.shape(n, read_card(spec.onnx))
                                                  for n in (batch.min, batch.opt, batch.max)))]
    assert (("set_flag", trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS) in calls) == (dla is not None)  # as trtexec
    if dla is not None:
        assert ("dla_core", dla) in calls and ("device_type", trt.DeviceType.DLA) in calls
        assert info["dla_eligible_layers"] == 1 and info["layers"] == 2  # eligibility, not placement
    card, qdq = check_spec(spec)
    line = trtexec_command(spec, plan_build(spec, card, qdq, version))
    assert _line_options(line) == _as_trtexec(calls), line
    engine_card = ModelCard.load(engine_card_path(spec.out))
    assert engine_card.source["tensorrt"]["gpu"] == "Orin (fake)" and engine_card.precision == (
        "int8" if model == "qdq" else "fp16" if flags & {"--fp16"} else "fp32")
    assert ("cudaSetDevice", 0) in fake_cudart.CALLS  # the GPU of --gpu made current before the build


def test_impossible_builds_are_refused_with_the_remedy(models, tmp_path):
    card, qdq = check_spec(EngineSpec(models["qdq"], tmp_path / "m.engine", "fp16"))
    with pytest.raises(ConfigError, match="Q/DQ") as exc:
        plan_build(EngineSpec(models["qdq"], tmp_path / "m.engine", "fp16"), card, qdq)
    assert "m.onnx" in exc.value.hint  # the float model
    card, qdq = check_spec(EngineSpec(models["float"], tmp_path / "m.engine", "fp16"))
    with pytest.raises(ConfigError, match="strongly typed"):
        plan_build(EngineSpec(models["float"], tmp_path / "m.engine", "fp16"), card, qdq, "11.0.0")
    notes = plan_build(EngineSpec(models["float"], tmp_path / "m.engine", "fp32", BatchProfile(1, 1, 1), dla_core=0),
                       card, qdq).notes
    assert any("FP16" in n for n in notes)
    card, qdq = check_spec(EngineSpec(models["qdq"], tmp_path / "m.engine", "int8"))
    plan = plan_build(EngineSpec(models["qdq"], tmp_path / "m.engine", "int8", BatchProfile(1, 1, 1), dla_core=0),
                      card, qdq)
    assert any("GPU" in n and "fp16 --dla" in n for n in plan.notes)
    assert BatchProfile.parse(None, dla=True) == BatchProfile(1, 1, 1)
    assert BatchProfile.parse("8", dla=True) == BatchProfile(8, 8, 8)


def _fake_engine(tmp_path, quant_onnx, **tensorrt) -> object:
    path = tmp_path / "two_inputs.engine"
    path.write_bytes(b"fake engine with two inputs")
    card = read_card(quant_onnx)
    card.source = {**card.source, "tensorrt": {"version": "10.3.0", "gpu": "Orin (fake)", "compute_capability": "8.7",
                                               "onnx": "m.onnx", "inference_precision": "f16", **tensorrt}}
    card.save(engine_card_path(path))
    return path


def test_a_timing_cache_of_another_tensorrt_is_not_used_and_is_replaced(trt, models, tmp_path):
    """A timing cache records TensorRT's timings of one version on one GPU: the one beside
    an engine is reused by the next build there, but one made by TensorRT 10.3 is not
    given to 10.12; the engine's card says so, and the cache is then 10.12's."""
    cache = tmp_path / "t.cache"
    spec = EngineSpec(models["float"], tmp_path / "m.engine", "fp16", BatchProfile(1, 1, 1), timing_cache=cache)
    build_engine(spec)
    assert cache.read_bytes() == b"cache:10.3.0" and json.loads((tmp_path / "t.cache.json").read_text())[
        "tensorrt"] == "10.3.0"
    trt.reset("10.3.0")
    build_engine(spec, overwrite=True)
    assert ("timing_cache", b"cache:10.3.0") in trt.RECORD.calls  # the same version: reused
    trt.reset("10.12.0")
    build_engine(spec, overwrite=True)
    assert ("timing_cache", b"") in trt.RECORD.calls and ("timing_cache", b"cache:10.3.0") not in trt.RECORD.calls
    notes = ModelCard.load(engine_card_path(spec.out)).source["tensorrt"]["notes"]
    assert any("made by TensorRT 10.3.0 on Orin (fake): not used" in n for n in notes)
    assert cache.read_bytes() == b"cache:10.12.0"


def test_tensorrt_plugins_are_registered_before_parsing_and_deserializing(trt, models, quant_onnx, tmp_path):
    build_engine(EngineSpec(models["float"], tmp_path / "m.engine", "fp16", BatchProfile(1, 1, 1)))
    names = [c[0] for c in trt.RECORD.calls]
    assert "init_plugins" in names and names.index("init_plugins") < names.index("parse")
    trt.RECORD.calls.clear()
    TensorRTRunner.load(_fake_engine(tmp_path, quant_onnx), device="cuda:0").close()
    names = [c[0] for c in trt.RECORD.calls]
    assert names.index("init_plugins") < names.index("deserialize")


def test_a_model_tensorrt_cannot_parse_is_one_clear_error(trt, models, tmp_path, monkeypatch):
    """TensorRT's parser answers False with its errors: the error names the operator and
    the remedy, and nothing is written; a misspelt config property would fail as on a
    device (the stand-in's classes have the real ones' fixed attributes)."""
    import onnx

    from edgetl.core.errors import ArtifactError

    op = onnx.load(str(models["float"])).graph.node[0].op_type
    monkeypatch.setattr(trt, "UNSUPPORTED_OPS", {op})
    out = tmp_path / "m.engine"
    with pytest.raises(ArtifactError, match=f"TensorRT cannot parse .*no importer registered for op: {op}") as err:
        build_engine(EngineSpec(models["float"], out, "fp16", BatchProfile(1, 1, 1)))
    assert "--opset" in err.value.hint and not out.exists()
    with pytest.raises(AttributeError):
        trt.Builder(None).create_builder_config().DLA_cores = 1  # not a property of the real class


def test_the_runner_binds_every_tensor_by_name_and_dtype(trt, quant_onnx, tmp_path):
    path = _fake_engine(tmp_path, quant_onnx, dla_core=1)
    runner = TensorRTRunner.load(path, device="cuda:0")
    assert runner.inputs == ["input", "lengths"] and runner.outputs == ["logits"]
    assert ("runtime_dla_core", 1) in trt.RECORD.calls  # the core it was built for
    x = np.arange(9, dtype=np.float64).reshape(3, 3)  # float64 and int64 in: cast to the engine's dtypes
    out = runner.infer_named({"input": x, "lengths": np.array([1, 2, 3])})
    assert out["logits"].dtype == np.float16
    np.testing.assert_allclose(out["logits"], x[:, :2] * np.array([[1], [2], [3]]))
    assert [c for c in trt.RECORD.calls if c[0] == "execute"] == [("execute", s) for s in fake_cudart.STREAMS]
    assert 0 not in fake_cudart.STREAMS  # its own stream, not the legacy default
    with pytest.raises(ConfigError, match="2 inputs"):
        runner.infer(x)
    with pytest.raises(ConfigError, match="missing input"):
        runner.infer_named({"input": x})
    with pytest.raises(ConfigError, match="profile"):
        runner.infer_named({"input": np.zeros((9, 3)), "lengths": np.zeros(9)})


def test_an_engine_tensorrt_cannot_load_is_a_rebuild_error(trt, quant_onnx, tmp_path):
    from edgetl.core.errors import ArtifactError

    path = _fake_engine(tmp_path, quant_onnx)
    path.write_bytes(b"garbage")  # deserialize_cuda_engine answers None
    with pytest.raises(ArtifactError, match="could not create the engine") as exc:
        TensorRTRunner.load(path)
    assert "edgetl build-engine m.onnx" in exc.value.hint


def test_buffers_are_allocated_once_pinned_and_freed_on_close(trt, quant_onnx, tmp_path):
    """runtime/cuda_device.py over the stand-in of cuda-python: repeated calls reuse the
    device and pinned buffers (a larger batch grows them once), copies go through pinned
    memory (the stand-in refuses pageable), and close frees everything."""
    runner = TensorRTRunner.load(_fake_engine(tmp_path, quant_onnx), device="cuda:0")
    assert runner.gpu.via == "cuda-python"

    def run(n):
        x = np.random.default_rng(n).normal(size=(n, 3))
        out = runner.infer_named({"input": x, "lengths": np.arange(n)})["logits"]
        np.testing.assert_allclose(out, (x[:, :2] * np.arange(n)[:, None]).astype(np.float16))
        return out

    first = run(3)
    for _ in range(4):
        run(3)
    assert fake_cudart.count("cudaMalloc") == 3 and fake_cudart.count("cudaMallocHost") == 3  # one per tensor
    run(2)  # smaller: the same buffers
    assert fake_cudart.count("cudaMalloc") == 3
    run(6)  # larger: each tensor's buffers grow once, the old ones freed
    assert fake_cudart.count("cudaMalloc") == 6 and fake_cudart.count("cudaFree") == 3
    assert len(fake_cudart.DEVICE) == 3 and len(fake_cudart.PINNED) == 3
    assert not np.shares_memory(first, runner.buffers["logits"].host_memory)  # results are copies
    runner.close()
    assert fake_cudart.DEVICE == {} and fake_cudart.PINNED == {} and set() == fake_cudart.STREAMS


def test_a_cuda_runtime_newer_than_the_driver_is_named_with_its_remedy(trt, monkeypatch):
    """cuda-python 13 on JetPack 6's CUDA 12.6 driver: the first call answers
    cudaErrorInsufficientDriver; torch is tried, and without it the error says which
    cuda-python to install."""
    from edgetl.core.errors import BackendUnavailable
    from edgetl.runtime import cuda_device

    fake_cudart.reset(driver=12060, runtime=13000)
    monkeypatch.setattr(cuda_device, "_torch_cuda", lambda: None)
    with pytest.raises(BackendUnavailable, match="cudaErrorInsufficientDriver") as exc:
        cuda_device.CudaDevice(0)
    assert "CUDA 13.0 runtime" in exc.value.message and "CUDA 12.6" in exc.value.message
    assert exc.value.hint.startswith("pip install 'cuda-python>=12,<13'")
    report = cuda_device.gpu_report(0)
    assert report["compatible"] is False and report["found"] is False
    assert report["driver_cuda"] == "12.6" and "cuda-python>=12,<13" in report["problem"]

    class TorchCuda:  # a CUDA build of torch, as far as the fallback reads it
        def __init__(self):
            self.current = None
            self.cuda = self

        def set_device(self, index):
            self.current = index

        def get_device_properties(self, index):
            return type("Props", (), {"name": "Orin", "major": 8, "minor": 7})

    torch = TorchCuda()
    monkeypatch.setattr(cuda_device, "_torch_cuda", lambda: torch)
    device = cuda_device.CudaDevice(0)
    assert device.via == "torch" and torch.current == 0 and "cudaErrorInsufficientDriver" in device.cause
    assert device.facts() == {"gpu": "Orin", "compute_capability": "8.7"}
    fake_cudart.reset()  # a matching runtime: cuda-python itself
    assert cuda_device.CudaDevice(0).via == "cuda-python"
    assert cuda_device.gpu_report(0)["compatible"] is True


def test_a_jetson_refuses_a_newer_runtime_minor_and_doctor_names_the_pin(trt, monkeypatch):
    """JetPack 6 (CUDA 12.6) with cuda-bindings 12.9, as `cuda-python>=12,<13` resolves: x86
    runs it (minor-version compatibility), a Jetson answers cudaErrorInsufficientDriver. The
    error and doctor's report name JetPack's CUDA and the pin that matches it; bindings that
    raise instead of answering (before 12.9, without libcuda) are a cause, not a traceback."""
    from edgetl.core.errors import BackendUnavailable
    from edgetl.runtime import cuda_device

    monkeypatch.setattr(cuda_device, "_torch_cuda", lambda: None)
    fake_cudart.reset(driver=12060, runtime=12090)  # an x86 server: runs
    monkeypatch.setattr(cuda_device, "is_tegra", lambda: False)
    assert cuda_device.CudaDevice(0).via == "cuda-python" and cuda_device.gpu_report(0)["compatible"] is True
    fake_cudart.reset(driver=12060, runtime=12090, tegra=True)  # a Jetson: refused
    monkeypatch.setattr(cuda_device, "is_tegra", lambda: True)
    with pytest.raises(BackendUnavailable, match="cudaErrorInsufficientDriver") as exc:
        cuda_device.CudaDevice(0)
    assert "CUDA 12.9 runtime is newer than this Jetson's CUDA 12.6" in exc.value.message
    assert exc.value.hint.startswith("pip install 'cuda-python>=12.6,<12.7'")
    report = cuda_device.gpu_report(0)
    assert report["compatible"] is False and "cuda-python>=12.6,<12.7" in report["problem"]
    fake_cudart.reset(driver=12060, runtime=12060, tegra=True)  # the pin followed
    assert cuda_device.CudaDevice(0).via == "cuda-python" and cuda_device.gpu_report(0)["compatible"] is True

    def cannot_load(index):
        raise RuntimeError("Failed to dlopen libcuda.so.1")

    monkeypatch.setattr(fake_cudart, "cudaSetDevice", cannot_load)
    with pytest.raises(BackendUnavailable, match="cannot reach the GPU: cuda-python cannot load the CUDA driver"):
        cuda_device.CudaDevice(0)


def test_verify_builds_a_bundles_engine_into_the_cache_then_reuses_it(trt, tiny_run, tmp_path, monkeypatch):
    """A bundle with a TensorRT target on a device with TensorRT: the first verify builds the
    engine from the bundle's QDQ model into the cache and checks it against the reference
    files like any target; the second reuses it; an engine for another compute capability
    in its place is refused with that reason and built again."""
    import json
    import shutil

    from click.testing import CliRunner

    from edgetl.cli import cli
    from edgetl.runtime.bundle import Bundle
    from edgetl.runtime.targets import target_problem

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    bundle = tmp_path / "bundle"
    packaged = CliRunner().invoke(cli, ["-q", "package", str(run), "--targets", "tensorrt,onnxruntime",
                                        "--out", str(bundle)])
    assert packaged.exit_code == 0, packaged.output
    assert "no engine built for this GPU yet" in target_problem(Bundle.open(bundle), "tensorrt")

    def verify():
        result = CliRunner().invoke(cli, ["verify", str(bundle), "--json"])
        assert result.exit_code == 0, result.output
        return {c["target"]: c for c in json.loads(result.output[result.output.index("["):])}, result.output

    def builds():
        return sum(c[0] == "build" for c in trt.RECORD.calls)

    checks, _ = verify()
    engines = list((tmp_path / "cache" / "engines").rglob("*.engine"))
    assert len(engines) == 1 and engines[0].name == "trt10.3.0-cc8.7-orin-fake.engine"
    assert builds() == 1 and checks["tensorrt"]["backend"] == "tensorrt"
    # the bundle's TensorRT target is the float model: an FP32 engine, checked at FP32's tolerance
    # (an FP16 one, which the stand-in rounds through float16 as the GPU would, failed it)
    assert checks["tensorrt"]["precision"] == "fp32" and json.loads(engine_card_path(engines[0]).read_text())[
        "precision"] == "fp32"
    assert all(fake.BuilderFlag.FP16 not in c[1] for c in trt.RECORD.calls if c[0] == "build")
    assert checks["tensorrt"]["passed"] and checks["tensorrt"]["agreement"] == 1.0 and checks["tensorrt"]["n"] >= 3
    assert checks["tensorrt"]["notes"] == []
    assert target_problem(Bundle.open(bundle), "tensorrt") is None  # predict and bench now run the engine

    checks, _ = verify()
    assert builds() == 1 and checks["tensorrt"]["backend"] == "tensorrt"  # reused

    card_path = engine_card_path(engines[0])
    card = json.loads(card_path.read_text())
    card["source"]["tensorrt"].update(compute_capability="7.2", gpu="Xavier")
    card_path.write_text(json.dumps(card))
    assert "built for Xavier (compute capability 7.2)" in target_problem(Bundle.open(bundle), "tensorrt")
    checks, output = verify()
    assert "not loaded" in output and "compute capability 7.2" in output
    assert builds() == 2 and checks["tensorrt"]["passed"]
    assert json.loads(card_path.read_text())["source"]["tensorrt"]["compute_capability"] == "8.7"


def test_an_engine_without_a_card_is_benchmarked_on_generated_inputs(trt, quant_onnx, tmp_path):
    """An engine built by trtexec carries no edgetl card: bench reads its tensors from the
    engine (two inputs, float and int32, a dynamic batch within the profile) and times it
    on generated inputs, as trtexec does; other commands still ask for the card."""
    from edgetl.bench.harness import NO_CARD, bench
    from edgetl.core.errors import ArtifactError

    path = _fake_engine(tmp_path, quant_onnx)
    engine_card_path(path).unlink()
    rows = bench([path], threads=1, iters=3, warmup=1, batches=(1, 4)).rows
    assert [(r.backend, r.batch, r.ok, r.accuracy, r.note) for r in rows] == [("tensorrt", 1, True, None, NO_CARD),
                                                                             ("tensorrt", 4, True, None, NO_CARD)]
    assert sum(c[0] == "execute" for c in trt.RECORD.calls) >= 2 * (3 + 1)
    with pytest.raises(ArtifactError, match="card"):
        TensorRTRunner.load(path)
