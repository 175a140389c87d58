"""Detectors: the exported layout decodes as torchvision's FCOS does, augmentation keeps
boxes on their objects, and a detector trains on the built-in scenes, exports behind the
parity gate and evaluates (mAP) on ONNX Runtime and OpenVINO as in PyTorch."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgetl.cli import cli


def test_the_exported_layout_decodes_as_torchvision_fcos():
    from torchvision.models.detection.image_list import ImageList

    from edgetl.finetune.detector import Detector, build_pyramid

    torch.manual_seed(0)
    det = Detector(build_pyramid("efficientnet_lite0", "none"), 3, 96).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        mine = det(x)
        features = list(det.neck(x).values())
        raw = det.head(features)
        anchors = det.fcos.anchor_generator(ImageList(x, [(96, 96)] * 2), features)
    assert mine.shape == (2, 4 + 3, anchors[0].shape[0])
    for i in range(2):
        boxes = det.fcos.box_coder.decode(raw["bbox_regression"][i], anchors[i])
        np.testing.assert_allclose(mine[i, 0], (boxes[:, 0] + boxes[:, 2]) / 2, atol=1e-5)
        np.testing.assert_allclose(mine[i, 2], boxes[:, 2] - boxes[:, 0], atol=1e-5)
        np.testing.assert_allclose(mine[i, 3], boxes[:, 3] - boxes[:, 1], atol=1e-5)
        scores = torch.sqrt(torch.sigmoid(raw["cls_logits"][i]) * torch.sigmoid(raw["bbox_ctrness"][i]))
        np.testing.assert_allclose(mine[i, 4:].T, scores, atol=1e-6)


def test_augmentation_keeps_boxes_on_their_objects():
    """A red square, flipped, scaled, shifted and recoloured: its box follows it."""
    from edgetl.data.detection import Boxes
    from edgetl.finetune.detect import _augment, _batch
    from edgetl.modality.image import ImagePreprocessing

    pre = ImagePreprocessing(size=(96, 96), resize=96, crop="letterbox", mean=(0, 0, 0), std=(1, 1, 1))
    image = np.zeros((1, 96, 96, 3), np.uint8)
    image[0, 20:50, 10:30] = (255, 0, 0)
    truths = [Boxes(np.asarray([[10, 20, 30, 50]], np.float32), np.asarray([1]))]
    torch.manual_seed(0)
    moved = 0
    for _ in range(20):
        x, targets = _batch(image, truths, [0], pre, _augment(hflip=True), "cpu")
        red = (x[0, 0] - x[0, 1:].max(0).values > 0.3).numpy()  # still the reddest pixels after colour jitter
        ys, xs = np.nonzero(red)
        seen = np.asarray([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        box = targets[0]["boxes"][0].numpy()
        np.testing.assert_allclose(box, seen, atol=2.0)
        assert targets[0]["labels"].tolist() == [1]
        moved += not np.allclose(box, [10, 20, 30, 50], atol=1)
    assert moved >= 10  # the augmentation did move it


def test_a_detector_keeps_an_average_of_about_its_last_epochs_weights():
    import torch

    from edgetl.finetune.detect import _averaged

    model = torch.nn.Linear(2, 1)
    ema = _averaged(model, steps_per_epoch=20)
    for step in range(400):  # weights that move steadily: step 0, 1, 2, ...
        with torch.no_grad():
            model.weight.fill_(float(step))
        ema.update_parameters(model)
    kept = float(ema.module.weight.detach()[0, 0])
    assert 399 - 25 <= kept <= 399 - 10  # about an epoch's steps behind the last step, not its weights
    assert float(model.weight.detach()[0, 0]) == 399  # the trained model itself is untouched


@pytest.fixture(scope="module")
def detector_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("detector")
    data = root / "scenes"
    made = CliRunner().invoke(cli, ["-q", "data", "digit-scenes", str(data), "--images", "48", "--size", "96",
                                    "--classes", "2", "--max-objects", "2"])
    assert made.exit_code == 0, made.output
    run = root / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("edgetl.finetune.detect.ESTIMATE_WORTH_IT", 0)  # said for this small run too
        result = CliRunner().invoke(cli, ["finetune", str(data), "--backbone", "efficientnet_lite0", "--strategy",
                                          "linear-probe", "--epochs", "2", "--batch-size", "8", "--lr", "3e-3",
                                          "--input-size", "96", "--threads", "2", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "val mAP" in result.output and "YOLO (Ultralytics layout), 2 classes" in result.output
    estimate = next(line for line in result.output.splitlines() if line.startswith("estimated here:"))
    assert estimate.startswith("estimated here: linear-probe (2 epochs, ") and "full" in estimate
    assert result.output.index("estimated here:") < result.output.index("epoch 1/2")
    return data, run


def test_a_detector_trains_exports_and_evaluates_alike_on_every_backend(detector_run):
    data, run = detector_run
    card = json.loads((run / "edgetl.json").read_text())
    assert card["task"] == "detection" and card["labels"] == ["0", "1"]
    assert card["source"]["detector"]["ema"] is True  # the detector's default
    assert card["metrics"]["estimated_seconds"] > 0  # said before training, kept beside train_seconds
    assert card["preprocessing"]["crop"] == "letterbox" and card["input"]["shape"] == [None, 3, 96, 96]
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 2 and history[-1]["train_loss"] < history[0]["train_loss"]
    exported = CliRunner().invoke(cli, ["export", str(run), "--openvino", "--threads", "1"])
    assert exported.exit_code == 0, exported.output
    for artifact in ("model.onnx", "model.xml"):
        parity = json.loads((run / "edgetl.json").read_text())  # the run's card; the artifact's below
        from edgetl.runtime.artifacts import read_card

        check = read_card(run / artifact).metrics["parity"]
        assert check["passed"] and check["agreement"] == 1.0 and check["rel_max_abs"] < 1e-3, artifact
        result = CliRunner().invoke(cli, ["-q", "evaluate", str(run / artifact), "--data", str(data), "--json",
                                          "--threads", "1"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["task"] == "detection" and set(report["per_class"]) == {"0", "1"}
        assert report["map"] == pytest.approx(parity["metrics"]["val_map"], abs=0.01)
        assert report["map50"] >= report["map"]


def test_predict_gives_boxes_in_the_photos_own_pixels(detector_run, tmp_path):
    """A photo that is not square, letterboxed for the model: the boxes predict reports
    are where the model's boxes fall on the photo itself, and --draw writes it with them."""
    from PIL import Image

    from edgetl.modality import preprocessing_of
    from edgetl.runtime import open_runner
    from edgetl.task.detection import DETECTION

    data, run = detector_run
    scene = sorted((data / "images" / "val").iterdir())[0]
    photo = tmp_path / "wide.png"
    wide = Image.new("RGB", (192, 96), (114, 114, 114))
    wide.paste(Image.open(scene).convert("RGB"), (48, 0))  # the scene in the middle of a wider photo
    wide.save(photo)
    result = CliRunner().invoke(cli, ["-q", "predict", str(run / "model.onnx"), str(photo), "--json",
                                      "--draw", str(tmp_path / "drawn")])
    assert result.exit_code == 0, result.output
    objects = json.loads(result.output)[0]["objects"]
    with open_runner(run / "model.onnx") as runner:
        pre = preprocessing_of(runner.card)
        found = DETECTION.predictions(runner.infer_all(pre(photo)[None], 1))[0]
    assert len(objects) == len(found) > 0
    scale, left, top = pre.letterbox(192, 96)
    for o, box in zip(objects, found.boxes):  # the model's input pixels, back to the photo's
        want = (box - np.asarray([left, top, left, top])) / scale
        np.testing.assert_allclose(o["box"], np.clip(want, 0, [192, 96, 192, 96]), atol=0.06)
    assert (tmp_path / "drawn" / "wide.boxes.png").is_file()


