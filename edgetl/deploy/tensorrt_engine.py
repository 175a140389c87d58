"""ONNX -> TensorRT engine, with the standard `tensorrt` Python API (the same on x86 and
JetPack): ONNX parser, one optimization profile for a dynamic batch, FP16 / INT8 from a
QDQ model (explicit quantization; no deprecated implicit calibrators), a timing cache
reused between builds, a DLA core with GPU fallback on Jetson. The engine's card beside
it records the TensorRT version, GPU and compute capability the engine is bound to.

Every choice of a build is made once, in `plan_build` (`BuildPlan`), from the request,
the model and the TensorRT version; the Python build and the trtexec line
(`trtexec_command`, for devices without the Python bindings; it needs no TensorRT) both
follow the plan, flag for flag. What depends on the version:
- TensorRT 10.0-10.11: weakly typed; FP16 and INT8 are builder flags (INT8 only turns on
  what the Q/DQ nodes say);
- 10.12 and later 10.x: weak typing is deprecated; a Q/DQ model builds strongly typed
  (Q/DQ layers INT8, the rest in the ONNX's FP32), a float model still takes the FP16 flag;
- 11: strongly typed only; FP16 needs an FP16 ONNX, so fp16/best on a float model is
  refused. The extra pins tensorrt<11 (JetPack 6 ships 10.3).
DLA (Jetson): static shapes only (the profile is N:N:N), FP16 or INT8 only (fp32 becomes
FP16, as trtexec does), and only implicit quantization, so a Q/DQ model's INT8 layers
fall back to the GPU: the build says so and points to the FP16 engine for the DLA.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.core import progress
from edgetl.core.card import ModelCard, build_fingerprint
from edgetl.core.errors import ArtifactError, BackendUnavailable, ConfigError
from edgetl.core.outputs import check_output, publish, temp_dir_beside, write_atomic
from edgetl.export.onnx_export import frontend_nodes, in_frontend
from edgetl.runtime.artifacts import MODEL_OUTPUT, engine_card_path
from edgetl.runtime.tensorrt_runner import needed

if TYPE_CHECKING:
    from edgetl.runtime.verify import TargetCheck

log = logging.getLogger("edgetl")
PRECISIONS = ("fp32", "fp16", "int8", "best")
STRONG_TYPING_FROM = (10, 12)  # weak typing deprecated; required from 11
DEVICE_VERSION = "10.3"  # what a printed trtexec line assumes without TensorRT here: JetPack 6


@dataclasses.dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int

    @property
    def static(self) -> bool:
        return self.min == self.max

    @classmethod
    def parse(cls, text: str | None, static_batch: int | None = None, dla: bool = False) -> BatchProfile:
        """'MIN:OPT:MAX', or one number N for 1:N:N (for the DLA, which runs static shapes
        only: N:N:N, default 1); a static-batch model fixes all three."""
        if dla and not static_batch and text and ":" not in text:
            return cls(*[cls.parse(text).max] * 3)
        if dla and not static_batch and not text:
            return cls(1, 1, 1)
        if static_batch:
            if text and cls.parse(text) != cls(static_batch, static_batch, static_batch):
                raise ConfigError(f"the model has a static batch of {static_batch}; --batch-profile cannot change it",
                                  hint="drop --batch-profile, or export with a dynamic batch")
            return cls(static_batch, static_batch, static_batch)
        if not text:
            return cls(1, 8, 32)
        try:
            parts = [int(p) for p in text.split(":")]
        except ValueError:
            raise ConfigError(f"--batch-profile {text!r} is not MIN:OPT:MAX", hint="e.g. --batch-profile 1:8:32") from None
        if len(parts) == 1:
            parts = [1, parts[0], parts[0]]
        if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
            raise ConfigError(f"--batch-profile {text!r} needs 1 <= MIN <= OPT <= MAX", hint="e.g. --batch-profile 1:8:32")
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
    device: int = 0  # CUDA device index

    def shape(self, n: int, card: ModelCard) -> tuple[int, ...]:
        return (n, *card.input["shape"][1:])


def _is_qdq(onnx_path: Path) -> bool:
    import onnx

    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)


def check_spec(spec: EngineSpec) -> tuple[ModelCard, bool]:
    """What can be checked without TensorRT: the ONNX file, its card, precision vs QDQ."""
    from edgetl.runtime.artifacts import read_onnx_card

    if spec.precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {spec.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    if spec.workspace_mb < 1:
        raise ConfigError(f"--workspace must be at least 1 MB, got {spec.workspace_mb}", hint="e.g. --workspace 1024")
    if spec.dla_core is not None and spec.dla_core < 0:
        raise ConfigError(f"--dla is a DLA core number (0 or more), got {spec.dla_core}", hint="e.g. --dla 0")
    if not spec.onnx.is_file():
        raise ArtifactError(f"{spec.onnx} does not exist",
                            hint="make it with `edgetl export` or `edgetl quantize --target tensorrt`")
    if spec.onnx.suffix.lower() != ".onnx":
        raise ArtifactError(f"build-engine takes an ONNX model, got {spec.onnx.name}", hint="pass the .onnx or .qdq.onnx file")
    card = read_onnx_card(spec.onnx)
    qdq = _is_qdq(spec.onnx)
    if spec.precision == "int8" and not qdq:
        raise ConfigError("INT8 engines are built from a QDQ model (explicit quantization)",
                          hint=f"first run: edgetl quantize {spec.onnx} --target tensorrt")
    return card, qdq


def _frontend_layers(onnx_path: Path) -> list[str]:
    """The ONNX nodes of a speech model's front-end that compute (their TensorRT layers carry
    the same names); its constants are FP32 data already."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    constants = {n.name for n in proto.graph.node if n.op_type == "Constant"}
    return [n for n in frontend_nodes(proto) if n not in constants]


