"""Built-in detection set: scikit-learn's real handwritten digits placed on real photos
(scikit-image's samples), one to a few per image at varied scales and colours, each with
its box, written in the YOLO (Ultralytics) layout (`images/`, `labels/`, `data.yaml`).
The digits of the val and test splits are other people's strokes than those of train.
Made offline in seconds."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from edgetl.core.errors import ConfigError
from edgetl.core.outputs import check_output, publish_data, temp_dir_beside
from edgetl.data.settings import DigitScenesSettings

SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
MIN_SCALE, MAX_SCALE = 0.12, 0.4  # an object's side as a share of the image's
MAX_OVERLAP = 0.1  # IoU two objects of a scene may share


def make_digit_scenes(out: str | os.PathLike, settings: DigitScenesSettings | None = None, overwrite: bool = False,
                      **options) -> Path:
    """Write OUT/images/{train,val,test}/*.jpg, OUT/labels/... and OUT/data.yaml.
    `settings` (or its fields as keyword options): DigitScenesSettings."""
    s = DigitScenesSettings.of(settings, **options)
    try:
        from sklearn.datasets import load_digits

        from edgetl.data.domains import background_photos
    except ImportError:
        raise ConfigError("the digit scenes need scikit-learn and scikit-image", hint="pip install 'edgetl[train]'") \
            from None
    out = check_output(out, "data", overwrite)
    rng = np.random.default_rng(s.seed)
    digits = load_digits()
    ink = {c: digits.images[digits.target == c] / 16.0 for c in range(s.classes)}  # 0..1 where the pen went
    strokes = {c: _split_indices(len(v), rng) for c, v in ink.items()}
    photos = background_photos()
    tmp = temp_dir_beside(out)
    try:
        counts = [int(round(s.images * share)) if s.held_out is None else s.held_out for _, share in SPLITS]
        counts[0] = s.images - sum(counts[1:])
        n = 0
        for (split, _), count in zip(SPLITS, counts):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for _ in range(count):
                image, lines = _scene(s, photos, ink, {c: strokes[c][split] for c in ink}, rng)
                image.save(tmp / "images" / split / f"scene_{n:05d}.jpg", quality=92)
                (tmp / "labels" / split / f"scene_{n:05d}.txt").write_text("".join(lines))
                n += 1
        names = "\n".join(f"  {c}: '{c}'" for c in range(s.classes))
        (tmp / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\ntest: images/test\n"
                                       f"names:\n{names}\n")
        publish_data(tmp, out, {"data set": "digit scenes", "images": s.images, "size": s.size, "classes": s.classes,
                                "max_objects": s.max_objects, "held_out": s.held_out, "seed": s.seed}, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _split_indices(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    order = rng.permutation(n)
    a, b = int(n * SPLITS[0][1]), int(n * (SPLITS[0][1] + SPLITS[1][1]))
    return {"train": order[:a], "val": order[a:b], "test": order[b:]}


def _scene(s: DigitScenesSettings, photos: list[np.ndarray], ink: dict[int, np.ndarray],
           strokes: dict[int, np.ndarray], rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """One photo crop with 1..max_objects digits drawn on it, and its YOLO label lines."""
    photo = photos[rng.integers(len(photos))]
    side = int(rng.integers(min(photo.shape[:2]) // 3, min(photo.shape[:2]) + 1))
    y, x = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
    canvas = np.asarray(Image.fromarray(photo[y:y + side, x:x + side]).resize((s.size, s.size),
                                                                            Image.Resampling.BILINEAR), np.float32)
    if rng.random() < 0.5:
        canvas = canvas[:, ::-1]
    placed: list[tuple[float, float, float, float]] = []
    lines = []
    for _ in range(int(rng.integers(1, s.max_objects + 1))):
        c = int(rng.integers(len(ink)))
        glyph = ink[c][rng.choice(strokes[c])]
        obj = int(s.size * rng.uniform(MIN_SCALE, MAX_SCALE))
        aspect = rng.uniform(0.75, 1.25)
        w, h = max(4, int(obj * min(1.0, aspect))), max(4, int(obj / max(1.0, aspect)))
        alpha = np.asarray(Image.fromarray((glyph * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                           np.float32) / 255
        for _ in range(20):  # a place that overlaps the others little
            x0, y0 = int(rng.integers(0, s.size - w + 1)), int(rng.integers(0, s.size - h + 1))
            if all(_iou((x0, y0, x0 + w, y0 + h), b) <= MAX_OVERLAP for b in placed):
                break
        else:
            continue
        region = canvas[y0:y0 + h, x0:x0 + w]
        background = region.mean(axis=(0, 1))
        colour = np.where(background > 127, rng.uniform(0, 70, 3), rng.uniform(185, 255, 3))  # seen against it
        canvas[y0:y0 + h, x0:x0 + w] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        ys, xs = np.nonzero(alpha > 0.3)  # the box holds the strokes, not the glyph's empty margin
        box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
        placed.append(box)
        cx, cy = (box[0] + box[2]) / 2 / s.size, (box[1] + box[3]) / 2 / s.size
        bw, bh = (box[2] - box[0]) / s.size, (box[3] - box[1]) / s.size
        lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
    return Image.fromarray(canvas.clip(0, 255).astype(np.uint8), "RGB"), lines


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


__all__ = ["make_digit_scenes"]
