"""The backend table: each backend's Runner, what it loads, on which devices, and how it
is installed. Low in the runtime (artifact kinds only), so that what a machine can run
(machine.py) and how an artifact is opened (backends.py) read the same table."""
from __future__ import annotations

import dataclasses
import importlib.metadata

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
    "torch": BackendInfo("torch", *_plugged_in("torch"), ("run",), ("cpu", "cuda"), "train", "torch"),
    "onnxruntime": BackendInfo("onnxruntime", "edgetl.runtime.onnxruntime_runner", "OnnxRuntimeRunner", ("onnx",),
                               ("cpu", "cuda", "tensorrt"), "base install", "onnxruntime"),
    "openvino": BackendInfo("openvino", "edgetl.runtime.openvino_runner", "OpenVinoRunner", ("openvino",),
                            ("cpu", "gpu", "npu"), "openvino", "openvino"),
    "tensorrt": BackendInfo("tensorrt", "edgetl.runtime.tensorrt_runner", "TensorRTRunner", ("tensorrt",),
                            ("cuda",), "tensorrt", "tensorrt",
                            "on a Jetson, JetPack's TensorRT: docs/tensorrt.md"),
}


__all__ = ["BACKENDS", "ENTRY_POINTS", "BackendInfo"]
