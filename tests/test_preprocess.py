import numpy as np
import pytest
from conftest import odd_image_bytes
from PIL import Image

from edgetl.core.errors import DataError
from edgetl.modality.image import ImagePreprocessing, load_image


@pytest.fixture()
def odd_files(tmp_path):
    for name, data in odd_image_bytes().items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("name", ["gray.png", "palette.png", "transparent.png", "cmyk.jpg", "UPPER.JPG",
                                  "bitmap.bmp", "web.webp", "sixteen.png"])
def test_every_mode_becomes_rgb(odd_files, name):
    img = load_image(odd_files / name)
    assert img.mode == "RGB"
    assert img.size == (30, 40)


def test_transparent_pixels_become_white(odd_files):
    assert np.asarray(load_image(odd_files / "transparent.png")).min() == 255


def test_sixteen_bit_uses_the_full_range(odd_files):
    arr = np.asarray(load_image(odd_files / "sixteen.png"))
    assert arr.max() == 255 and arr.min() == 0


@pytest.mark.parametrize("name", ["corrupt.jpg", "truncated.png", "notes.txt", "missing.png"])
def test_unreadable_files_raise_a_data_error(odd_files, name):
    with pytest.raises(DataError, match=name):
        load_image(odd_files / name)


def test_resize_crop_and_normalize():
    pre = ImagePreprocessing(size=(24, 24), resize=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    img = Image.new("RGB", (64, 40), (255, 0, 128))
    pixels = pre.resize_crop(img)
    assert pixels.shape == (24, 24, 3) and pixels.dtype == np.uint8
    x = pre.normalize(pixels)
    assert x.shape == (3, 24, 24) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [(1 - 0.5) / 0.25, (0 - 0.5) / 0.25, (128 / 255 - 0.5) / 0.25], atol=1e-6)


def test_spec_roundtrip_and_resizing_keeps_the_crop_ratio():
    pre = ImagePreprocessing(size=(224, 224), resize=256, interpolation="bicubic")
    assert ImagePreprocessing.from_dict(pre.to_dict()) == pre
    small = pre.with_size(64)
    assert small.size == (64, 64) and small.resize == round(64 / 0.875)
