"""Detection data: the built-in digit scenes, the three formats people have (YOLO in two
layouts, COCO JSON, Pascal VOC in two layouts) read into the same samples, and bad labels
treated as users expect."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from edgetl.core.errors import DataError
from edgetl.data.detection import open_detection


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det") / "scenes"
    result = CliRunner().invoke(cli, ["data", "digit-scenes", str(out), "--images", "40", "--size", "128"])
    assert result.exit_code == 0, result.output
    assert "YOLO (Ultralytics layout), 3 classes" in result.output
    return out


def _samples(data) -> dict:
    """split -> {image name: (classes, boxes)}"""
    return {split: {p.name: (t.classes.tolist(), t.boxes) for p, t in zip(s.paths, s.targets)}
            for split, s in data.splits.items()}


def test_the_digit_scenes_hold_boxes_on_their_digits(scenes):
    data = open_detection(scenes)
    assert data.classes == ["0", "1", "2"] and set(data.splits) == {"train", "val", "test"}
    assert len(data.splits["train"]) == 28 and len(data.splits["val"]) == 6 and len(data.splits["test"]) == 6
    from PIL import Image

    for path, target, size in zip(data.splits["train"].paths, data.splits["train"].targets, data.splits["train"].sizes):
        assert 1 <= len(target) <= 4 and size == (128, 128)
        b = target.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 128).all() and (b[:, 2] - b[:, 0] >= 4).all()
        pixels = np.asarray(Image.open(path).convert("L"), np.float32)
        for x0, y0, x1, y1 in b.astype(int):  # a digit's strokes differ from the photo around them
            inside = pixels[y0:y1, x0:x1]
            assert inside.std() > 10


def _write_coco(data, root: Path) -> None:
    (root / "annotations").mkdir(parents=True)
    for split, s in data.splits.items():
        (root / "images" / split).mkdir(parents=True)
        images, annotations = [], []
        for i, (path, target, (w, h)) in enumerate(zip(s.paths, s.targets, s.sizes)):
            shutil.copy(path, root / "images" / split / path.name)
            images.append({"id": i + 1, "file_name": path.name, "width": w, "height": h})
            for (x0, y0, x1, y1), c in zip(target.boxes.tolist(), target.classes.tolist()):
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 10 + c,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        categories = [{"id": 10 + i, "name": n} for i, n in enumerate(data.classes)]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def _voc_xml(path: Path, target, size, classes) -> str:
    objects = "".join(f"<object><name>{classes[c]}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                      f"<ymax>{y1}</ymax></bndbox></object>"
                      for (x0, y0, x1, y1), c in zip(target.boxes.tolist(), target.classes.tolist()))
    return (f"<annotation><filename>{path.name}</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")


def _write_voc(data, root: Path, beside: bool) -> None:
    for split, s in data.splits.items():
        ids = []
        for path, target, size in zip(s.paths, s.targets, s.sizes):
            folder = root / split if beside else root / "JPEGImages"
            xml_folder = root / split if beside else root / "Annotations"
            folder.mkdir(parents=True, exist_ok=True)
            xml_folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / path.name)
            (xml_folder / f"{path.stem}.xml").write_text(_voc_xml(path, target, size, data.classes))
            ids.append(path.stem)
        if not beside:
            (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
            (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def _write_roboflow(scenes: Path, root: Path) -> None:
    for split, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
        shutil.copytree(scenes / "images" / split, root / folder / "images")
        shutil.copytree(scenes / "labels" / split, root / folder / "labels")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnc: 3\n"
                                    "names: ['0', '1', '2']\n")


@pytest.mark.parametrize("fmt", ["coco", "voc", "voc-beside", "roboflow"])
def test_the_same_images_in_another_format_give_the_same_samples(fmt, scenes, tmp_path):
    yolo = open_detection(scenes)
    root = tmp_path / fmt
    if fmt == "coco":
        _write_coco(yolo, root)
    elif fmt == "roboflow":
        _write_roboflow(scenes, root)
    else:
        _write_voc(yolo, root, beside=fmt == "voc-beside")
    other = open_detection(root)
    assert other.format.split(" ")[0] == {"coco": "COCO", "voc": "Pascal", "voc-beside": "Pascal",
                                          "roboflow": "YOLO"}[fmt]
    assert other.classes == yolo.classes
    want, got = _samples(yolo), _samples(other)
    assert set(got) == set(want)
    for split in want:
        assert set(got[split]) == set(want[split])
        for name, (classes, boxes) in want[split].items():
            assert got[split][name][0] == classes
            np.testing.assert_allclose(got[split][name][1], boxes, atol=1e-3)


def test_bad_labels_are_clipped_skipped_and_named(scenes, tmp_path, caplog):
    root = tmp_path / "bad"
    shutil.copytree(scenes, root)
    labels = root / "labels" / "train"
    files = sorted(labels.glob("*.txt"))
    files[0].write_text("0 0.95 0.5 0.2 0.2\n")  # half outside: clipped
    files[1].write_text("")  # no objects: a valid negative
    files[2].write_text("7 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n")  # class 7 of 3: skipped, the other kept
    files[3].write_text("1 0.5 zero 0.2 0.2\n2 0.5\n")  # malformed: both skipped
    files[4].unlink()  # no label file: named, kept without objects
    with caplog.at_level(logging.WARNING, logger="edgetl"):
        data = open_detection(root)
    by_name = {p.name: t for p, t in zip(data.splits["train"].paths, data.splits["train"].targets)}
    clipped = by_name[files[0].with_suffix(".jpg").name]
    assert clipped.boxes.tolist() == [[pytest.approx(0.85 * 128), pytest.approx(0.4 * 128), 128.0,
                                       pytest.approx(0.6 * 128)]]
    assert len(by_name[files[1].with_suffix(".jpg").name]) == 0
    assert by_name[files[2].with_suffix(".jpg").name].classes.tolist() == [1]
    assert len(by_name[files[3].with_suffix(".jpg").name]) == 0
    assert len(by_name[files[4].with_suffix(".jpg").name]) == 0
    text = caplog.text
    assert "clipped: 1" in text and "class id beyond the names skipped: 1" in text
    assert f"malformed label lines skipped: 2 ({files[3].name}:1, {files[3].name}:2)" in text
    assert f"images without a label file (kept as images without objects): 1 ({files[4].with_suffix('.jpg').name})" \
        in text
    assert data.problems["boxes outside their image clipped"] == [files[0].name]


def test_a_broken_voc_xml_is_skipped_and_named(scenes, tmp_path, caplog):
    yolo = open_detection(scenes)
    root = tmp_path / "voc"
    _write_voc(yolo, root, beside=False)
    broken = sorted((root / "Annotations").glob("*.xml"))[0]
    broken.write_text("<annotation><object>")
    with caplog.at_level(logging.WARNING, logger="edgetl"):
        data = open_detection(root)
    assert f"malformed XML files skipped: 1 ({broken.name})" in caplog.text
    assert sum(len(s) for s in data.splits.values()) == sum(len(s) for s in yolo.splits.values()) - 1


def test_held_out_images_set_the_val_and_test_sizes(tmp_path):
    out = tmp_path / "scenes"
    result = CliRunner().invoke(cli, ["data", "digit-scenes", str(out), "--images", "20", "--size", "64",
                                      "--held-out", "7"])
    assert result.exit_code == 0, result.output
    assert {k: len(v) for k, v in open_detection(out).splits.items()} == {"train": 6, "val": 7, "test": 7}
    refused = CliRunner().invoke(cli, ["data", "digit-scenes", str(tmp_path / "no"), "--images", "20",
                                       "--held-out", "10"])
    assert refused.exit_code == 2 and "does not fit 20 images" in refused.output and "--images 30" in refused.output
    assert not (tmp_path / "no").exists()


def test_what_is_not_a_detection_set_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_detection(tmp_path / "gone")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a detection data set") as raised:
        open_detection(tmp_path / "empty")
    assert "data.yaml" in raised.value.hint
    (tmp_path / "noyaml").mkdir()
    (tmp_path / "noyaml" / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(DataError, match="no images/train"):
        open_detection(tmp_path / "noyaml")


@pytest.mark.parametrize("crop", ["letterbox", "stretch", "center"])
def test_boxes_follow_the_photo_into_the_model_input_and_back(crop):
    """A red square drawn on a photo lands where boxes_to_input says, for every crop, and
    boxes_to_original brings it back to the photo's pixels."""
    from PIL import Image, ImageDraw

    from edgetl.modality.image import ImagePreprocessing

    pre = ImagePreprocessing(size=(64, 64), resize=72, crop=crop, mean=(0, 0, 0), std=(1, 1, 1))
    photo = Image.new("RGB", (200, 120), (0, 0, 0))
    box = np.asarray([[90, 40, 130, 80]], np.float32)
    ImageDraw.Draw(photo).rectangle([90, 40, 129, 79], fill=(255, 0, 0))
    pixels = pre.resize_crop(photo)
    ys, xs = np.nonzero(pixels[..., 0].astype(int) - pixels[..., 1].astype(int) > 128)
    seen = np.asarray([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    np.testing.assert_allclose(pre.boxes_to_input(box, 200, 120)[0], seen, atol=1.0)
    np.testing.assert_allclose(pre.boxes_to_original(pre.boxes_to_input(box, 200, 120), 200, 120), box, atol=1e-3)


def test_the_letterbox_is_ultralytics():
    """An imported YOLO model was trained on this letterbox: the photo's aspect kept, centred,
    grey (114) around it, the offsets rounded as Ultralytics rounds them."""
    from PIL import Image

    from edgetl.modality.image import ImagePreprocessing

    pre = ImagePreprocessing(size=(320, 320), resize=320, crop="letterbox")
    assert pre.letterbox(640, 480) == (0.5, 0, 40)
    assert pre.letterbox(481, 640) == (0.5, 40, 0)  # (320 - 240.5 -> 240) / 2 - 0.1, rounded
    pixels = pre.resize_crop(Image.new("RGB", (640, 480), (255, 255, 255)))
    assert pixels.shape == (320, 320, 3) and (pixels[:40] == 114).all() and (pixels[40:280] == 255).all()
    assert (pixels[280:] == 114).all()
    assert ImagePreprocessing.from_dict(pre.to_dict()) == pre  # the card keeps it
