"""What every training on the torch side shares (fine-tuning, adaptation, QAT): the
device, the seeds, torchrun's processes, and a decoded split as tensors."""
from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch
from torch import nn

from edgetl.core import progress
from edgetl.core.errors import ConfigError
from edgetl.core.threads import resolve_threads
from edgetl.data.sample_cache import cached_split


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


def set_torch_threads(threads: int | None) -> int:
    """torch's intra-op threads and, where it is still possible (before any parallel
    work in this process), its inter-op threads: `threads`, or edgetl's default."""
    n = resolve_threads(threads)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # set once per process; an earlier stage of this process did
        pass
    return n


def module_digest(module: nn.Module) -> str:
    """A digest of what a module computes: its structure and settings (its repr, e.g. a
    log-mel front-end's floor), its weights and every buffer (BatchNorm statistics, and
    the fixed ones a state dict leaves out, such as the front-end's DFT kernels)."""
    h = hashlib.sha256(repr(module).encode())
    for name, value in [*module.state_dict().items(), *module.named_buffers()]:
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class SampleSource:
    """A decoded split as the training loop reads it: indexing by a tensor, an array or a
    slice of rows returns those samples as a tensor in the modality's training layout.
    The samples stay in the cache on disk (data/sample_cache.py) or in memory; on a GPU
    with room for them, they are copied there once (indexing a device tensor is far
    faster than a DataLoader)."""

    def __init__(self, samples, inputs, device: torch.device | None = None):
        self.samples, self.inputs = samples, inputs
        self.key = getattr(samples, "key", None)  # names the content, for derived caches
        self.resident: torch.Tensor | None = None
        if device is not None and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if np.prod(samples.shape) * np.dtype(samples.dtype).itemsize < 0.25 * free:
                self.resident = torch.cat([inputs.as_tensor(samples[s:s + 1024])
                                           for s in range(0, len(samples), 1024)]).to(device)

    @property
    def device(self) -> torch.device:
        return self.resident.device if self.resident is not None else torch.device("cpu")

    @property
    def shape(self) -> tuple:
        return tuple(self.samples.shape)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index) -> torch.Tensor:
        if self.resident is not None:
            return self.resident[index]
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return self.inputs.as_tensor(self.samples[index])


def as_source(samples, labels: np.ndarray, device: torch.device, inputs) -> tuple[SampleSource, torch.Tensor]:
    """A decoded split (cached or in memory) and its labels as the training loop reads them."""
    y = torch.from_numpy(np.asarray(labels, np.int64))
    source = SampleSource(samples, inputs, device)
    return source, (y.to(device) if source.resident is not None else y)


def decode_cached(split, pre, what: str) -> tuple:
    """A split through the sample cache on disk, with a progress bar ('decoding ...')."""
    with progress.progress_bar() as bar:
        task = bar.add_task(what, total=len(split), status="")
        tick = lambda n: bar.advance(task, n)  # noqa: E731
        return cached_split(split, pre, progress=tick, on_hit=tick)


def decode_unlabelled(split, kind, pre) -> tuple:
    return decode_cached(split, pre, f"decoding target {kind.noun}s")
