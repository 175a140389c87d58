"""Detection: boxes, each with a label and a score, per image.

A detector's raw output, edgetl's own and an imported YOLOv8/YOLO11 model's alike, is the
Ultralytics layout `[N, 4 + classes, anchors]`: per anchor the box centre x, y, its width
and height in the pixels of the model's input, then one score (a probability) per class.
Decoding keeps, per image, the candidates above a score threshold, suppresses overlapping
boxes of the same class (non-maximum suppression, numpy), and keeps the best `max_det`.
The metric is COCO's: mAP over IoU 0.5:0.95 (the primary figure), mAP at 0.5 and per
class, computed by pycocotools (the official implementation), in input pixels (the same
figures as in the photo's: a letterbox scales every box of an image alike). Two models
agree on an image where their detections match one to one (same label, IoU >= 0.5).
Torch-free.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, BackendUnavailable
from edgetl.task.registry import AnswerCheck, Score, Task, register


# Decoding for the metric keeps every plausible box (COCO's evaluation ranks them by
# score); predict and verify show the confident ones.
@dataclasses.dataclass(frozen=True)
class Decoding:
    min_score: float
    iou: float
    max_det: int


METRIC_DECODING = Decoding(min_score=0.001, iou=0.6, max_det=100)
SHOWN_DECODING = Decoding(min_score=0.25, iou=0.45, max_det=100)
MATCH_IOU = 0.5  # two models' detections are the same object at this IoU or more
CONFIDENT = 0.5  # a detection two models must both see; below it (down to the shown 0.25) either may miss it


@dataclasses.dataclass
class Detections:
    """One image's detections: `boxes` [K, 4] float32 x0, y0, x1, y1; `scores` [K];
    `classes` [K] int64; best first."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` [n, 4] with every box of `b` [m, 4] (x0, y0, x1, y1): [n, m]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou: np.ndarray = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return iou


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, limit: int | None = None) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression within each class, best first (as
    torchvision.ops.batched_nms: boxes of different classes never suppress each other),
    at most `limit`: greedy keeps in score order, so stopping there keeps the same first
    `limit` (at a low score cutoff most anchors are candidates, and a full pass cost
    145 ms per 320-px image)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    shifted = boxes + (classes.astype(np.float64) * (float(boxes.max()) + 1))[:, None]  # classes never overlap
    x0, y0, x1, y1 = shifted.T
    area = (x1 - x0) * (y1 - y0)  # once, not per kept box: box_iou's arithmetic, inlined
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while len(order) and (limit is None or len(keep) < limit):
        best, rest = order[0], order[1:]
        keep.append(best)
        if not len(rest):
            break
        inter = (np.clip(np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]), 0, None)
                 * np.clip(np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]), 0, None))
        union = area[best] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        order = rest[overlap <= iou]
    return np.asarray(keep, np.int64)


def decode(outputs: np.ndarray, min_score: float, iou: float, max_det: int) -> list[Detections]:
    """[N, 4 + C, A] (centre x, y, w, h, then class scores) -> per image its detections,
    the best class of each anchor, above `min_score`, after NMS, at most `max_det`."""
    outputs = np.asarray(outputs, np.float32)
    if outputs.ndim != 3 or outputs.shape[1] < 5:
        raise ArtifactError(f"a detector outputs [N, 4 + classes, anchors]; got {list(outputs.shape)}",
                            hint="import the model with the decoder of its output layout")
    found = []
    for image in outputs:
        cx, cy, w, h = image[:4]
        class_scores = image[4:]
        classes = class_scores.argmax(axis=0)
        scores = class_scores[classes, np.arange(class_scores.shape[1])]
        chosen = np.flatnonzero(scores >= min_score)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)[chosen]
        keep = nms(boxes, scores[chosen], classes[chosen], iou, max_det)
        found.append(Detections(boxes[keep].astype(np.float32), scores[chosen][keep].astype(np.float32),
                                classes[chosen][keep].astype(np.int64)))
    return found


