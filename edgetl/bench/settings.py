"""The benchmark settings (torch-free), validated in the library so a Python user gets
the same checks as the CLI."""
from __future__ import annotations

import dataclasses

from edgetl.core.errors import ConfigError
from edgetl.core.settings import Settings, setting, threads_setting
from edgetl.runtime.settings import DEVICE_HELP, PRECISION_HINTS


@dataclasses.dataclass(frozen=True)
class BenchSettings(Settings):
    data: str | None = setting(None, "Labelled data set (default: each run's own data set).", path=True)
    split: str = setting("val", "train | val | test")
    backends: tuple[str, ...] | None = setting(None, "Backends, comma-separated (torch,onnxruntime,openvino,tensorrt); "
                                               "auto: each artifact's own.", flag="--backend")
    batches: tuple[int, ...] = setting((1,), "Batch sizes, comma-separated, e.g. 1,8.", flag="--batch-sizes")
    threads: int | None = threads_setting("every backend")
    iters: int = setting(100, "Timed calls per cell (at least).", min=1, example="100")
    min_time: float = setting(0.0, "Seconds per cell (at least).", min=0, example="5")
    warmup: int = setting(10, "Untimed calls before timing.", min=0, example="10")
    device: str = setting("auto", DEVICE_HELP)
    rounds: int = setting(1, "Time every cell this many times, all cells in turn, and pool the timings (noisy "
                          "machines).", min=1, example="3")
    precision_hints: tuple[str, ...] = setting(("f32",), "openvino: also measure in these precisions (comma-separated, "
                                               "e.g. bf16,f16), each as its own row judged against the FP32 "
                                               "reference; f32 is always measured.", flag="--precision-hint")
    shapes: tuple[str, ...] = setting((), "A model without an edgetl card: the shape of an input it leaves open, "
                                      "NAME:1x3x224x224 (repeatable; a dynamic first dimension is the batch).",
                                      flag="--shape")
    max_drop: float | None = setting(None, "Exit 1 when an artifact loses more accuracy than this (0.01 = 1 point) "
                                     "against its run's FP32 reference.", min=0, below=1, example="0.01")

    def validate(self) -> None:
        if not self.batches or min(self.batches) < 1:
            raise ConfigError(f"batch sizes must be positive integers, got {list(self.batches)}",
                              hint="--batch-sizes 1,8")
        from edgetl.runtime.signature import parse_shapes

        parse_shapes(self.shapes)  # a malformed --shape is named before any work
        unknown = [h for h in self.precision_hints if h not in PRECISION_HINTS]
        if unknown:
            raise ConfigError(f"unknown precision hint {unknown[0]!r}", hint=f"use one of {', '.join(PRECISION_HINTS)}")