def version_tuple(version: str) -> tuple[int, int]:
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        raise ConfigError(f"TensorRT version {version!r} is not MAJOR.MINOR", hint="e.g. 10.3") from None
    return major, minor


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """Every choice of one build; `build_engine` and `trtexec_command` both follow it."""

    tensorrt: str
    strongly_typed: bool
    fp16: bool
    int8: bool
    input_name: str
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None  # None: a static model's own shape
    dla_core: int | None
    pinned_fp32: tuple[str, ...]  # ONNX node names kept FP32 under FP16 (a speech front-end)
    engine_precision: str  # what the card records: int8 / fp16 / fp32
    inference_precision: str  # of the float layers: f16 / f32
    notes: tuple[str, ...] = ()


def plan_build(spec: EngineSpec, card: ModelCard, qdq: bool, tensorrt: str | None = None,
               frontend: list[str] | None = None) -> BuildPlan:
    """The build for `tensorrt` (the installed version; DEVICE_VERSION when printing a
    line without it). Refuses what cannot build as asked, with the remedy."""
    version = tensorrt or DEVICE_VERSION
    v = version_tuple(version)
    if v < (10, 0):
        raise BackendUnavailable(f"TensorRT {version} is too old for edgetl (10.x needed)",
                                 hint="JetPack 6 (TensorRT 10.3) or pip install 'edgetl[tensorrt]'")
    precision, notes = spec.precision, []
    if qdq and precision in ("fp16", "fp32"):
        raise ConfigError(f"{spec.onnx.name} holds Q/DQ nodes, which TensorRT always builds in INT8; "
                          f"--precision {precision} cannot apply to it",
                          hint=f"use --precision int8 or best, or build {precision} from the float model "
                               f"({spec.onnx.name.replace('.qdq', '')})")
    static_model = card.input["shape"][0] is not None
    if spec.dla_core is not None:
        if precision == "fp32":
            precision = "fp16"
            notes.append("the DLA runs FP16 and INT8 only: building FP16 (trtexec turns FP16 on for the DLA too)")
        if qdq:
            notes.append("the DLA takes implicit quantization only: this Q/DQ model's INT8 layers run on the GPU; "
                         "for the DLA, build the float model with --precision fp16 --dla N")
        if not spec.batch.static:
            b = spec.batch
            raise ConfigError(f"the DLA runs static shapes only; --batch-profile {b.min}:{b.opt}:{b.max} is a range",
                              hint=f"--batch-profile {b.opt} (the DLA engine runs batch {b.opt}:{b.opt}:{b.opt})")
    strongly = v >= (11, 0) or (qdq and v >= STRONG_TYPING_FROM)
    if v >= (11, 0) and precision in ("fp16", "best") and not qdq:
        raise ConfigError(f"TensorRT {version} builds strongly typed only: FP16 needs an FP16 ONNX",
                          hint="build --precision fp32, or use TensorRT 10.x (pip install 'edgetl[tensorrt]')")
    fp16 = not strongly and precision in ("fp16", "best")
    int8 = not strongly and qdq and precision in ("int8", "best")
    if strongly and qdq and precision == "best":
        notes.append(f"TensorRT {version} builds a Q/DQ model strongly typed: its Q/DQ layers in INT8, "
                     "the others in FP32 as in the ONNX (no FP16 elsewhere)")
    shapes = None if static_model else (spec.shape(spec.batch.min, card), spec.shape(spec.batch.opt, card),
                                        spec.shape(spec.batch.max, card))
    return BuildPlan(
        tensorrt=version, strongly_typed=strongly, fp16=fp16, int8=int8, input_name=card.input.get("name", "input"),
        shapes=shapes, dla_core=spec.dla_core, pinned_fp32=tuple(frontend or ()) if fp16 else (),
        engine_precision="int8" if qdq else ("fp16" if fp16 else "fp32"),
        inference_precision="f16" if fp16 else "f32", notes=tuple(notes))


