"""The backend table, and `open_runner`: the one way any artifact is opened for any
backend (a bundle opens the model of the target it is asked for)."""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
from pathlib import Path

from edgetl import progress
from edgetl.errors import ArtifactError, BackendUnavailable, ConfigError
from edgetl.runtime.artifacts import KINDS, kind_of
from edgetl.runtime.bundle import Bundle
from edgetl.runtime.runner import PRECISION_HINTS, Runner
from edgetl.runtime.targets import choose, model_for
from edgetl.threads import resolve_threads


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    name: str
    module: str  # where the Runner subclass lives
    runner: str  # its class name
    kinds: tuple[str, ...]  # the artifact kinds it loads (runtime/artifacts.py)
    devices: tuple[str, ...]
    extra: str  # the pip extra that installs it
    package: str  # the import that proves it is installed

    @property
    def artifacts(self) -> tuple[str, ...]:
        """What it loads, as users see it: file suffixes, or "run" for a run directory."""
        return tuple(s for k in self.kinds for s in (KINDS[k].suffixes or (k,)))


# Backends whose Runner lives outside the torch-free runtime plug in through this entry
# point group (the training side's torch runner: pyproject.toml); the table names them
# and where the installed package says they live.
ENTRY_POINTS = "edgetl.backends"


def _plugged_in(name: str) -> tuple[str, str]:
    """(module, class) of the Runner the installed package registers for `name`; empty
    when none is registered (a source tree that was never installed)."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
        if ep.name == name:
            return ep.module, ep.attr
    return "", ""


BACKENDS: dict[str, BackendInfo] = {
    "torch": BackendInfo("torch", *_plugged_in("torch"), ("run",), ("cpu", "cuda"), "train", "torch"),
    "onnxruntime": BackendInfo("onnxruntime", "edgetl.runtime.onnxruntime_runner", "OnnxRuntimeRunner", ("onnx",),
                               ("cpu", "cuda", "tensorrt"), "base install", "onnxruntime"),
    "openvino": BackendInfo("openvino", "edgetl.runtime.openvino_runner", "OpenVinoRunner", ("openvino",),
                            ("cpu", "gpu", "npu"), "openvino", "openvino"),
    "tensorrt": BackendInfo("tensorrt", "edgetl.runtime.tensorrt_runner", "TensorRTRunner", ("tensorrt",),
                            ("cuda",), "tensorrt", "tensorrt"),
}


def backend_for(path: Path, backend: str = "auto") -> BackendInfo:
    """The backend that loads the artifact at `path`: the first in the table that loads its
    kind, or the one asked for (which must load that kind)."""
    kind = kind_of(path)
    if backend == "auto":
        for info in BACKENDS.values():
            if kind.name in info.kinds:
                return info
        raise ArtifactError(f"no backend loads {path} ({kind.what}) by itself", hint="open it with open_runner")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)} or auto")
    info = BACKENDS[backend]
    if kind.name not in info.kinds:
        raise ArtifactError(f"backend {backend} cannot load {path} ({kind.what})",
                            hint=f"it loads: {', '.join(info.artifacts)}")
    return info


def check_precision_hint(hint: str | None, backend: str) -> str:
    """The precision to request from `backend`: f32 unless asked otherwise; only OpenVINO
    lets the float parts of a model run in bf16 or f16 (TensorRT decides at build time)."""
    hint = hint or "f32"
    if hint not in PRECISION_HINTS:
        raise ConfigError(f"unknown precision hint {hint!r}", hint=f"use one of {', '.join(PRECISION_HINTS)}")
    if hint != "f32" and backend != "openvino":
        raise ConfigError(f"--precision-hint {hint} applies to the openvino backend, not {backend}",
                          hint="for TensorRT choose the precision when building: edgetl build-engine --precision")
    return hint


def open_runner(artifact, backend: str = "auto", device: str = "cpu", threads: int | None = None,
                precision_hint: str | None = None) -> Runner:
    """The Runner for `artifact` on `backend` ('auto' picks by artifact kind). The float
    parts of the model run in f32 unless `precision_hint` asks OpenVINO for bf16 or f16."""
    path = Path(artifact)
    if kind_of(path).name == "bundle":  # a container: it opens its model for the backend
        return _open_bundle(path, backend, device, threads, precision_hint)
    threads = resolve_threads(threads)  # never the library's default (edgetl/threads.py)
    info = backend_for(path, backend)
    hint = check_precision_hint(precision_hint, info.name)
    try:
        importlib.import_module(info.package)
        if not info.module:
            raise ImportError(info.name)
    except ImportError:
        extra = "edgetl" if info.extra == "base install" else f"'edgetl[{info.extra}]'"
        raise BackendUnavailable(f"backend {info.name} is not installed", hint=f"pip install {extra}") from None
    cls = getattr(importlib.import_module(info.module), info.runner)
    return cls.load(path, device=cls.resolve_device(device), threads=threads, precision_hint=hint)


def _open_bundle(path: Path, backend: str, device: str, threads: int | None, precision_hint: str | None) -> Runner:
    """The Runner of the bundle's model for `backend` (auto: the fastest available here),
    after checking the checksums of the manifest's card and of that model's files."""
    bundle = Bundle.open(path)
    target = choose(bundle, backend)
    bundle.check_checksums(["edgetl.json", *bundle.model_files(target)])
    model, loads_with = model_for(bundle, target)
    progress.info(f"bundle {path.name}: {target} model {model.name} on {loads_with}"
                  + (" (the fastest this machine has)" if backend == "auto" else ""))
    runner = open_runner(model, backend=loads_with, device=device, threads=threads, precision_hint=precision_hint)
    runner.bundle, runner.target = bundle, target
    return runner
