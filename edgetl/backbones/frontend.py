"""The log-mel front-end, part of every speech model and of its exported graph.

A raw 16 kHz waveform goes in, so the device computes exactly the features the model
was trained on. Every frame depends on its own 512 samples only (a fixed floor, not one
taken from the window's loudest frame), so a stream's frames are computed once, as the
audio arrives, and are the frames of every window they fall in. The STFT is a strided
1-D convolution with fixed DFT kernels (windowed cosines and sines), the mel filterbank a
matrix product, then a log: operators that ONNX Runtime, OpenVINO and TensorRT all run.
Models hold it as an attribute named `frontend` (edgetl.export.onnx_export.FRONTEND_SCOPE):
export marks its nodes and INT8 quantization keeps them in float.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# The fixed floor, in dB of mel power at int16 scale: just above what the quantization
# noise of 16-bit audio gives (+-1 LSB: 4 dB median) and where the old per-window floor
# lay for speech at its usual level (loudest frame 93 dB median on keyword clips, 92 dB
# on keyword streams: floor 13 dB). Under it nothing is sound a recording can hold.
FLOOR_DB = 10.0


def dft_kernels(n_fft: int, win_length: int) -> np.ndarray:
    """The STFT as convolution kernels [2 * (n_fft // 2 + 1), 1, n_fft] in float64: a
    periodic Hann window of `win_length` centred in `n_fft`, times the cosines (real rows)
    and minus the sines (imaginary rows) of every bin. Export writes the same numbers as a
    few graph operations (export/frontend_kernels.py) instead of a megabyte of weights."""
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left:left + win_length] = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(win_length) / win_length)
    angle = 2 * math.pi * (np.arange(n_fft // 2 + 1)[:, None] * np.arange(n_fft) % n_fft) / n_fft
    return np.concatenate([window * np.cos(angle), -window * np.sin(angle)])[:, None, :]


def set_floor(model: nn.Module, floor_db: float | None) -> None:
    """Give every LogMel in `model` this floor (what a run's card records)."""
    for module in model.modules():
        if isinstance(module, LogMel):
            module.floor_db = floor_db


class LogMel(nn.Module):
    """Waveform [batch, samples] in [-1, 1] -> log-mel [batch, frames, n_mels].

    The defaults follow openWakeWord's `melspectrogram.onnx` and its `x/10 + 2`: samples
    at int16 scale, a 400-sample periodic Hann window centred in a 512-point DFT, hop 160
    (10 ms), no padding, power spectrum, 32 Slaney mel bands from 60 to 3800 Hz, 10*log10,
    except for the floor. `floor_db` (default FLOOR_DB) is fixed; None takes the floor
    80 dB under each clip's loudest value, as the ONNX file does over its whole batch
    (and as edgetl runs made before the fixed floor, whose cards do not record one).
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, win_length: int = 400, hop: int = 160,
                 n_mels: int = 32, f_min: float = 60.0, f_max: float = 3800.0, input_scale: float = 32768.0,
                 top_db: float = 80.0, scale: float = 0.1, offset: float = 2.0, floor_db: float | None = FLOOR_DB):
        super().__init__()
        import torchaudio.functional as AF

        self.n_fft, self.win_length, self.hop, self.n_mels = n_fft, win_length, hop, n_mels
        self.input_scale, self.top_db, self.scale, self.offset = input_scale, top_db, scale, offset
        self.floor_db = floor_db
        self.register_buffer("dft", torch.from_numpy(dft_kernels(n_fft, win_length)).float(), persistent=False)
        fbank = AF.melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm="slaney", mel_scale="slaney")
        self.register_buffer("mel", fbank.float(), persistent=False)

    def extra_repr(self) -> str:  # in the module's repr: what a cache of its outputs is keyed by
        return (f"n_fft={self.n_fft}, win_length={self.win_length}, hop={self.hop}, n_mels={self.n_mels}, "
                f"input_scale={self.input_scale}, floor_db={self.floor_db}, top_db={self.top_db}, "
                f"scale={self.scale}, offset={self.offset}")

    def frames(self, samples: int) -> int:
        return (samples - self.n_fft) // self.hop + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = nn.functional.conv1d(wave[:, None, :] * self.input_scale, self.dft, stride=self.hop)
        bins = self.n_fft // 2 + 1
        power = spec[:, :bins] ** 2 + spec[:, bins:] ** 2  # [batch, bins, frames]
        mel = torch.matmul(power.transpose(1, 2), self.mel)  # [batch, frames, n_mels]
        if self.floor_db is not None:
            return 10.0 * torch.log10(torch.clamp(mel, min=10.0 ** (self.floor_db / 10))) * self.scale + self.offset
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db
        return torch.maximum(db, floor) * self.scale + self.offset


class SpecAugment(nn.Module):
    """Random frequency and time masks on [batch, frames, bins] features while training;
    nothing at all in eval mode (so nothing of it is exported)."""

    def __init__(self, freq_masks: int = 1, freq_width: int = 4, time_masks: int = 1, time_width: int = 10):
        super().__init__()
        self.freq_masks, self.freq_width, self.time_masks, self.time_width = freq_masks, freq_width, time_masks, time_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        batch, frames, bins = x.shape
        fill = x.mean(dim=(1, 2), keepdim=True)
        keep = torch.ones_like(x, dtype=torch.bool)
        for axis, count, width, size in ((2, self.freq_masks, self.freq_width, bins),
                                         (1, self.time_masks, self.time_width, frames)):
            pos = torch.arange(size, device=x.device)
            for _ in range(count):
                w = torch.randint(0, width + 1, (batch, 1), device=x.device)
                start = (torch.rand(batch, 1, device=x.device) * (size - w + 1)).long()
                hit = (pos[None] >= start) & (pos[None] < start + w)  # [batch, size]
                keep &= ~(hit[:, None, :] if axis == 2 else hit[:, :, None])
        return torch.where(keep, x, fill)
