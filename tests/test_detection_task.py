"""The detection task: NMS against torchvision's, decoding the YOLOv8 layout, COCO mAP
(pycocotools) on hand-made cases whose answers follow from COCO's definition, and the
agreement that catches a model whose boxes moved."""
from __future__ import annotations

import numpy as np
import pytest

from edgetl.task.detection import DETECTION, Detections, box_iou, coco_map, decode, matched, nms


class Truth:
    def __init__(self, boxes, classes):
        self.boxes, self.classes = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


def test_nms_keeps_what_torchvision_keeps():
    import torch
    from torchvision.ops import batched_nms

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        xy = rng.uniform(0, 100, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], 1).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        classes = rng.integers(0, 3, n)
        want = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.5).numpy()
        assert nms(boxes, scores, classes, 0.5).tolist() == want.tolist()
        limit = int(rng.integers(1, 5))  # stopping early keeps the same best ones
        assert nms(boxes, scores, classes, 0.5, limit).tolist() == want[:limit].tolist()


def _layout(*anchors):
    """[1, 4 + 2, A] from (cx, cy, w, h, score class 0, score class 1) per anchor."""
    return np.asarray(anchors, np.float32).T[None]


def test_decode_reads_the_yolov8_layout_and_suppresses_duplicates():
    out = _layout((50, 50, 20, 20, 0.9, 0.0),   # an object
                  (51, 50, 20, 20, 0.8, 0.1),   # the same object again: suppressed
                  (51, 50, 20, 20, 0.0, 0.7),   # the same place, another class: kept
                  (10, 10, 4, 4, 0.1, 0.0))     # too unsure: dropped
    found = decode(out, min_score=0.25, iou=0.45, max_det=100)[0]
    assert found.classes.tolist() == [0, 1]
    np.testing.assert_allclose(found.boxes[0], [40, 40, 60, 60])
    np.testing.assert_allclose(found.scores, [0.9, 0.7])
    assert len(decode(out, min_score=0.25, iou=0.45, max_det=1)[0]) == 1


def _det(boxes, scores, classes):
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                      np.asarray(classes, np.int64))


def test_map_follows_cocos_definition():
    labels = ["a", "b"]
    truth = [Truth([[0, 0, 100, 100]], [0]), Truth([[10, 10, 50, 50]], [1])]
    exact = [_det([[0, 0, 100, 100]], [0.9], [0]), _det([[10, 10, 50, 50]], [0.8], [1])]
    figures = coco_map(exact, truth, labels)
    assert figures["map"] == pytest.approx(1.0) and figures["map50"] == pytest.approx(1.0)
    # a box of IoU 0.62 with its object counts at IoU thresholds 0.50, 0.55 and 0.60 of the ten
    shifted = 100 * (1 - 0.62) / (1 + 0.62)  # width 100 moved by d: IoU = (100 - d) / (100 + d)
    moved = [_det([[shifted, 0, 100 + shifted, 100]], [0.9], [0]), exact[1]]
    assert box_iou(moved[0].boxes, truth[0].boxes)[0, 0] == pytest.approx(0.62, abs=1e-6)
    figures = coco_map(moved, truth, labels)
    assert figures["per_class"]["a"] == pytest.approx(0.3) and figures["per_class"]["b"] == pytest.approx(1.0)
    assert figures["map"] == pytest.approx(0.65) and figures["map50"] == pytest.approx(1.0)
    # a wrong class finds nothing; a less sure false positive after the true one costs nothing
    assert coco_map([_det([[0, 0, 100, 100]], [0.9], [1]), exact[1]], truth, labels)["per_class"]["a"] == 0.0
    extra = [_det([[0, 0, 100, 100], [200, 200, 240, 240]], [0.9, 0.3], [0, 0]), exact[1]]
    assert coco_map(extra, truth, labels)["map"] == pytest.approx(1.0)
    # nothing found at all
    assert coco_map([_det([], [], []), _det([], [], [])], truth, labels)["map"] == 0.0