def coco_map(found: Sequence[Detections], truths: Sequence[Any], labels: list[str]) -> dict[str, Any]:
    """COCO mAP (0.5:0.95), mAP@0.5 and each class's AP of detections against true boxes
    (each truth has `boxes` and `classes`), by pycocotools."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise BackendUnavailable("mAP needs pycocotools, which is not installed",
                                 hint="pip install pycocotools") from None
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, (det, truth) in enumerate(zip(found, truths, strict=True)):
        images.append({"id": i + 1})
        for (x0, y0, x1, y1), c in zip(np.asarray(truth.boxes, np.float64).tolist(), np.asarray(truth.classes).tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        for (x0, y0, x1, y1), c, s in zip(det.boxes.astype(np.float64).tolist(), det.classes.tolist(),
                                          det.scores.astype(np.float64).tolist()):
            results.append({"image_id": i + 1, "category_id": int(c) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "score": s})
    empty = {"map": 0.0, "map50": 0.0, "per_class": {c: None for c in labels}, "classes": {}, "pr_curves": {}}
    if not annotations:
        return {**empty, "map": float("nan"), "map50": float("nan")}
    if not results:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports its steps on stdout
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": i + 1, "name": c} for i, c in enumerate(labels)]}
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]  # [IoU thresholds, recall, class, area range, max dets]
    per_class: dict[str, float | None] = {}
    classes: dict[str, dict[str, Any]] = {}
    curves: dict[str, Any] = {"iou": 0.5, "recall": [round(float(r), 2) for r in evaluation.params.recThrs]}
    support = np.bincount([a["category_id"] - 1 for a in annotations], minlength=len(labels))
    for k, c in enumerate(labels):
        values, at50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
        per_class[c] = _mean_of_known(values)
        classes[c] = {"ap": per_class[c], "ap50": _mean_of_known(at50), "support": int(support[k])}
        curves[c] = [round(float(v), 4) for v in at50] if (at50 > -1).any() else None  # no true box: no curve
    return {"map": float(evaluation.stats[0]), "map50": float(evaluation.stats[1]), "per_class": per_class,
            "classes": classes, "pr_curves": curves}


def _mean_of_known(values: np.ndarray) -> float | None:
    """pycocotools' mean over the entries it could compute (-1: a class without true boxes)."""
    return float(values[values > -1].mean()) if (values > -1).any() else None


def _pairs(a: Detections, b: Detections, strict: bool = True) -> list[tuple[int, int]] | None:
    """Each of `a`'s detections with its own in `b` (same label, IoU >= 0.5, best first);
    when one of them has none: None if `strict`, else the pairs of the others."""
    if not len(a) or not len(b):
        return [] if not len(a) or not strict else None
    iou = box_iou(a.boxes, b.boxes) * (a.classes[:, None] == b.classes[None, :])
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for i, row in enumerate(iou):  # a's best first
        candidates = [j for j in np.argsort(-row) if j not in used and row[j] >= MATCH_IOU]
        if not candidates:
            if strict:
                return None
            continue
        used.add(int(candidates[0]))
        pairs.append((i, int(candidates[0])))
    return pairs


def _confident(d: Detections) -> Detections:
    keep = d.scores >= CONFIDENT
    return Detections(d.boxes[keep], d.scores[keep], d.classes[keep])


def matched(a: Detections, b: Detections) -> bool:
    """Whether two models see the same objects in an image: each one's confident detections
    (score >= 0.5) are found among the other's shown ones (>= 0.25), same label, IoU >= 0.5.
    A box whose score moves across the shown threshold (INT8 rounds scores) is no
    disagreement; a confident box lost, moved or relabelled is."""
    return _pairs(_confident(a), b) is not None and _pairs(_confident(b), a) is not None


def _of_objects(objects: list[dict[str, Any]], labels: list[str]) -> Detections:
    """predict's objects (label, score, box in the photo's pixels) as Detections."""
    boxes = np.asarray([o["box"] for o in objects], np.float32).reshape(-1, 4)
    return Detections(boxes, np.asarray([o["score"] for o in objects], np.float32),
                      np.asarray([labels.index(o["label"]) for o in objects], np.int64))


def _to_objects(d: Detections, labels: list[str], place: Callable[[np.ndarray], np.ndarray]) -> list[dict[str, Any]]:
    """Detections as predict shows them: label, score, box in the file's pixels (`place`)."""
    return [{"label": labels[int(c)], "score": round(float(s), 4), "box": [round(float(v), 1) for v in b]}
            for b, s, c in zip(place(d.boxes), d.scores, d.classes)]


def _named(d: Detections, labels: list[str]) -> str:
    return ", ".join(f"{labels[int(c)]} {s:.2f} at [{', '.join(f'{v:.0f}' for v in b)}]"
                     for b, s, c in zip(d.boxes, d.scores, d.classes)) or "none"


