"""What every training on the torch side shares (fine-tuning, adaptation, QAT): the
device, the seeds, torchrun's processes, and a decoded split as tensors."""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn

from edgetl import modality as modalities
from edgetl import progress
from edgetl.errors import ConfigError


class Distributed:
    """torchrun's environment: several processes, one per device, gradients averaged."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.started = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        if self.active and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.started = True

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        if not self.active:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def close(self) -> None:
        if self.started:
            torch.distributed.destroy_process_group()


def resolve_device(name: str, dist: Distributed) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda") or name == "auto":
        if not torch.cuda.is_available():
            if name == "auto":
                return torch.device("cpu")
            raise ConfigError("--device cuda was asked for but no CUDA device is available",
                              hint="use --device cpu or auto")
        if dist.active:
            return torch.device("cuda", dist.local_rank)
        return torch.device(name if name.startswith("cuda") else "cuda")
    raise ConfigError(f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N")


# Inference passes (features, validation, probabilities) hold one batch's activations,
# which grow with the input's size: EfficientNet-Lite0 needs about 20 MB per image at
# 224 px, so a fixed batch of 256 peaked at 5.6 GB. The batch is sized to the input:
# 16 at 224 px, 128 at 64 px, 256 for one-second clips.
INFERENCE_VALUES = 2 ** 22  # input values per inference batch
MAX_INFERENCE_BATCH = 256


def inference_batch(sample_shape) -> int:
    """Samples per inference batch for samples of `sample_shape` (a power of two)."""
    values = max(1, int(np.prod(sample_shape)))
    n = max(1, min(MAX_INFERENCE_BATCH, INFERENCE_VALUES // values))
    return 1 << (n.bit_length() - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_tensors(cached: np.ndarray, labels: np.ndarray, device: torch.device, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoded split as tensors in the modality's training layout, kept on the GPU when
    it fits comfortably (it is the input pipeline: indexing a device tensor is far faster
    than a DataLoader)."""
    x = inputs.as_tensor(cached)
    y = torch.from_numpy(labels)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if x.numel() < 0.25 * free:
            return x.to(device), y.to(device)
        return x.pin_memory(), y.pin_memory()
    return x, y


def decode_unlabelled(split, kind, pre) -> tuple[np.ndarray, np.ndarray]:
    with progress.progress_bar() as bar:
        task = bar.add_task(f"decoding target {kind.noun}s", total=len(split), status="")
        return modalities.decode_split(split, pre, progress=lambda n: bar.advance(task, n))