def test_agreement_catches_moved_boxes_and_changed_labels():
    a = _det([[0, 0, 40, 40], [50, 50, 90, 90]], [0.9, 0.8], [0, 1])
    assert matched(a, _det([[1, 0, 41, 40], [50, 51, 90, 91]], [0.7, 0.9], [0, 1]))  # a pixel off: the same objects
    assert not matched(a, _det([[20, 0, 60, 40], [50, 50, 90, 90]], [0.9, 0.8], [0, 1]))  # IoU 0.33: moved
    assert not matched(a, _det([[0, 0, 40, 40], [50, 50, 90, 90]], [0.9, 0.8], [0, 0]))  # another label
    assert not matched(a, _det([[0, 0, 40, 40]], [0.9], [0]))  # one lost
    unsure = _det([[0, 0, 40, 40], [50, 50, 90, 90], [100, 0, 120, 20]], [0.9, 0.8, 0.3], [0, 1, 0])
    assert matched(a, unsure) and matched(unsure, a)  # a box near the shown threshold: either may miss it
    assert matched(a, _det([[0, 0, 40, 40], [50, 50, 90, 90]], [0.9, 0.3], [0, 1]))  # less sure, still shown
    out = _layout((20, 20, 40, 40, 0.9, 0.0))
    moved = _layout((40, 20, 40, 40, 0.9, 0.0))
    assert DETECTION.agree(out, out.copy()).tolist() == [True]
    assert DETECTION.agree(out, moved).tolist() == [False]


def test_the_worst_images_come_first_with_their_boxes_in_the_files_pixels():
    """An image found right is not listed; one with a missed object and a confident false
    one (2 errors) comes before one with a missed object only; a false box below 0.5 is no
    error; boxes are mapped into each file's pixels."""
    right = (20, 20, 20, 20, 0.9, 0.0)
    outputs = np.concatenate([
        _layout(right, (80, 80, 20, 20, 0.3, 0.0)),   # right, plus an unsure box on nothing
        _layout(right, (80, 80, 10, 10, 0.0, 0.4)),   # the second object's box too small (IoU 0.25): missed
        _layout((60, 60, 20, 20, 0.0, 0.8), (5, 5, 2, 2, 0.0, 0.0)),  # misses the first, finds class 1 elsewhere
    ])
    truths = [Truth([[10, 10, 30, 30]], [0]), Truth([[10, 10, 30, 30], [70, 70, 90, 90]], [0, 1]),
              Truth([[10, 10, 30, 30]], [0])]
    doubled = [lambda boxes: np.asarray(boxes) * 2] * 3
    worst = DETECTION.mistakes(outputs, truths, ["a", "b"], ["x.jpg", "y.jpg", "z.jpg"], doubled, limit=10)
    assert [(w["file"], w["missed"], w["false"]) for w in worst] == [("z.jpg", 1, 1), ("y.jpg", 1, 0)]
    assert worst[0]["truths"] == [{"label": "a", "box": [20.0, 20.0, 60.0, 60.0]}]
    assert worst[0]["objects"] == [{"label": "b", "score": 0.8, "box": [100.0, 100.0, 140.0, 140.0]}]
    assert len(DETECTION.mistakes(outputs, truths, ["a", "b"], ["x", "y", "z"], doubled, limit=1)) == 1


def test_precision_recall_curves_follow_the_ranking():
    """One class found exactly (precision 1 at every recall); another whose first-ranked
    detection is false and second true (precision 0.5 up to its only recall, 1.0)."""
    labels = ["a", "b"]
    truth = [Truth([[0, 0, 100, 100], [0, 0, 40, 40]], [0, 1])]
    found = [_det([[0, 0, 100, 100], [60, 60, 99, 99], [0, 0, 40, 40]], [0.9, 0.8, 0.7], [0, 1, 1])]
    figures = coco_map(found, truth, labels)
    curves = figures["pr_curves"]
    assert curves["iou"] == 0.5 and len(curves["recall"]) == 101 and curves["recall"][-1] == 1.0
    assert curves["a"] == [1.0] * 101
    assert curves["b"] == [0.5] * 101  # COCO interpolates: the best precision at this recall or beyond
    assert figures["classes"]["b"] == {"ap": pytest.approx(0.5), "ap50": pytest.approx(0.5), "support": 1}