class Detection(Task):
    name = "detection"
    metric = "map"
    metric_title = "mAP"
    decodes = True  # NMS on the CPU after every call
    # An image holds several objects, and mAP costs far more than counting answers: on a
    # 320-px detector with 150 val photos, ranking on 50 kept the same 2 layers in float
    # (the same 0.74-pt drop) in 429 s against 806 s on all 150.
    ranking_samples = 50
    head_kind = "detection"
    mistakes_key = "worst_images"
    mistakes_title = "Worst images"
    mistakes_order = "most errors first"
    mistakes_columns = ("missed", "false", "found")

    def output_shape(self, labels: list[str]) -> tuple[int | None, ...]:
        return (4 + len(labels), None)  # box and class scores, per anchor

    def check_labels(self, labels: list[str]) -> None:
        if not labels or len(set(labels)) != len(labels):
            raise ArtifactError(f"a detector needs at least one label, each once, got {labels}",
                                hint="name the classes in the data set (data.yaml names, COCO categories)")

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        found = decode(outputs, **dataclasses.asdict(SHOWN_DECODING))
        result: np.ndarray = np.empty(len(found), dtype=object)
        result[:] = found
        return result

    def score(self, outputs: np.ndarray, truths: Any, labels: list[str]) -> Score:
        """mAP@0.5:0.95 (the figure bounds use); details: map50 and each class's AP."""
        found = decode(outputs, **dataclasses.asdict(METRIC_DECODING))
        figures = coco_map(found, list(truths), labels)
        return Score(self.metric, figures["map"], len(found), {
            "map50": figures["map50"], "per_class": figures["per_class"], "classes": figures["classes"],
            "pr_curves": figures["pr_curves"]})

    def same(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        same: np.ndarray = np.asarray([matched(x, y) for x, y in zip(a, b, strict=True)], bool)
        return same

    def top(self, outputs: np.ndarray, labels: list[str], k: int) -> list[list[tuple[str, float]]]:
        return [[(labels[int(c)], float(s)) for c, s in zip(d.classes[:k], d.scores[:k])]
                for d in self.predictions(outputs)]

    def shown(self, outputs: np.ndarray, labels: list[str], k: int,
              to_photo: Sequence[Callable[[np.ndarray], np.ndarray]]) -> list[dict[str, Any]]:
        """Every object shown (score >= 0.25, whatever `k`), best first: label, score and
        box [x0, y0, x1, y1] in the pixels of the file itself (`to_photo` undoes the letterbox)."""
        shown = []
        for found, place in zip(self.predictions(outputs), to_photo, strict=True):
            objects = _to_objects(found, labels, place)
            shown.append({"labels": [o["label"] for o in objects], "scores": [o["score"] for o in objects],
                          "objects": objects})
        return shown

    def mistakes(self, outputs: np.ndarray, truths: Any, labels: list[str], files: Sequence[Any],
                 to_photo: Sequence[Callable[[np.ndarray], np.ndarray]], limit: int) -> list[dict[str, Any]]:
        """The images with the most errors first: true objects no shown detection finds
        (`missed`: same label, IoU >= 0.5) and confident detections (>= 0.5) on no true
        object (`false`), then the most confident false detection first; each with the
        shown objects and the true ones, boxes in the file's pixels."""
        found_all = self.predictions(outputs)
        ranked = []
        for i, (found, truth) in enumerate(zip(found_all, truths, strict=True)):
            true = Detections(np.asarray(truth.boxes, np.float32).reshape(-1, 4), np.ones(len(truth.classes), np.float32),
                              np.asarray(truth.classes, np.int64))
            missed = len(true) - len(_pairs(true, found, strict=False) or [])
            confident = _confident(found)
            false_found = set(range(len(confident))) - {a for a, _ in _pairs(confident, true, strict=False) or []}
            if missed or false_found:
                worst_false = max((float(confident.scores[j]) for j in false_found), default=0.0)
                ranked.append((-(missed + len(false_found)), -worst_false, i, missed, len(false_found)))
        worst = []
        for _, _, i, missed, false_count in sorted(ranked)[:limit]:
            found, truth, place = found_all[i], truths[i], to_photo[i]
            worst.append({
                "file": str(files[i]) if i < len(files) else None, "missed": missed, "false": false_count,
                "objects": _to_objects(found, labels, place),
                "truths": [{"label": labels[int(c)], "box": [round(float(v), 1) for v in b]}
                           for b, c in zip(place(np.asarray(truth.boxes, np.float32)), truth.classes)]})
        return worst

    def reference_answer(self, shown: dict[str, Any], labels: list[str]) -> dict[str, Any]:
        return {"objects": shown["objects"]}

    def check_answer(self, expected: dict[str, Any], shown: dict[str, Any], labels: list[str],
                     tolerance: float) -> AnswerCheck:
        """The same objects (each side's confident ones found among the other's shown
        ones, as the parity gate asks), and the scores of the packaged objects found within
        the tolerance."""
        packaged, got = _of_objects(expected["objects"], labels), _of_objects(shown["objects"], labels)
        same = matched(packaged, got)
        diff = max((abs(float(packaged.scores[i] - got.scores[j])) for i, j in _pairs(packaged, got, strict=False)
                    or []), default=0.0)
        if not same:
            return AnswerCheck(same, diff, f"found {_named(_confident(got), labels)}, packaged with "
                                           f"{_named(_confident(packaged), labels)}")
        if diff > tolerance:
            return AnswerCheck(same, diff, f"a score moved by {diff:.4f} (tolerance {tolerance:g})")
        return AnswerCheck(same, diff)


DETECTION = register(Detection())

__all__ = ["DETECTION", "Detection", "Detections", "box_iou", "coco_map", "decode", "matched", "nms"]
