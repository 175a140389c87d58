"""Built-in data set: scikit-learn's real handwritten digits (1,797 images, 10 classes)
written as an image folder data set with a stratified train/val/test split, as
scanned or in a shifted domain (data/domains.py) with the same split."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from edgetl.core.errors import ConfigError
from edgetl.core.outputs import check_output, publish_data, temp_dir_beside
from edgetl.data.domains import digit_domain
from edgetl.data.settings import DigitsSettings


def make_digits(out: str | os.PathLike, settings: DigitsSettings | None = None, overwrite: bool = False,
                val_fraction: float = 0.2, test_fraction: float = 0.2, **options) -> Path:
    """Write OUT/{train,val,test}/CLASS/*.png. `settings` (or its fields as keyword
    options): DigitsSettings."""
    s = DigitsSettings.of(settings, **options)
    size, seed, domain = s.size, s.seed, s.domain
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ConfigError("the digits data set needs scikit-learn", hint="pip install 'edgetl[train]'") from None
    shift = digit_domain(domain) if domain else None
    out = check_output(out, "data", overwrite)
    rng = np.random.default_rng(seed + 1)
    digits = load_digits()
    # 0..16 ink intensity -> dark ink on white paper, like a scanned page.
    pixels = (255 - digits.images * (255 / 16)).clip(0, 255).astype(np.uint8)
    labels = digits.target
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction), stratify=labels[rest],
                                  random_state=seed)
    tmp = temp_dir_beside(out)
    try:
        for split, members in (("train", train), ("val", val), ("test", test)):
            for i in members:
                folder = tmp / split / str(labels[i])
                folder.mkdir(parents=True, exist_ok=True)
                img = Image.fromarray(pixels[i], "L").resize((size, size), Image.Resampling.BICUBIC)
                if shift:
                    img = shift(np.asarray(img), rng)
                img.save(folder / f"digit_{i:04d}.png")
        publish_data(tmp, out, {"data set": "digits", "size": size, "seed": seed, "domain": domain or "scanned"},
                     overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
