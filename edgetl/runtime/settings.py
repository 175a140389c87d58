"""Where and how a model runs: the settings every command that runs one shares, and
predict's (light, torch-free: the CLI and recipes read them without loading a backend)."""
from __future__ import annotations

import dataclasses

from edgetl.core.settings import Settings, setting, threads_setting

# What --device means wherever a model runs: the same words for every command.
DEVICE_HELP = ("auto: the backend's GPU where this machine has one it can use, else the CPU; cpu; cuda[:N]; "
               "gpu (OpenVINO)")

# Precisions a backend may be asked to compute the float parts of a model in. The
# default is always f32: a library's own default (OpenVINO's CPU plugin picks bf16 on
# CPUs that have it, CUDA libraries pick TF32) would make results depend on the machine.
PRECISION_HINTS = ("f32", "bf16", "f16")


@dataclasses.dataclass(frozen=True)
class InferenceSettings(Settings):
    """Where and how a model runs: the settings every command that runs one shares
    (evaluate, evaluate --stream, predict), declared once."""

    backend: str = setting("auto", "auto (by artifact kind) | onnxruntime | openvino | tensorrt | torch")
    device: str = setting("auto", DEVICE_HELP)
    threads: int | None = threads_setting()
    precision_hint: str = setting("f32", "openvino: compute the float operations in this precision (bf16/f16 only "
                                  "where the CPU has it).", choices=PRECISION_HINTS)


@dataclasses.dataclass(frozen=True)
class PredictSettings(InferenceSettings):
    top_k: int = setting(3, "How many labels per file (classifiers).", min=1, example="3")
    draw: str | None = setting(None, "Detectors: write each photo with its boxes drawn into this folder.", path=True)
    batch: int = setting(16, "Files per inference call.", min=1, cli=False)


__all__ = ["DEVICE_HELP", "PRECISION_HINTS", "InferenceSettings", "PredictSettings"]
