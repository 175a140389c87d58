"""The Runner interface and the backend table."""
from __future__ import annotations

import abc
import dataclasses
import importlib
from pathlib import Path

import numpy as np

from edgetl.card import ModelCard
from edgetl.errors import ArtifactError, BackendUnavailable, ConfigError
from edgetl.runtime.artifacts import KINDS, kind_of


# Precisions a backend may be asked to compute the float parts of a model in. The
# default is always f32: a library's own default (OpenVINO's CPU plugin picks bf16 on
# CPUs that have it, CUDA libraries pick TF32) would make results depend on the machine.
PRECISION_HINTS = ("f32", "bf16", "f16")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of a batch of logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Runner(abc.ABC):
    """Loads one artifact for one backend. `infer` takes a float32 batch laid out as
    the card's input spec and returns the logits as float32 numpy.

    `inference_precision` is what the backend really computes the model's float
    operations in, read back from the backend where it can say (INT8 layers stay INT8)."""

    backend: str = ""

    def __init__(self, path: Path, card: ModelCard, device: str = "cpu", threads: int | None = None):
        self.path, self.card, self.device, self.threads = Path(path), card, device, threads
        self.inference_precision = "f32"

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision_hint: str = "f32") -> "Runner":
        """Open the artifact at `path` (of a kind this backend loads, runtime/artifacts.py)
        on `device` with `threads` CPU threads, the float parts computed in
        `precision_hint`; the card comes from the artifact itself. Every backend in the
        table implements it (tests/test_artifacts.py)."""
        raise NotImplementedError(f"{cls.__name__} does not load artifacts")

    @property
    def input_spec(self) -> dict:
        return self.card.input

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def infer_all(self, x: np.ndarray, batch: int) -> np.ndarray:
        """Logits for every sample, `batch` per call. The last chunk is padded to exactly
        `batch` (static-batch models and TensorRT profiles accept only that) and the
        padding dropped from the result."""
        out = []
        for start in range(0, len(x), batch):
            chunk = x[start:start + batch]
            pad = batch - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            got = self.infer(chunk)
            if len(got) != len(chunk):  # a backend that cannot run the model may answer with nothing
                raise ArtifactError(f"{self.backend} returned {len(got)} results for a batch of {len(chunk)} "
                                    f"({self.path.name}, {self.inference_precision})",
                                    hint="run it in f32 (the default precision), or on another backend")
            if got.ndim != 2 or got.shape[1] != len(self.card.labels):
                raise ArtifactError(f"{self.path.name} outputs {got.shape[1:]} scores per sample but its card names "
                                    f"{len(self.card.labels)} labels",
                                    hint="the card belongs to another model: export this run again")
            out.append(got[:batch - pad])
        return np.concatenate(out) if out else np.zeros((0, len(self.card.labels)), np.float32)

    def part(self, inputs: list[str], outputs: list[str]):
        """The model's sub-graph from the tensors named `inputs` to those named `outputs`,
        compiled like the whole model, as a function of numpy arrays (in the order of
        `inputs`) that returns the `outputs`; None when the backend cannot run a part of
        a model (then only the whole model runs)."""
        return None

    def close(self) -> None:  # noqa: B027  (most backends free their session with the object)
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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


BACKENDS: dict[str, BackendInfo] = {
    "torch": BackendInfo("torch", "edgetl.runtime.torch_runner", "TorchRunner", ("run",), ("cpu", "cuda"),
                         "train", "torch"),
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


def load(artifact, backend: str = "auto", device: str = "cpu", threads: int | None = None,
         precision_hint: str | None = None, check_references: bool = False) -> Runner:
    """Open any artifact for inference. A bundle has its checksums checked and runs on the
    fastest of its targets this machine has; with `check_references`, its reference files
    are run first and a target that answers otherwise is an ArtifactError."""
    if check_references and kind_of(artifact).name == "bundle":
        from edgetl.runtime.bundle import verify

        failed = [c for c in verify(artifact, backend=backend) if not c.passed]
        if failed:
            raise ArtifactError(f"{Path(artifact).name}: {failed[0].target} does not compute what was packaged "
                                f"({failed[0].failures[0]})", hint="run `edgetl verify` for the figures; "
                                "package the run again on the training machine")
    return open_runner(artifact, backend=backend, device=device, threads=threads, precision_hint=precision_hint)


def open_runner(artifact, backend: str = "auto", device: str = "cpu", threads: int | None = None,
                precision_hint: str | None = None) -> Runner:
    """The Runner for `artifact` on `backend` ('auto' picks by artifact kind). The float
    parts of the model run in f32 unless `precision_hint` asks OpenVINO for bf16 or f16."""
    path = Path(artifact)
    if kind_of(path).name == "bundle":  # a container: it opens its model for the backend
        from edgetl.runtime.bundle import open_bundle_runner

        return open_bundle_runner(path, backend, device, threads, precision_hint)
    info = backend_for(path, backend)
    hint = check_precision_hint(precision_hint, info.name)
    try:
        importlib.import_module(info.package)
    except ImportError:
        extra = "edgetl" if info.extra == "base install" else f"'edgetl[{info.extra}]'"
        raise BackendUnavailable(f"backend {info.name} is not installed", hint=f"pip install {extra}") from None
    cls = getattr(importlib.import_module(info.module), info.runner)
    return cls.load(path, device=device, threads=threads, precision_hint=hint)
