"""The backend table: one row per backend holds every fact about it that is not its
Runner's own code: where the Runner lives, what it loads and on which devices, how it is
installed, which packages' versions a measurement records, where `auto` ranks it, which
float and INT8 model files a deployment target of it holds, and how it is quantized (the
name of a quantizer of `edgetl/quantize/`). Adding a backend is one Runner
module and one row here (docs/architecture.md). Low in the runtime (artifact kinds
only), so that what a machine can run (machine.py), how an artifact is opened
(backends.py), a bundle's targets and the stages all read the same table."""
from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Iterable

from edgetl.runtime.artifacts import KINDS


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    name: str
    module: str  # where the Runner subclass lives
    runner: str  # its class name
    kinds: tuple[str, ...]  # the artifact kinds it loads (runtime/artifacts.py)
    devices: tuple[str, ...]
    extra: str  # the pip extra that installs it
    package: str  # the import that proves it is installed
    install_note: str = ""  # where the pip line is not the whole answer
    versions: tuple[str, ...] = ()  # the packages whose versions a measurement records (the first installed: doctor's)
    preference: int = 99  # auto: a bundle's targets are tried in this order (lowest first)
    reference_rank: int = 99  # bench: the FP32 row a run's other rows are compared with (lowest first)
    # as a deployment target (quantize --target, a bundle's targets): the float model's
    # suffix, the INT8 model's, and the backend that runs that model where this one cannot
    # (TensorRT's QDQ model in ONNX Runtime); no float suffix: not a target
    model_suffix: str = ""
    int8_suffix: str = ""
    checked_on: str = ""
    # how its INT8 model is made: "nncf" (OpenVINO's accuracy-controlled PTQ) or "qdq" (ONNX
    # Q/DQ with layers kept in float by measured sensitivity), quantize/job.py QUANTIZERS;
    # empty: not a quantize target
    quantizer: str = ""

    @property
    def target_backend(self) -> str:
        """The backend that loads this target's model files here."""
        return self.checked_on or self.name

    @property
    def artifacts(self) -> tuple[str, ...]:
        """What it loads, as users see it: file suffixes, or "run" for a run directory."""
        return tuple(s for k in self.kinds for s in (KINDS[k].suffixes or (k,)))

    @property
    def install(self) -> str:
        """The command that installs it."""
        line = "pip install edgetl" if self.extra == "base install" else f"pip install 'edgetl[{self.extra}]'"
        return f"{line} ({self.install_note})" if self.install_note else line


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
    "torch": BackendInfo("torch", *_plugged_in("torch"), ("run",), ("cpu", "cuda"), "train", "torch",
                         versions=("torch", "torchvision", "timm"), reference_rank=0),
    "onnxruntime": BackendInfo("onnxruntime", "edgetl.runtime.onnxruntime_runner", "OnnxRuntimeRunner", ("onnx",),
                               ("cpu", "cuda", "tensorrt"), "base install", "onnxruntime",
                               versions=("onnxruntime", "onnxruntime-gpu", "onnx"), preference=2, reference_rank=1,
                               model_suffix=".onnx", int8_suffix=".int8.onnx", quantizer="qdq"),
    "openvino": BackendInfo("openvino", "edgetl.runtime.openvino_runner", "OpenVinoRunner", ("openvino",),
                            ("cpu", "gpu", "npu"), "openvino", "openvino", versions=("openvino", "nncf"),
                            preference=1, reference_rank=2, model_suffix=".xml", int8_suffix=".int8.xml",
                            quantizer="nncf"),
    "tensorrt": BackendInfo("tensorrt", "edgetl.runtime.tensorrt_runner", "TensorRTRunner", ("tensorrt",),
                            ("cuda",), "tensorrt", "tensorrt",
                            "on a Jetson, JetPack's TensorRT: docs/tensorrt.md",
                            versions=("tensorrt", "tensorrt-cu12", "tensorrt-cu13"), preference=0, reference_rank=3,
                            model_suffix=".onnx", int8_suffix=".qdq.onnx", checked_on="onnxruntime", quantizer="qdq"),
}


def targets() -> tuple[str, ...]:
    """The backends a model is deployed to (quantize --target, a bundle's targets), in table order."""
    return tuple(name for name, b in BACKENDS.items() if b.model_suffix)


def by_preference(names: Iterable[str]) -> list[str]:
    """`names` in the order auto tries them."""
    return sorted(names, key=lambda n: BACKENDS[n].preference if n in BACKENDS else 99)


__all__ = ["BACKENDS", "ENTRY_POINTS", "BackendInfo", "by_preference", "targets"]
