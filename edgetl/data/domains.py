"""Shifted domains of the built-in data sets, for domain adaptation demos and measurement.

Digits:
- `textured` (a strong shift, in the spirit of MNIST-M): each digit blended over a
  random patch of a real photo or texture from scikit-image, the patch's colours
  inverted where the ink is, so neither the ink nor the paper keeps one colour;
- `blurred` (a mild shift): a blurred, low-contrast scan on grey paper with sensor noise.

Each takes a digit as scanned (uint8, dark ink on white paper, any size) and returns the
shifted image; the labels stay those of the source digit.

Spoken keywords:
- `room` (a strong shift): a far microphone in a reverberant room, the impulse response
  simulated with pyroomacoustics (image sources plus ray tracing; rooms of 3-8 m with
  RT60 0.4-0.9 s, talker 1-4 m away), one of 16 rooms per clip;
- `phone` (a mild one): the 300-3400 Hz band of an 8 kHz phone line, and a soft limiter.
Each takes a 16 kHz float clip and returns one of the same length and loudness.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from edgetl.core.errors import ConfigError

_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel")
_TEXTURES = ("brick", "grass", "gravel", "moon")  # grey: tinted with a random colour


def background_photos() -> list[np.ndarray]:
    """scikit-image's sample photos and textures (offline), RGB uint8."""
    try:
        from skimage import data
    except ImportError:
        raise ConfigError("the textured digits need scikit-image's sample photos", hint="pip install 'edgetl[train]'") from None
    images = [getattr(data, name)()[..., :3] for name in _PHOTOS]
    images += [np.repeat(getattr(data, name)()[..., None], 3, axis=2) for name in _TEXTURES]
    return images


class Textured:
    def __init__(self):
        self.backgrounds = background_photos()

    def __call__(self, digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
        side = digit.shape[0]
        bg = self.backgrounds[rng.integers(len(self.backgrounds))].astype(np.float32)
        if bg.std(axis=(0, 1)).max() < 1 or bg[..., 0].tobytes() == bg[..., 1].tobytes():
            bg = bg * rng.uniform(0.4, 1.0, size=3)  # a grey texture gets a colour
        crop = int(rng.integers(side, max(side + 1, min(bg.shape[:2]) // 2)))
        y, x = rng.integers(0, bg.shape[0] - crop + 1), rng.integers(0, bg.shape[1] - crop + 1)
        patch = Image.fromarray(bg[y:y + crop, x:x + crop].astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR)
        ink = 255.0 - digit.astype(np.float32)  # 255 where the pen went
        out = np.abs(np.asarray(patch, np.float32) - ink[..., None])
        return Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")


class Blurred:
    def __call__(self, digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
        side = digit.shape[0]
        img = Image.fromarray(digit, "L").filter(ImageFilter.GaussianBlur(radius=side / 40 * rng.uniform(0.8, 1.4)))
        x = np.asarray(img, np.float32) / 255.0
        paper, contrast = rng.uniform(0.55, 0.8), rng.uniform(0.3, 0.5)
        x = paper - (1 - x) * contrast + rng.normal(0, 0.05, x.shape)
        return Image.fromarray((x * 255).clip(0, 255).astype(np.uint8), "L")


DIGIT_DOMAINS = {"textured": Textured, "blurred": Blurred}


def digit_domain(name: str):
    if name not in DIGIT_DOMAINS:
        raise ConfigError(f"unknown digits domain {name!r}", hint=f"use one of {', '.join(DIGIT_DOMAINS)}")
    return DIGIT_DOMAINS[name]()


class Room:
    ROOMS = 16

    def __init__(self, sample_rate: int = 16000, seed: int = 0):
        try:
            import pyroomacoustics as pra
        except ImportError:
            raise ConfigError("the room domain simulates rooms with pyroomacoustics",
                              hint="pip install 'edgetl[train]'") from None
        rng = np.random.default_rng(seed)
        self.responses = []
        for _ in range(self.ROOMS):
            size = rng.uniform([3.0, 3.0, 2.4], [8.0, 6.0, 3.5])
            absorption, _ = pra.inverse_sabine(float(rng.uniform(0.4, 0.9)), size)
            room = pra.ShoeBox(size, fs=sample_rate, materials=pra.Material(absorption), max_order=3,
                               ray_tracing=True, air_absorption=True)
            room.set_ray_tracing(receiver_radius=0.5, n_rays=3000, energy_thres=1e-5)
            talker = rng.uniform(0.5, size - 0.5)
            direction = rng.normal(size=3)
            mic = np.clip(talker + direction / np.linalg.norm(direction) * rng.uniform(1.0, 4.0), 0.3, size - 0.3)
            room.add_source(talker)
            room.add_microphone(mic)
            room.compute_rir()
            self.responses.append(np.asarray(room.rir[0][0], np.float32))

    def __call__(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from scipy.signal import fftconvolve

        h = self.responses[rng.integers(len(self.responses))]
        wet = fftconvolve(clip, h)[:len(clip)].astype(np.float32)
        return _same_loudness(wet, clip)


class Phone:
    def __call__(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import soxr
        from scipy.signal import butter, sosfilt

        narrow = soxr.resample(clip, 16000, 8000)
        narrow = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), narrow)
        narrow = np.tanh(3.0 * narrow / max(1e-6, np.abs(narrow).max()))  # the line's limiter, within its band
        wide = soxr.resample(narrow.astype(np.float32), 8000, 16000)[:len(clip)]
        return _same_loudness(np.pad(wide, (0, len(clip) - len(wide))).astype(np.float32), clip)


def _same_loudness(wave: np.ndarray, like: np.ndarray) -> np.ndarray:
    return wave * (np.sqrt(np.mean(like ** 2)) / max(1e-8, float(np.sqrt(np.mean(wave ** 2)))))


KEYWORD_DOMAINS = {"room": Room, "phone": Phone}


def keyword_domain(name: str):
    if name not in KEYWORD_DOMAINS:
        raise ConfigError(f"unknown keywords domain {name!r}", hint=f"use one of {', '.join(KEYWORD_DOMAINS)}")
    return KEYWORD_DOMAINS[name]()