def test_the_report_of_a_detector_draws_its_worst_images_and_pr_curves(detector_run, tmp_path):
    """evaluate --report on photos twice the model's size (YOLO labels are relative, so
    they hold): the worst images' true boxes are the label files' in the photos' pixels,
    each listed image has errors, the page shows the precision-recall curves and the
    drawn images, and report.json holds what --json prints."""
    import shutil

    from PIL import Image

    from edgetl.evaluate.report import SHOWN

    data, run = detector_run
    big = tmp_path / "big"
    shutil.copytree(data, big)
    for photo in (big / "images" / "val").iterdir():
        Image.open(photo).resize((192, 192)).save(photo)
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["-q", "evaluate", str(run), "--data", str(big), "--json",
                                      "--threads", "1", "--report", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert json.loads((out / "report.json").read_text()) == report
    worst = report["worst_images"]
    assert worst and all(w["missed"] + w["false"] > 0 for w in worst)
    errors = [w["missed"] + w["false"] for w in worst]
    assert errors == sorted(errors, reverse=True)
    for w in worst:
        lines = (big / "labels" / "val" / (Path(w["file"]).stem + ".txt")).read_text().split()
        rows = np.asarray(lines, float).reshape(-1, 5)
        want = np.stack([rows[:, 1] - rows[:, 3] / 2, rows[:, 2] - rows[:, 4] / 2,
                         rows[:, 1] + rows[:, 3] / 2, rows[:, 2] + rows[:, 4] / 2], 1) * 192
        np.testing.assert_allclose([t["box"] for t in w["truths"]], want, atol=0.6)
    assert set(report["classes"]["0"]) == {"ap", "ap50", "support"} and set(report["pr_curves"]) >= {"recall", "0"}
    page = (out / "index.html").read_text()
    assert 'src="pr_curves.png"' in page and "confusion.png" not in page and "Worst images" in page
    assert page.count('<img src="files/') == min(len(worst), SHOWN)
    assert (out / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = np.asarray(Image.open(out / "files" / "0000.png").convert("RGB")).astype(int)
    green = (drawn[..., 1] > 150) & (drawn[..., 0] < 60) & (drawn[..., 2] < 120)
    assert green.sum() > 50  # the true boxes are drawn


INT8_FILES = {"openvino": "model.int8.xml", "onnxruntime": "model.int8.onnx", "tensorrt": "model.qdq.onnx"}


@pytest.mark.parametrize("target", ["openvino", "onnxruntime", "tensorrt"])
def test_int8_of_a_detector_holds_its_map_bound(detector_run, target, tmp_path):
    """INT8 for every target, calibrated on the training photos and bounded in mAP points
    on the val split (NNCF's accuracy control with the detection metric; the QDQ budget);
    TensorRT's QDQ model keeps the structure rules (the FCOS head's group norms stay float
    InstanceNormalization between quantized convolutions) and is scored in ONNX Runtime."""
    import shutil

    from edgetl.runtime.artifacts import read_card

    data, run = detector_run
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    if not (folder / "model.onnx").is_file():
        assert CliRunner().invoke(cli, ["-q", "export", str(folder), "--threads", "1"]).exit_code == 0
    result = CliRunner().invoke(cli, ["quantize", str(folder / "model.onnx"), "--target", target,
                                      "--max-drop", "0.05", "--samples", "24", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "FP32 mAP" in result.output and "same objects" in result.output  # the table heads the task's figures
    int8 = read_card(folder / INT8_FILES[target])
    assert int8.precision == "int8" and int8.task == "detection"
    assert int8.metrics["accuracy_drop"] <= 0.05 + 1e-9
    assert int8.metrics["fp32_accuracy"] == pytest.approx(json.loads((run / "edgetl.json").read_text())["metrics"]
                                                          ["val_map"], abs=0.01)
    if target == "tensorrt":
        import onnx

        from edgetl.quantize.qdq_rules import tensorrt_qdq_violations

        model = onnx.load(str(folder / INT8_FILES[target]))
        assert tensorrt_qdq_violations(model, set(int8.source["quantization"].get("float_layers") or [])) == []
        assert "InstanceNormalization" in {n.op_type for n in model.graph.node}
    evaluated = CliRunner().invoke(cli, ["-q", "evaluate", str(folder / INT8_FILES[target]), "--data", str(data),
                                         "--json", "--threads", "1"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["map"] == pytest.approx(int8.metrics["accuracy"], abs=1e-6)


def test_a_detector_bundle_verifies_on_the_device_and_catches_moved_boxes(detector_run, tmp_path):
    """package -> verify for a detector: the reference photos carry their packaged objects
    and true boxes; the torch-free install verifies and predicts boxes; bench on the bundle
    scores mAP on its reference photos and times decoding apart; a packaged box moved by
    half its width is a failed check naming the objects."""
    import shutil
    import subprocess
    from pathlib import Path

    from edgetl.runtime.bundle import sha256

    data, trained = detector_run
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    bundle = tmp_path / "scenes-bundle"
    packaged = CliRunner().invoke(cli, ["-q", "package", str(run), "--targets", "onnxruntime,openvino",
                                        "--samples", "4", "--threads", "1", "--out", str(bundle)])
    assert packaged.exit_code == 0, packaged.output
    expected = json.loads((bundle / "reference" / "expected.json").read_text())
    truths = json.loads((bundle / "reference" / "truths.json").read_text())
    answers = expected["onnxruntime"]["answers"]
    assert len(answers) == 4 and set(truths) == {Path(a["file"]).name for a in answers}
    assert {Path(a["file"]).stem.split("_", 1)[1] for a in answers} == {"0", "1"}  # photos of each class
    assert all(set(a) == {"file", "objects"} for a in answers)
    readme = (bundle / "README.md").read_text()
    assert "| mAP |" in readme and "detector" in readme

    venv = Path(__file__).resolve().parents[1] / ".venv-device"
    if (venv / ".installed").is_file():
        checked = subprocess.run([venv / "bin" / "edgetl", "verify", str(bundle), "--json"], capture_output=True,
                                 text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert json.loads(checked.stdout)[0]["passed"]
        photo = bundle / answers[0]["file"]
        answered = subprocess.run([venv / "bin" / "edgetl", "predict", str(bundle), str(photo), "--json"],
                                  capture_output=True, text=True)
        assert answered.returncode == 0, answered.stderr
        assert json.loads(answered.stdout)[0]["objects"] == answers[0]["objects"]
    checks = json.loads(CliRunner().invoke(cli, ["-q", "verify", str(bundle), "--json"]).output)
    assert {c["target"] for c in checks} == {"onnxruntime", "openvino"} and all(c["passed"] for c in checks)

    measured = CliRunner().invoke(cli, ["-q", "bench", str(bundle), "--iters", "3", "--warmup", "0", "--threads", "1",
                                        "--json"])
    assert measured.exit_code == 0, measured.output
    rows = json.loads(measured.stdout)["rows"]
    assert rows and all(r["metric"] == "map" and r["n"] == 4 and 0 <= r["accuracy"] <= 1 for r in rows), rows
    assert all(r["decode_ms"] is not None and r["decode_ms"] > 0 for r in rows)

    # one packaged object moved right by half its width, and made confident (a short
    # training may have found none over 0.5); the device finds it where it was
    found = [a["objects"][0] for a in answers if a["objects"]] or [{"label": "0", "box": [8.0, 8.0, 40.0, 40.0]}]
    x0, y0, x1, y1 = found[0]["box"]
    found[0].update(score=0.9, box=[x0 + (x1 - x0) / 2, y0, x1 + (x1 - x0) / 2, y1])
    if not answers[0]["objects"] and found[0] not in sum((a["objects"] for a in answers), []):
        answers[0]["objects"].append(found[0])
    (bundle / "reference" / "expected.json").write_text(json.dumps(expected))
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["files"]["reference/expected.json"] = sha256(bundle / "reference" / "expected.json")
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    failed = json.loads(CliRunner().invoke(cli, ["-q", "verify", str(bundle), "--backend", "onnxruntime",
                                                 "--json"]).stdout)
    assert not failed[0]["passed"] and "packaged with" in failed[0]["failures"][0], failed


def test_an_imported_yolov8_layout_detector_scores_as_the_trained_one(detector_run, tmp_path):
    """A detector written here in Ultralytics' export convention (0-1 RGB input, output
    N x (4 + classes) x anchors, class names in the ONNX metadata), imported with --task
    detection and nothing else: names from the metadata, letterbox and 0-1 pixels assumed
    and said; evaluated, it scores the mAP of the trained model inside it, and INT8 holds
    its bound like a trained one's."""
    import onnx

    from edgetl.finetune.run import load_run

    data, run = detector_run
    trained, card = load_run(run)

    class Ultralytics(torch.nn.Module):  # its normalisation inside, as YOLO exports take 0-1 pixels
        def __init__(self):
            super().__init__()
            self.inner = trained

        def forward(self, x):
            return self.inner((x * 255 - 127) / 128)

    size = card.input["shape"][-1]
    path = tmp_path / "yolo.onnx"
    torch.onnx.export(Ultralytics().eval(), (torch.rand(1, 3, size, size),), str(path), input_names=["images"],
                      output_names=["output0"], dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
                      opset_version=18, dynamo=False)
    model = onnx.load(str(path))
    for key, value in (("names", "{0: '0', 1: '1'}"), ("imgsz", f"[{size}, {size}]"), ("task", "detect")):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))

    out = tmp_path / "imported"
    done = CliRunner().invoke(cli, ["import", str(path), "--task", "detection", "--data", str(data), "--threads", "1",
                                    "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "class names from the model's metadata: 0, 1" in done.output
    assert "assumed: 0-1 pixels" in done.output and "assumed: photos letterboxed" in done.output
    imported = json.loads((out / "edgetl.json").read_text())
    assert imported["task"] == "detection" and imported["preprocessing"]["crop"] == "letterbox"
    assert imported["metrics"]["val_map"] == pytest.approx(card.metrics["val_map"], abs=0.01)
    evaluated = CliRunner().invoke(cli, ["-q", "evaluate", str(out / "model.onnx"), "--data", str(data), "--json",
                                         "--threads", "1"])
    assert json.loads(evaluated.output)["map"] == pytest.approx(card.metrics["val_map"], abs=0.01)
    quantized = CliRunner().invoke(cli, ["-q", "quantize", str(out / "model.onnx"), "--target", "onnxruntime",
                                         "--max-drop", "0.05", "--samples", "24", "--threads", "1"])
    assert quantized.exit_code == 0, quantized.output
    from edgetl.runtime.artifacts import read_card

    assert read_card(out / "model.int8.onnx").metrics["accuracy_drop"] <= 0.05 + 1e-9

    wrong = CliRunner().invoke(cli, ["import", str(path), "--task", "detection", "--labels", "a,b,c",
                                     "--out", str(tmp_path / "wrong")])
    assert wrong.exit_code == 2 and "3 labels need 7 x anchors" in wrong.output, wrong.output
    assert not (tmp_path / "wrong").exists()
