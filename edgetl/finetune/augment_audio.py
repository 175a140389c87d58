"""Audio batches on the training device (the audio modality's training transform).

Clips are decoded, resampled and windowed once (float32, cached); each batch is
augmented where it is trained: a random time shift (zero-filled), a random gain, and
background noise mixed in at a random signal-to-noise ratio. The noise comes from the
data set's `_background_noise_` folder (Speech Commands' convention), else from
generated pink noise. SpecAugment, where a model has it, acts inside the model.
"""
from __future__ import annotations

import numpy as np
import torch

from edgetl.data.noise import background_noise


class AudioTrainingInput:
    """Cached float32 [N, samples] waveforms -> model inputs: as they are for evaluation,
    shifted, scaled and noised for training."""

    def __init__(self, preprocessing, device, options, data=None, seed: int = 0):
        self.device = torch.device(device)
        self.max_shift = int(options.shift_ms * preprocessing.sample_rate / 1000)
        self.gain_db = float(options.gain_db)
        self.snr_db = tuple(float(v) for v in options.noise_snr_db)
        self.noise_prob = float(options.noise_prob)
        bank, self.noise_source = background_noise(data, preprocessing.sample_rate, 2 * preprocessing.window,
                                                   seed)
        self.noise = torch.from_numpy(bank).to(self.device)

    @staticmethod
    def as_tensor(cached: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(cached, dtype=np.float32))

    def model_input(self, xb: torch.Tensor) -> torch.Tensor:
        return xb.float()

    def augmented(self, xb: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = xb.float()
        n, length = x.shape
        dev = x.device

        def rand(*shape):
            return torch.rand(*shape, device=dev, generator=generator)

        if self.max_shift:
            shift = ((2 * rand(n, 1) - 1) * self.max_shift).round().long()
            idx = torch.arange(length, device=dev)[None] - shift
            valid = (idx >= 0) & (idx < length)
            x = torch.gather(x, 1, idx.clamp(0, length - 1)) * valid
        if self.gain_db:
            x = x * 10 ** (self.gain_db * (2 * rand(n, 1) - 1) / 20)
        if self.noise_prob > 0:
            starts = (rand(n, 1) * (len(self.noise) - length)).long()
            noise = self.noise[starts + torch.arange(length, device=dev)[None]]
            snr = self.snr_db[0] + (self.snr_db[1] - self.snr_db[0]) * rand(n, 1)
            signal_rms = x.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-4)
            noise_rms = noise.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-6)
            scale = signal_rms / (noise_rms * 10 ** (snr / 20)) * (rand(n, 1) < self.noise_prob)
            x = x + noise * scale
        return x.clamp(-1.0, 1.0)
