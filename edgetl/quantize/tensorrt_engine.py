"""ONNX -> TensorRT engine, with the standard `tensorrt` Python API (the same on x86 and
JetPack): ONNX parser, one optimization profile for a dynamic batch, FP16 / INT8 from a
QDQ model (explicit quantization; no deprecated implicit calibrators), a timing cache
reused between builds, a DLA core with GPU fallback on Jetson. The engine's card beside
it records the TensorRT version, GPU and compute capability the engine is bound to.

`trtexec_command` gives the same build as a trtexec line, for devices where the Python
bindings are missing; it needs no TensorRT to compute.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import tempfile
from pathlib import Path

from edgetl import progress
from edgetl.card import ModelCard, build_fingerprint
from edgetl.errors import ArtifactError, BackendUnavailable, ConfigError
from edgetl.export.onnx_export import frontend_nodes, in_frontend
from edgetl.outputs import check_output, temp_dir_beside

PRECISIONS = ("fp32", "fp16", "int8", "best")


@dataclasses.dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str | None, static_batch: int | None = None) -> "BatchProfile":
        """'MIN:OPT:MAX', or one number N for 1:N:N; a static-batch model fixes all three."""
        if static_batch:
            if text and cls.parse(text) != cls(static_batch, static_batch, static_batch):
                raise ConfigError(f"the model has a static batch of {static_batch}; --batch cannot change it",
                                  hint="drop --batch, or export with a dynamic batch")
            return cls(static_batch, static_batch, static_batch)
        if not text:
            return cls(1, 8, 32)
        try:
            parts = [int(p) for p in text.split(":")]
        except ValueError:
            raise ConfigError(f"--batch {text!r} is not MIN:OPT:MAX", hint="e.g. --batch 1:8:32") from None
        if len(parts) == 1:
            parts = [1, parts[0], parts[0]]
        if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
            raise ConfigError(f"--batch {text!r} needs 1 <= MIN <= OPT <= MAX", hint="e.g. --batch 1:8:32")
        return cls(*parts)


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    onnx: Path
    out: Path
    precision: str = "best"
    batch: BatchProfile = BatchProfile(1, 8, 32)
    dla_core: int | None = None
    workspace_mb: int = 1024
    timing_cache: Path | None = None

    def shape(self, n: int, card: ModelCard) -> tuple[int, ...]:
        return (n, *card.input["shape"][1:])


def _is_qdq(onnx_path: Path) -> bool:
    import onnx

    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)


def check_spec(spec: EngineSpec) -> tuple[ModelCard, bool]:
    """What can be checked without TensorRT: the ONNX file, its card, precision vs QDQ."""
    from edgetl.runtime.onnxruntime_runner import read_onnx_card

    if spec.precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {spec.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    if spec.workspace_mb < 1:
        raise ConfigError(f"--workspace must be at least 1 MB, got {spec.workspace_mb}", hint="e.g. --workspace 1024")
    if spec.dla_core is not None and spec.dla_core < 0:
        raise ConfigError(f"--dla is a DLA core number (0 or more), got {spec.dla_core}", hint="e.g. --dla 0")
    if not spec.onnx.is_file():
        raise ArtifactError(f"{spec.onnx} does not exist", hint="make it with `edgetl export` or `edgetl quantize --target tensorrt`")
    if spec.onnx.suffix.lower() != ".onnx":
        raise ArtifactError(f"build-engine takes an ONNX model, got {spec.onnx.name}", hint="pass the .onnx or .qdq.onnx file")
    card = read_onnx_card(spec.onnx)
    qdq = _is_qdq(spec.onnx)
    if spec.precision == "int8" and not qdq:
        raise ConfigError("INT8 engines are built from a QDQ model (explicit quantization)",
                          hint=f"first run: edgetl quantize {spec.onnx} --target tensorrt")
    return card, qdq


def _frontend_layers(onnx_path: Path) -> list[str]:
    """The ONNX nodes of a speech model's front-end (their TensorRT layers carry the same names)."""
    import onnx

    return frontend_nodes(onnx.load(str(onnx_path), load_external_data=False))