def installed_tensorrt() -> str | None:
    """The installed TensorRT's version, read from package metadata (JetPack's python3-libnvinfer
    registers `tensorrt`, NVIDIA's wheels `tensorrt-cu12` and their bindings), None without one."""
    import importlib.metadata

    for name in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu12-bindings", "tensorrt-cu13-bindings"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def for_version(plan: BuildPlan) -> str:
    """Which TensorRT a trtexec line is for: its flags differ between versions."""
    assumed = " (JetPack 6; none installed here)" if plan.tensorrt == DEVICE_VERSION else ""
    return f"for TensorRT {plan.tensorrt}{assumed}; another version: --print-trtexec --tensorrt-version X.Y"


def trtexec_command(spec: EngineSpec, plan: BuildPlan) -> str:
    """The trtexec line of the same build (the flags for `plan.tensorrt`)."""
    args = ["trtexec", f"--onnx={spec.onnx}", f"--saveEngine={spec.out}"]
    if plan.shapes:  # trtexec rejects shape flags for a static model
        for flag, shape in zip(("--minShapes", "--optShapes", "--maxShapes"), plan.shapes):
            args.append(f"{flag}={plan.input_name}:{'x'.join(str(d) for d in shape)}")
    args.append(f"--memPoolSize=workspace:{spec.workspace_mb}M")
    if plan.strongly_typed:
        args.append("--stronglyTyped")
    if plan.fp16:
        args.append("--fp16")
        if plan.pinned_fp32:  # a log-mel front-end overflows FP16 (power spectra at int16 scale): keep it FP32
            pinned = ",".join(f"{n}:fp32" for n in plan.pinned_fp32)
            args += [f"--layerPrecisions={pinned}", f"--layerOutputTypes={pinned}", "--precisionConstraints=obey"]
    if plan.int8:
        args.append("--int8")
    args.append("--noTF32")  # as build_engine: float layers outside FP16 compute in IEEE f32
    if spec.timing_cache:
        args.append(f"--timingCacheFile={spec.timing_cache}")
    if plan.dla_core is not None:
        args += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    if spec.device:  # an engine is tied to the GPU it is built on: the same one as build-engine --gpu
        args.append(f"--device={spec.device}")
    return shlex.join(args)


