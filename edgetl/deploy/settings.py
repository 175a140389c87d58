"""The settings of package and build-engine (light: the CLI and recipes read them
without loading the stages)."""
from __future__ import annotations

import dataclasses

from edgetl.core.errors import ConfigError
from edgetl.core.settings import Settings, setting, threads_setting
from edgetl.runtime.backend_table import targets as backend_targets

TARGETS = backend_targets()  # what a bundle may hold: the backend table's deployment targets


@dataclasses.dataclass(frozen=True)
class PackageSettings(Settings):
    targets: tuple[str, ...] = setting(("openvino", "onnxruntime"), "openvino, onnxruntime, tensorrt (the QDQ model "
                                       "and the command that builds its engine on the device).")
    zip_file: bool = setting(False, "Write one .zip file instead of a folder.", flag="--zip")
    samples: int = setting(16, "Reference files taken from the run's data (test split, else val), class by class.",
                           min=1, example="16")
    data: str | None = setting(None, "Take the reference files from this data set instead.", path=True)
    latency_from: str | None = setting(None, "A bench JSON (edgetl bench --json-file) whose batch-1 p50 of the same "
                                       "model files the bundle gives, instead of timing them again.", path=True)
    threads: int | None = threads_setting("the bundle's checks and latency figures")

    def validate(self) -> None:
        targets, known = list(self.targets), backend_targets()  # the table as it is now
        if not targets or any(t not in known for t in targets) or len(set(targets)) != len(targets):
            raise ConfigError(f"--targets takes distinct names among {', '.join(known)}, "
                              f"got {','.join(targets) or 'none'}", hint="e.g. --targets openvino,onnxruntime")


@dataclasses.dataclass(frozen=True)
class EngineSettings(Settings):
    """`edgetl build-engine`: how TensorRT builds an engine on the device."""

    precision: str = setting("best", "int8/best on the QDQ model from `quantize --target tensorrt` (its Q/DQ layers in "
                             "INT8); fp16/fp32/best on the float model.", choices=("fp32", "fp16", "int8", "best"))
    batch_profile: str | None = setting(None, "Optimization profile MIN:OPT:MAX (default 1:8:32); with --dla one static "
                                        "batch N (default 1).")
    dla: int | None = setting(None, "DLA core (Jetson), with GPU fallback; static shapes, FP16/INT8.", min=0,
                              example="0")
    workspace: int = setting(1024, "Builder workspace in MB.", min=1, example="1024")
    timing_cache: str | None = setting(None, "Timing cache file, read and updated (default: beside the engine).")
    gpu: int = setting(0, "The index of the GPU to build for (an engine is tied to its GPU).", min=0)
