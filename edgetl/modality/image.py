"""The image modality: decoding any common image file, and the preprocessing recorded in
a ModelCard, in numpy and Pillow only.

Training's evaluation path and every runtime use these same functions, so a raw image
becomes the same input tensor on every backend. Deliberately torch-free (the training
transform imports torch when it is asked for).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgetl.core.errors import DataError
from edgetl.core.settings import Settings, setting
from edgetl.modality.registry import Modality, dummy_input, invalid_preprocessing, register

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
# Larger images are decoded at a reduced scale (JPEG) or refused: a 100-megapixel photo
# decoded in full takes 1.4 GB for an input of a few hundred pixels.
MAX_PIXELS = 50_000_000

_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def load_image(path: str | Path) -> Image.Image:
    """Decode any common image into RGB; raises DataError for unreadable files.

    Transparent images are composited on white (a transparent background is usually
    "paper", not black), 16-bit and float images are scaled to 8 bits, CMYK/palette/
    grayscale are converted, and the EXIF orientation is applied.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is handled below
            with Image.open(path) as img:
                _reduce_if_huge(img, path)
                img.load()
                return to_rgb(ImageOps.exif_transpose(img))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}", hint="re-save it as JPEG or PNG, or remove it") from None


def photo_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as load_image returns it (EXIF orientation applied),
    from its header alone; raises OSError (or PIL's errors) for unreadable files."""
    with Image.open(path) as img:
        w, h = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _reduce_if_huge(img: Image.Image, path: str | Path) -> None:
    """JPEGs above MAX_PIXELS decode at 1/2, 1/4 or 1/8 scale (the same on every device:
    training and runtime share this function); other formats that large are refused."""
    w, h = img.size
    if w * h <= MAX_PIXELS:
        return
    if img.format == "JPEG":
        scale = math.sqrt(MAX_PIXELS / (w * h))
        img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        if img.size[0] * img.size[1] <= MAX_PIXELS * 4:  # draft rounds to the next power-of-two scale
            return
    raise DataError(f"image {path} is {w}x{h} ({w * h / 1e6:.0f} megapixels), above the {MAX_PIXELS / 1e6:.0f} "
                    "megapixels edgetl decodes", hint="downscale it (models see a few hundred pixels)")


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max()
        arr = arr / top * 255.0 if top > 0 else arr
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


# shorter side to `resize`, then a centre crop; the whole photo resized to `size`; or the
# whole photo fitted into `size` with its aspect kept, the rest padded grey (detectors)
CROPS = ("center", "stretch", "letterbox")
LETTERBOX_FILL = (114, 114, 114)  # Ultralytics' grey: an imported YOLO model was trained on it
CHANNELS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "uint8")  # uint8: the model takes the pixels themselves (its normalisation is in the graph)


