"""How training computes on its device, chosen once per training and recorded in the
run's card (`source.compute`), never left to a library's default:

- memory layout: channels-last for image models, on the CPU as on a GPU. oneDNN's CPU
  convolutions run NHWC without reordering: measured on a 2-core AVX2 EPYC, one thread,
  EfficientNet-Lite0 training steps 1.46x faster at 160 px and 1.78x at 224 px, the
  320-px detector 1.46x (benchmarks/cpu_efficiency.py --layouts).
- autocast: bf16 on a CPU only where it has bf16 instructions (AVX-512 BF16 or AMX);
  on an AVX2-only CPU oneDNN emulates them and a step is about 8x slower (measured), so
  never there. On CUDA bf16 where the GPU has it, else fp16 with a gradient scaler.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

from edgetl.runtime.machine import cpu_flags

BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "off"}


@dataclasses.dataclass(frozen=True)
class TrainingCompute:
    device: torch.device
    channels_last: bool
    autocast: torch.dtype | None  # None: every op in f32

    def context(self) -> contextlib.AbstractContextManager[None]:
        """The autocast region of a forward pass (a no-op when off)."""
        return torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images in the model's memory layout (other inputs as they are)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model's 4-d weights in the same layout (in place; returns it)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has f32's range."""
        return self.autocast == torch.float16

    def describe(self) -> str:
        """For the log: `channels-last, f32` or `contiguous, bf16 autocast`."""
        layout = "channels-last" if self.channels_last else "contiguous"
        return f"{layout}, {_NAMES[self.autocast] + ' autocast' if self.autocast else 'f32'}"

    def to_dict(self) -> dict[str, str]:
        return {"memory_format": "channels_last" if self.channels_last else "contiguous",
                "autocast": _NAMES[self.autocast]}


def training_compute(device: torch.device, *, images: bool, channels_last: bool = True,
                     amp: bool = True) -> TrainingCompute:
    """The layout and autocast for training on `device`: `channels_last` applies to image
    models, `amp` to devices with fast reduced-precision kernels (see the module)."""
    dtype = None
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif amp and device.type == "cpu" and cpu_flags() & BF16_CPU_FLAGS:
        dtype = torch.bfloat16
    return TrainingCompute(device, channels_last and images, dtype)


__all__ = ["BF16_CPU_FLAGS", "TrainingCompute", "training_compute"]