def trtexec_command(spec: EngineSpec, card: ModelCard, qdq: bool) -> str:
    """The trtexec line that builds the same engine."""
    name = card.input.get("name", "input")
    dims = lambda n: "x".join(str(d) for d in spec.shape(n, card))  # noqa: E731
    args = ["trtexec", f"--onnx={spec.onnx}", f"--saveEngine={spec.out}",
            f"--minShapes={name}:{dims(spec.batch.min)}", f"--optShapes={name}:{dims(spec.batch.opt)}",
            f"--maxShapes={name}:{dims(spec.batch.max)}", f"--memPoolSize=workspace:{spec.workspace_mb}M"]
    if spec.precision in ("fp16", "best"):
        args.append("--fp16")
        frontend = _frontend_layers(spec.onnx)
        if frontend:  # a log-mel front-end overflows FP16 (power spectra at int16 scale): keep it FP32
            pinned = ",".join(f"{n}:fp32" for n in frontend)
            args += [f"--layerPrecisions={pinned}", f"--layerOutputTypes={pinned}", "--precisionConstraints=obey"]
    if spec.precision == "int8" or (spec.precision == "best" and qdq):
        args.append("--int8")
    args.append("--noTF32")  # as build_engine: float layers outside FP16 compute in IEEE f32
    if spec.timing_cache:
        args.append(f"--timingCacheFile={spec.timing_cache}")
    if spec.dla_core is not None:
        args += [f"--useDLACore={spec.dla_core}", "--allowGPUFallback"]
    return shlex.join(args)


def build_engine(spec: EngineSpec, overwrite: bool = False) -> dict:
    """Build and write the engine and its card; returns what the build reports."""
    card, qdq = check_spec(spec)
    check_output(spec.out, "model", overwrite, {"input model": spec.onnx})
    shutil.rmtree(temp_dir_beside(spec.out))  # a folder that cannot be written fails now, not after the build
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable("TensorRT is not installed",
                                 hint=f"pip install 'edgetl[tensorrt]', or on the device: {trtexec_command(spec, card, qdq)}") from None
    from edgetl.runtime.tensorrt_runner import engine_card_path, gpu_info

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT cannot parse {spec.onnx.name}: {errors[:400]}",
                            hint="export with another --opset, or check the operator named above")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mb << 20)
    # TensorRT enables TF32 by default on Ampere and newer; an fp32 engine must mean f32.
    config.clear_flag(trt.BuilderFlag.TF32)
    if spec.precision in ("fp16", "best"):
        config.set_flag(trt.BuilderFlag.FP16)
        # The parser names layers after their ONNX nodes (helper layers it adds extend the name).
        pinned = [network.get_layer(i) for i in range(network.num_layers)
                  if in_frontend(network.get_layer(i).name)]
        for layer in pinned:  # a log-mel front-end overflows FP16 (power spectra at int16 scale)
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
        if pinned:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if qdq and spec.precision in ("int8", "best"):
        config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ nodes decide what runs in INT8
    inp = network.get_input(0)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, spec.shape(spec.batch.min, card), spec.shape(spec.batch.opt, card),
                      spec.shape(spec.batch.max, card))
    config.add_optimization_profile(profile)
    cache_bytes = spec.timing_cache.read_bytes() if spec.timing_cache and spec.timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
    dla = {}
    if spec.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise BackendUnavailable("this device has no DLA cores", hint="drop --dla (DLA exists on Jetson Xavier/Orin)")
        if not 0 <= spec.dla_core < builder.num_DLA_cores:
            raise ConfigError(f"--dla {spec.dla_core}: this device has DLA cores 0 to {builder.num_DLA_cores - 1}",
                              hint="--dla 0")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        on_dla = sum(bool(config.can_run_on_DLA(network.get_layer(i))) for i in range(network.num_layers))
        dla = {"dla_core": spec.dla_core, "dla_layers": on_dla, "gpu_layers": network.num_layers - on_dla}
    progress.info(f"building a TensorRT {spec.precision} engine for batch {spec.batch.min}:{spec.batch.opt}:"
                  f"{spec.batch.max} (minutes on a large model)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(f"TensorRT could not build an engine from {spec.onnx.name}",
                            hint="rerun with --precision fp16, or check the TensorRT log above")
    here = {"version": trt.__version__, **gpu_info()}
    precision = "int8" if qdq and spec.precision in ("int8", "best") else \
        ("fp16" if spec.precision in ("fp16", "best") else "fp32")
    engine_card = dataclasses.replace(card, precision=precision, metrics=dict(card.metrics), build=build_fingerprint())
    engine_card.input = {**card.input, "shape": [None, *card.input["shape"][1:]]}
    engine_card.source = {**card.source, "tensorrt": {
        **here, "onnx": str(spec.onnx), "precision": spec.precision, "batch": dataclasses.asdict(spec.batch),
        "inference_precision": "f16" if spec.precision in ("fp16", "best") else "f32",
        "workspace_mb": spec.workspace_mb, **dla}}
    spec.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.out.name}.", dir=spec.out.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(serialized)
    engine_card.save(engine_card_path(spec.out))
    os.replace(tmp, spec.out)
    if spec.timing_cache:
        spec.timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine_card.source["tensorrt"]