@dataclasses.dataclass(frozen=True)
class ImagePreprocessing:
    """Resize the shorter side to `resize` and center-crop to `size` (or, `crop="stretch"`,
    resize the whole photo to `size`); put the channels in the model's order; scale to
    [0, 1], subtract `mean` and divide by `std` (per channel, in that order); lay out as
    the model takes it (CHW by default), float32. A `uint8` model takes the pixels as they
    are (mean and std unused).

    A split is cached as uint8 HWC RGB crops (`prepare`); `normalize` finishes the job."""

    kind = "image"
    cache_dtype = np.uint8
    size: tuple[int, int] = (224, 224)
    resize: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop: str = "center"
    channels: str = "RGB"
    layout: str = "NCHW"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(f"unknown interpolation {self.interpolation!r}")
        for name, allowed in (("crop", CROPS), ("channels", CHANNELS), ("layout", LAYOUTS), ("dtype", DTYPES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    @property
    def cache_shape(self) -> tuple[int, int, int]:
        return (*self.size, 3)

    @property
    def crop_pct(self) -> float:
        return min(self.size) / self.resize

    def with_size(self, size: int) -> ImagePreprocessing:
        """The same recipe at another input size, keeping the crop ratio."""
        return dataclasses.replace(self, size=(size, size), resize=int(round(size / self.crop_pct)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "image",
            "size": list(self.size),
            "resize": self.resize,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "scale": 1 / 255,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": self.channels,
            "layout": self.layout,
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImagePreprocessing:
        """A card's preprocessing (cards written before crop, channel order, layout and
        dtype were recorded hold the defaults: centre crop, RGB, NCHW, float32)."""
        if d.get("kind", "image") != "image":
            raise DataError(f"not an image preprocessing spec: kind={d.get('kind')!r}",
                            hint="this model takes another modality")
        try:
            pre = cls(size=tuple(d["size"]), resize=int(d["resize"]), interpolation=d["interpolation"],
                      mean=tuple(d["mean"]), std=tuple(d["std"]), crop=d.get("crop", "center"),
                      channels=d.get("channels", "RGB"), layout=d.get("layout", "NCHW"),
                      dtype=d.get("dtype", "float32"))
        except (KeyError, TypeError, ValueError) as exc:
            raise invalid_preprocessing(d, exc) from None
        if (len(pre.size) != 2 or min(pre.size) < 1 or pre.resize < 1 or pre.interpolation not in _INTERPOLATION
                or len(pre.mean) != 3 or len(pre.std) != 3 or min(pre.std) <= 0):
            raise invalid_preprocessing(d)
        return pre

    def letterbox(self, width: int, height: int) -> tuple[float, int, int]:
        """(scale, left, top) of a `width` x `height` photo fitted into `size` with its aspect
        kept, as Ultralytics computes it: a box in the model's input is the photo's box
        times scale, plus (left, top)."""
        out_h, out_w = self.size
        scale = min(out_h / height, out_w / width)
        new_w, new_h = int(round(width * scale)), int(round(height * scale))
        return scale, int(round((out_w - new_w) / 2 - 0.1)), int(round((out_h - new_h) / 2 - 0.1))

    def boxes_to_input(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """Boxes [K, 4] x0, y0, x1, y1 in a photo's pixels -> in the model input's."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if self.crop == "letterbox":
            scale, left, top = self.letterbox(width, height)
            return boxes * scale + np.asarray([left, top, left, top], np.float32)
        if self.crop == "stretch":
            return boxes * np.asarray([self.size[1] / width, self.size[0] / height] * 2, np.float32)
        scale = self.resize / min(width, height)
        new_w, new_h = max(self.size[1], round(width * scale)), max(self.size[0], round(height * scale))
        top, left = (new_h - self.size[0]) // 2, (new_w - self.size[1]) // 2
        return boxes * np.asarray([new_w / width, new_h / height] * 2, np.float32) - \
            np.asarray([left, top, left, top], np.float32)

    def boxes_to_original(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """Boxes in the model input's pixels -> in the photo's (`width` x `height`), clipped to it."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        unit = self.boxes_to_input(np.asarray([[0, 0, 1, 1]], np.float32), width, height)[0]
        scale, offset = unit[2:] - unit[:2], unit[:2]
        out = (boxes - np.concatenate([offset, offset])) / np.concatenate([scale, scale])
        clipped: np.ndarray = np.clip(out, 0, np.asarray([width, height, width, height], np.float32))
        return clipped

    def resize_crop(self, img: Image.Image) -> np.ndarray:
        """RGB PIL image -> uint8 HWC array of `size` (the part worth caching)."""
        if self.crop == "letterbox":
            scale, left, top = self.letterbox(*img.size)
            new_w, new_h = int(round(img.size[0] * scale)), int(round(img.size[1] * scale))
            canvas = Image.new("RGB", (self.size[1], self.size[0]), LETTERBOX_FILL)
            canvas.paste(img.resize((new_w, new_h), _INTERPOLATION[self.interpolation]), (left, top))
            return np.asarray(canvas, dtype=np.uint8)
        if self.crop == "stretch":
            img = img.resize((self.size[1], self.size[0]), _INTERPOLATION[self.interpolation])
            return np.asarray(img, dtype=np.uint8)
        w, h = img.size
        scale = self.resize / min(w, h)
        new_w, new_h = max(self.size[1], round(w * scale)), max(self.size[0], round(h * scale))
        img = img.resize((new_w, new_h), _INTERPOLATION[self.interpolation])
        top, left = (new_h - self.size[0]) // 2, (new_w - self.size[1]) // 2
        img = img.crop((left, top, left + self.size[1], top + self.size[0]))
        return np.asarray(img, dtype=np.uint8)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 HWC RGB (or NHWC) -> the model's input: CHW (or NCHW) float32 by default,
        in the channel order, layout and dtype the card records."""
        x = pixels[..., ::-1] if self.channels == "BGR" else pixels
        if self.dtype == "float32":
            x = x.astype(np.float32) * np.float32(1 / 255)
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(np.moveaxis(x, -1, -3) if self.layout == "NCHW" else x)

    read = staticmethod(load_image)

    def prepare(self, img: Image.Image) -> np.ndarray:
        return self.resize_crop(img)

    def input_spec(self) -> dict[str, Any]:
        shape = [None, 3, *self.size] if self.layout == "NCHW" else [None, *self.size, 3]
        return {"name": "input", "shape": shape, "dtype": self.dtype, "layout": self.layout}

    def dummy_input(self, batch: int) -> np.ndarray:
        return dummy_input(self.input_spec(), batch)

    def __call__(self, image: str | Path | Image.Image) -> np.ndarray:
        img = load_image(image) if not isinstance(image, Image.Image) else to_rgb(image)
        return self.normalize(self.resize_crop(img))



@dataclasses.dataclass
class ImageTrainingOptions(Settings):
    """What image training does to a batch (the training transform reads it)."""

    hflip: bool = setting(True, "Images: random horizontal flips.")


IMAGE = register(Modality(
    name="image", suffixes=IMAGE_SUFFIXES, noun="image", skipped_as="unreadable or too large image(s)",
    preprocessing=ImagePreprocessing))
