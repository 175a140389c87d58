"""Image batches on the training device (the image modality's training transform).

Images are decoded and cropped once (uint8, cached); each batch is augmented where it
is trained, so decoding never starves a GPU: random resized crop and horizontal flip
in one affine resampling, then brightness/contrast jitter, then normalisation.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class Augment:
    scale: tuple[float, float] = (0.5, 1.0)  # crop area as a share of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2


def channel_stats(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std as 1x3x1x1 tensors on `device` (made once, not per batch)."""
    def as_t(v):
        return torch.as_tensor(v, device=device, dtype=torch.float32).view(1, -1, 1, 1)

    return as_t(mean), as_t(std)


def standardize(x01: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """float NCHW in [0, 1] -> the preprocessing's normalisation."""
    return (x01 - mean) / std


def normalize(x_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 NCHW -> float NCHW in the preprocessing's normalisation (the runtime's
    ImagePreprocessing.normalize, in torch)."""
    if not isinstance(mean, torch.Tensor):
        mean, std = channel_stats(mean, std, x_uint8.device)
    return standardize(x_uint8.float() / 255.0, mean, std)


def augment_batch(x_uint8: torch.Tensor, aug: Augment, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 NCHW -> augmented float NCHW in [0, 1], same size."""
    n, dev = x_uint8.shape[0], x_uint8.device
    x = x_uint8.float() / 255.0

    def rand(*shape):
        return torch.rand(*shape, device=dev, generator=generator)

    area = aug.scale[0] + (aug.scale[1] - aug.scale[0]) * rand(n)
    log_r = math.log(aug.ratio[0]) + (math.log(aug.ratio[1]) - math.log(aug.ratio[0])) * rand(n)
    r = torch.exp(log_r)
    sx = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    sy = torch.sqrt(area / r).clamp(max=1.0)
    tx = (1 - sx) * (2 * rand(n) - 1)  # keep the crop inside the image
    ty = (1 - sy) * (2 * rand(n) - 1)
    if aug.hflip:
        sx = torch.where(rand(n) < 0.5, -sx, sx)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if aug.brightness:
        x = x * (1 + aug.brightness * (2 * rand(n, 1, 1, 1) - 1))
    if aug.contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1 + aug.contrast * (2 * rand(n, 1, 1, 1) - 1)) + mean
    return x.clamp_(0, 1)


class ImageTrainingInput:
    """Cached uint8 NHWC crops -> model inputs: plain for evaluation, augmented for training."""

    def __init__(self, mean, std, device, hflip: bool = True):
        self.mean, self.std = channel_stats(mean, std, device)
        self.augment = Augment(hflip=hflip)

    @staticmethod
    def as_tensor(cached: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(cached).permute(0, 3, 1, 2).contiguous()

    def model_input(self, xb: torch.Tensor) -> torch.Tensor:
        return normalize(xb, self.mean, self.std)

    def augmented(self, xb: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return standardize(augment_batch(xb, self.augment, generator), self.mean, self.std)
