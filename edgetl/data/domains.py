"""Shifted domains of the built-in digits, for domain adaptation demos and measurement.

- `textured` (a strong shift, in the spirit of MNIST-M): each digit blended over a
  random patch of a real photo or texture from scikit-image, the patch's colours
  inverted where the ink is, so neither the ink nor the paper keeps one colour;
- `blurred` (a mild shift): a blurred, low-contrast scan on grey paper with sensor noise.

Each function takes a digit as scanned (uint8, dark ink on white paper, any size) and
returns the shifted image; the labels stay those of the source digit.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from edgetl.errors import ConfigError

_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel")
_TEXTURES = ("brick", "grass", "gravel", "moon")  # grey: tinted with a random colour


def _backgrounds() -> list[np.ndarray]:
    try:
        from skimage import data
    except ImportError:
        raise ConfigError("the textured digits need scikit-image's sample photos", hint="pip install 'edgetl[train]'") from None
    images = [getattr(data, name)()[..., :3] for name in _PHOTOS]
    images += [np.repeat(getattr(data, name)()[..., None], 3, axis=2) for name in _TEXTURES]
    return images


class Textured:
    def __init__(self):
        self.backgrounds = _backgrounds()

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