def build_engine(spec: EngineSpec, overwrite: bool = False) -> dict[str, Any]:
    """Build and write the engine and its card; returns what the build reports."""
    card, qdq = check_spec(spec)
    check_output(spec.out, MODEL_OUTPUT, overwrite, {"input model": spec.onnx})
    shutil.rmtree(temp_dir_beside(spec.out))  # a folder that cannot be written fails now, not after the build
    try:
        import tensorrt as trt
    except ImportError:
        plan = plan_build(spec, card, qdq, frontend=_frontend_layers(spec.onnx))
        raise BackendUnavailable("TensorRT is not installed",
                                 hint=f"pip install 'edgetl[tensorrt]', or on the device ({for_version(plan)}): "
                                      f"{trtexec_command(spec, plan)}") from None
    from edgetl.runtime.cuda_device import device_facts

    plan = plan_build(spec, card, qdq, trt.__version__, _frontend_layers(spec.onnx))
    for note in plan.notes:
        log.warning(note)
    # Before the build, never after it; reading them also makes spec.device the current GPU.
    here = {"version": trt.__version__, **device_facts(spec.device)}
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # the parser maps some ONNX operators to plugin layers
    builder = needed(trt.Builder(logger), "a builder (is a GPU visible? nvidia-smi)")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.strongly_typed else 0
    network = needed(builder.create_network(flags), "a network definition")
    parser = needed(trt.OnnxParser(network, logger), "an ONNX parser")
    if not parser.parse_from_file(str(spec.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT cannot parse {spec.onnx.name}: {errors[:400]}",
                            hint="export with another --opset, or check the operator named above")
    config = needed(builder.create_builder_config(), "a builder config")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mb << 20)
    # TensorRT enables TF32 by default on Ampere and newer; an fp32 engine must mean f32.
    config.clear_flag(trt.BuilderFlag.TF32)
    if plan.fp16:
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
    if plan.int8:
        config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ nodes decide what runs in INT8
    if plan.shapes:
        profile = needed(builder.create_optimization_profile(), "an optimization profile")
        profile.set_shape(network.get_input(0).name, *plan.shapes)
        config.add_optimization_profile(profile)
    cache_bytes, cache_note = read_timing_cache(spec.timing_cache, here)
    if not config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False) and cache_bytes:
        cache_note = f"TensorRT refused the timing cache {spec.timing_cache}: starting an empty one"
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    if cache_note:
        log.warning(cache_note)
        plan = dataclasses.replace(plan, notes=(*plan.notes, cache_note))  # the engine's card says it too
    dla = {}
    if plan.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise BackendUnavailable("this device has no DLA cores", hint="drop --dla (DLA exists on Jetson Xavier/Orin)")
        if not 0 <= plan.dla_core < builder.num_DLA_cores:
            raise ConfigError(f"--dla {plan.dla_core}: this device has DLA cores 0 to {builder.num_DLA_cores - 1}",
                              hint="--dla 0")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        # as trtexec --useDLACore does: layer precisions are kept where the DLA can, not forced
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        # Eligibility before fusion, not placement: the builder decides where each fused layer runs.
        eligible = sum(bool(config.can_run_on_DLA(network.get_layer(i))) for i in range(network.num_layers))
        dla = {"dla_core": plan.dla_core, "dla_eligible_layers": eligible, "layers": network.num_layers}
    progress.info(f"building a TensorRT {plan.engine_precision} engine"
                  + (f" for batch {spec.batch.min}:{spec.batch.opt}:{spec.batch.max}" if plan.shapes else "")
                  + " (minutes on a large model)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(f"TensorRT could not build an engine from {spec.onnx.name}",
                            hint="rerun with --precision fp16, or check the TensorRT log above")
    engine_card = dataclasses.replace(card, precision=plan.engine_precision, metrics=dict(card.metrics),
                                      build=build_fingerprint())
    if plan.shapes:
        engine_card.input = {**card.input, "shape": [None, *card.input["shape"][1:]]}
    engine_card.source = {**card.source, "tensorrt": {
        **here, "onnx": str(spec.onnx), "precision": spec.precision, "batch": dataclasses.asdict(spec.batch),
        "strongly_typed": plan.strongly_typed, "inference_precision": plan.inference_precision,
        "workspace_mb": spec.workspace_mb, "notes": list(plan.notes), **dla}}
    work = temp_dir_beside(spec.out)  # the engine and its card appear together or not at all
    try:
        engine = work / spec.out.name
        engine.write_bytes(serialized)
        engine_card.save(engine_card_path(engine))
        publish({engine: spec.out, engine_card_path(engine): engine_card_path(spec.out)}, MODEL_OUTPUT, overwrite)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if spec.timing_cache:
        write_atomic(spec.timing_cache, bytes(config.get_timing_cache().serialize()))
        write_atomic(_timing_key_path(spec.timing_cache), json.dumps(_timing_key(here)) + "\n")
    built: dict[str, Any] = engine_card.source["tensorrt"]
    return built


