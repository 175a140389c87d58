import logging
import shutil

import numpy as np
import pytest
from conftest import odd_image_bytes, write_digit_folder
from PIL import Image

from edgetl.core.errors import ConfigError, DataError
from edgetl.data.digits import make_digits
from edgetl.data.folders import open_folder
from edgetl.modality import decode_split
from edgetl.modality.image import ImagePreprocessing


def test_train_val_layout_and_stable_class_order(tiny_digits):
    splits = open_folder(tiny_digits, modality="image")
    assert splits.classes == ["0", "1", "2"]
    assert len(splits["train"]) == 48 and len(splits["val"]) == 24
    assert splits["val"].counts() == {"0": 8, "1": 8, "2": 8}


def test_flat_folder_is_split_stratified(tmp_path):
    root = write_digit_folder(tmp_path / "d", per_split=(("all", 10),))
    splits = open_folder(root / "all", val_split=0.3, seed=1, modality="image")
    assert splits["val"].counts() == {"0": 3, "1": 3, "2": 3}
    assert splits["train"].counts() == {"0": 7, "1": 7, "2": 7}
    assert not set(splits["train"].paths) & set(splits["val"].paths)
    again = open_folder(root / "all", val_split=0.3, seed=1, modality="image")
    assert again["val"].paths == splits["val"].paths


def test_odd_images_are_converted_and_corrupt_ones_skipped_with_one_warning(tmp_path, caplog):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for name, data in odd_image_bytes().items():
            (tmp_path / cls / name).write_bytes(data)
    splits = open_folder(tmp_path, val_split=0.0, modality="image")
    assert len(splits["train"]) == 2 * 11  # every image suffix in any case; notes.txt is not an image
    with caplog.at_level(logging.WARNING, logger="edgetl"):
        pixels, labels = decode_split(splits["train"], ImagePreprocessing(size=(16, 16), resize=16))
    assert pixels.shape == (18, 16, 16, 3) and list(np.bincount(labels)) == [9, 9]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "skipped 4 unreadable" in warnings[0] and "corrupt.jpg" in warnings[0]


def test_a_class_whose_images_are_all_unreadable_is_an_error(tmp_path):
    write_digit_folder(tmp_path, classes=(0, 1), per_split=(("train", 3),))
    bad = tmp_path / "train" / "broken"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"garbage")
    splits = open_folder(tmp_path, val_split=0.0, modality="image")
    with pytest.raises(DataError, match="broken"):
        decode_split(splits["train"], ImagePreprocessing(size=(16, 16), resize=16))


@pytest.mark.parametrize("setup, match", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no class folders"),
    (lambda p: (p / "only").mkdir(parents=True) or Image.new("RGB", (8, 8)).save(p / "only" / "x.png"), "only one class"),
    (lambda p: [(p / c).mkdir(parents=True) for c in ("a", "b")] and Image.new("RGB", (8, 8)).save(p / "a" / "x.png"),
     "no images in"),
])
def test_bad_folders_are_clear_errors(tmp_path, setup, match):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataError, match=match):
        open_folder(root, modality="image")


def test_val_class_unknown_to_train_is_an_error(tmp_path):
    root = write_digit_folder(tmp_path / "d")
    shutil.copytree(root / "val" / "2", root / "val" / "zebra")
    with pytest.raises(DataError, match="zebra"):
        open_folder(root, modality="image")


def test_limit_per_class(tiny_digits):
    few = open_folder(tiny_digits, modality="image")["train"].limit_per_class(5, seed=3)
    assert few.counts() == {"0": 5, "1": 5, "2": 5}


def test_digits_dataset(tmp_path):
    out = make_digits(tmp_path / "digits", size=16)
    splits = open_folder(out, modality="image")
    assert splits.classes == [str(i) for i in range(10)]
    sizes = {name: len(s) for name, s in splits.splits.items()}
    assert sum(sizes.values()) == 1797 and set(sizes) == {"train", "val", "test"}
    counts = splits["val"].counts()
    assert max(counts.values()) - min(counts.values()) <= 2  # stratified
    img = Image.open(splits["train"].paths[0])
    assert img.size == (16, 16) and img.mode == "L"
    with pytest.raises(ConfigError, match="already exists"):  # an edgetl data set: --overwrite replaces it
        make_digits(out, size=16)


@pytest.mark.parametrize("val_name", ["validation", "valid"])
def test_validation_folders_of_other_layouts_are_the_val_split(tmp_path, val_name, caplog):
    """The Keras layout (train/ validation/ test/) and Roboflow's (valid/): read as val/,
    not carved out of train/; a folder edgetl does not read is named, not passed over."""
    root = write_digit_folder(tmp_path / "set", per_split=(("train", 10), (val_name, 4), ("test", 3)))
    (root / "extra" / "0").mkdir(parents=True)
    with caplog.at_level("WARNING", logger="edgetl"):
        splits = open_folder(root, modality="image")
    assert set(splits.splits) == {"train", "val", "test"}
    assert len(splits["train"]) == 30 and len(splits["val"]) == 12  # nothing carved out of train
    assert all(val_name in str(p) for p in splits["val"].paths)
    assert "extra/ beside train/" in caplog.text and f"{val_name}/ beside" not in caplog.text


def test_keyword_voice_counts_get_remedies_that_work(tmp_path, caplog):
    """--held-out-voices 0 names its own floor (not --voices, which cannot fix it)."""
    import pytest

    from edgetl.core.errors import ConfigError
    from edgetl.data.keywords import make_keywords

    with pytest.raises(ConfigError) as err:
        make_keywords(tmp_path / "kw", voices=40, held_out_voices=0)
    assert "--voices" not in err.value.hint and "at least 1" in err.value.hint
