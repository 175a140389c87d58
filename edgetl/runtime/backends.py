"""`open_runner`: the one way any artifact is opened for any backend (a bundle opens the
model of the target it is asked for), through the backend table (backend_table.py)."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from edgetl.core import progress
from edgetl.core.errors import ArtifactError, BackendUnavailable, ConfigError
from edgetl.core.threads import resolve_threads
from edgetl.runtime.artifacts import kind_of
from edgetl.runtime.backend_table import BACKENDS, BackendInfo
from edgetl.runtime.bundle import Bundle
from edgetl.runtime.runner import Runner
from edgetl.runtime.settings import PRECISION_HINTS
from edgetl.runtime.targets import model_for, pick


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


def model_of_folder(path: Path, backend: str = "auto") -> Path:
    """A folder without a PyTorch checkpoint (an imported model) stands for its model file:
    the one `backend` loads, for auto the first of the table's that is there. Any other
    path is itself."""
    if not path.is_dir() or (path / "model.pt").is_file() or kind_of(path).name != "run":
        return path
    suffixes = [BACKENDS[backend].model_suffix] if backend in BACKENDS else \
        [info.model_suffix for info in BACKENDS.values() if info.model_suffix]
    for suffix in suffixes:
        if (path / f"model{suffix}").is_file():
            return path / f"model{suffix}"
    raise ArtifactError(f"{path} holds no model{' for ' + backend if backend in BACKENDS else ''} "
                        f"(no model.pt, {', '.join('model' + s for s in suffixes)})",
                        hint="import the model again (edgetl import MODEL --out FOLDER)")


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


def open_runner(artifact: str | os.PathLike[str], backend: str = "auto", device: str = "cpu", threads: int | None = None,
                precision_hint: str | None = None, bare: bool = False) -> Runner:
    """The Runner for `artifact` on `backend` ('auto' picks by artifact kind). The float
    parts of the model run in f32 unless `precision_hint` asks OpenVINO for bf16 or f16.
    `bare=True`: a model without an edgetl card runs under the card of its own signature
    (bench measures it as trtexec does)."""
    path = Path(artifact)
    if kind_of(path).name == "bundle":  # a container: it opens its model for the backend
        return _open_bundle(path, backend, device, threads, precision_hint)
    threads = resolve_threads(threads)  # never the library's default (edgetl/core/threads.py)
    path = model_of_folder(path, backend)
    info = backend_for(path, backend)
    hint = check_precision_hint(precision_hint, info.name)
    try:
        importlib.import_module(info.package)
        if not info.module:
            raise ImportError(info.name)
    except ImportError:
        raise BackendUnavailable(f"backend {info.name} is not installed", hint=info.install) from None
    cls = getattr(importlib.import_module(info.module), info.runner)
    runner: Runner = cls.load(path, device=cls.resolve_device(device), threads=threads, precision_hint=hint, bare=bare)
    return runner


def _open_bundle(path: Path, backend: str, device: str, threads: int | None, precision_hint: str | None) -> Runner:
    """The Runner of the bundle's model for `backend` (auto: the fastest measured here, else by preference),
    after checking the checksums of the manifest's card and of that model's files."""
    bundle = Bundle.open(path)
    target, why = pick(bundle, backend)
    bundle.check_checksums(["edgetl.json", *bundle.model_files(target)])
    model, loads_with = model_for(bundle, target)
    progress.info(f"bundle {path.name}: {target} model {model.name} on {loads_with}"
                  + (f" ({why})" if backend == "auto" else ""))
    runner = open_runner(model, backend=loads_with, device=device, threads=threads, precision_hint=precision_hint)
    runner.bundle, runner.target = bundle, target
    return runner