def _timing_key(here: dict[str, Any]) -> dict[str, Any]:
    return {"tensorrt": here.get("version"), "gpu": here.get("gpu"), "compute_capability": here.get("compute_capability")}


def _timing_key_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".json")


def read_timing_cache(path: Path | None, here: dict[str, Any]) -> tuple[bytes, str | None]:
    """The timing cache's bytes when it was made by this TensorRT on this GPU (the
    `.json` beside it says), else nothing and why: TensorRT's timings are of one version
    on one GPU, and a cache from another is at best useless."""
    if path is None or not path.is_file():
        return b"", None
    try:
        made = json.loads(_timing_key_path(path).read_text())
    except (OSError, ValueError):
        made = None
    if made != _timing_key(here):
        by = (f"TensorRT {made.get('tensorrt')} on {made.get('gpu')}" if isinstance(made, dict)
              else "an unknown TensorRT and GPU")
        return b"", (f"the timing cache {path.name} was made by {by}: not used, replaced by one for TensorRT "
                     f"{here.get('version')} on {here.get('gpu')}")
    return path.read_bytes(), None


def bundle_engine(bundle_path: str | Path, device: int = 0) -> Path | None:
    """On a device with TensorRT and a GPU, the engine of a bundle's TensorRT target for
    this GPU and TensorRT version: the bundle's own or a cached one when built for them,
    else built now from the target's model into the engine cache (runtime/targets.py),
    replacing a cached engine that was refused. None where the bundle has no TensorRT
    target or this machine cannot run TensorRT (verify then says why)."""
    from edgetl.runtime.bundle import Bundle
    from edgetl.runtime.machine import backend_problem
    from edgetl.runtime.targets import engine_cache_path, tensorrt_here, usable_engine

    bundle = Bundle.open(bundle_path)
    if "tensorrt" not in bundle.targets or backend_problem("tensorrt"):
        return None
    here = tensorrt_here(device)
    engine, refusals = usable_engine(bundle, here)
    for refusal in refusals:
        log.warning("not loaded: %s", refusal)
    if engine:
        return engine
    model = bundle.root / bundle.targets["tensorrt"].model
    bundle.check_checksums([bundle.targets["tensorrt"].model])
    out = engine_cache_path(model, here)
    out.parent.mkdir(parents=True, exist_ok=True)
    card, qdq = check_spec(EngineSpec(model, out))
    static = card.input["shape"][0]
    # At the precision the target was made for, which verify's tolerance is that of: INT8
    # from a QDQ model; a float model's own (an FP16 engine of an FP32 target would fail
    # the FP32 tolerance it is checked at).
    precision = "int8" if qdq else bundle.targets["tensorrt"].precision
    spec = EngineSpec(model, out, precision, BatchProfile.parse(None, static), device=device,
                      timing_cache=out.parent / "timing.cache")
    progress.info(f"no engine of {bundle.path.name} for {here['gpu']} with TensorRT {here['version']} yet: "
                  f"building it into {out.parent}")
    build_engine(spec, overwrite=True)
    return out


def verify_on_device(bundle: str | Path, backend: str | None = None, threads: int | None = None) -> list[TargetCheck]:
    """`edgetl verify` on the device: a TensorRT target's engine built for this GPU first
    (where TensorRT is, into the engine cache), then every check of runtime/verify.py."""
    from edgetl.runtime.verify import verify

    if backend in (None, "auto", "tensorrt"):
        bundle_engine(bundle)
    return verify(bundle, backend=backend, threads=threads)
