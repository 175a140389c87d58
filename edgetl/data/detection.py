"""Detection data sets in the formats people have, recognised by their layout:

- YOLO text labels: the Ultralytics layout (`images/{train,val}` + `labels/{train,val}`)
  and the Roboflow layout (`{train,valid,test}/{images,labels}`), each with a `data.yaml`
  that names the classes. A label line is `class cx cy w h` on the 0-1 scale of the
  image (a polygon `class x1 y1 x2 y2 ...` counts as its bounding box).
- COCO JSON: `annotations/*.json` (the split named in the file name: train, val, test)
  and the images their `file_name`s name.
- Pascal VOC: `Annotations/*.xml` + `JPEGImages/` (splits from `ImageSets/Main/*.txt`),
  or an XML beside each image (split folders optional).

Every reader gives the same thing: per split, the image files and their boxes as float32
`[x0, y0, x1, y1]` in the pixels of the original image with int64 class indices, so the
same images in two formats give the same samples. Bad labels are treated as users expect:
a box outside the image is clipped (and counted), one left with no area dropped (and
counted), an empty label file is an image without objects (a valid negative), a class id
beyond the names or a malformed line or file is skipped and named, and images without a
label file are named (and kept as negatives, as YOLO trainers do). Torch-free.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from edgetl.core.errors import DataError
from edgetl.modality.image import IMAGE_SUFFIXES, photo_size

log = logging.getLogger("edgetl")

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclasses.dataclass
class Boxes:
    """One image's objects: `boxes` [K, 4] float32 x0, y0, x1, y1 in original pixels;
    `classes` [K] int64."""

    boxes: np.ndarray
    classes: np.ndarray

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.classes)


@dataclasses.dataclass
class DetectionSplit:
    name: str
    paths: list[Path]
    targets: list[Boxes]
    sizes: list[tuple[int, int]]  # (width, height) of each image

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def objects(self) -> int:
        return sum(len(t) for t in self.targets)


@dataclasses.dataclass
class DetectionSet:
    root: Path
    format: str  # how the first line of output names it, e.g. "YOLO (Ultralytics layout)"
    classes: list[str]
    splits: dict[str, DetectionSplit]
    problems: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # kind -> what (named in warnings)

    def describe(self) -> str:
        parts = [f"{name} {len(s)} images ({s.objects} boxes)" for name, s in self.splits.items()]
        return f"{self.root}: {self.format}, {len(self.classes)} classes; " + ", ".join(parts)


class _Problems:
    """What was wrong with the labels, by kind, named once in a warning each."""

    def __init__(self):
        self.found: dict[str, list[str]] = {}

    def add(self, kind: str, what: str) -> None:
        self.found.setdefault(kind, []).append(what)

    def warn(self) -> None:
        for kind, items in self.found.items():
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            log.warning("%s: %d (%s)", kind, len(items), shown)


# ------------------------------------------------------------------ recognising a layout

def detect_format(root: Path) -> str:
    """yolo, coco or voc, by what the folder holds; a DataError that says what was looked for."""
    if not root.is_dir():
        raise DataError(f"{root} does not exist" if not root.exists() else f"{root} is not a folder",
                        hint="pass a detection data set folder (YOLO with data.yaml, COCO annotations/*.json, "
                             "or Pascal VOC XML)")
    if (root / "data.yaml").is_file() or (root / "data.yml").is_file():
        return "yolo"
    if (root / "annotations").is_dir() and any((root / "annotations").glob("*.json")):
        return "coco"
    if (root / "Annotations").is_dir() or any(root.rglob("*.xml")):
        return "voc"
    raise DataError(f"{root} is not a detection data set edgetl recognises",
                    hint="YOLO: data.yaml with images/ and labels/; COCO: annotations/*.json; Pascal VOC: "
                         "Annotations/*.xml or an .xml beside each image")


def is_detection_set(root) -> bool:
    """Whether `root` is laid out as a detection data set (not class folders)."""
    try:
        detect_format(Path(root))
    except DataError:
        return False
    return True


def open_detection(root, val_split: float = 0.2, seed: int = 0) -> DetectionSet:
    """The detection data set at `root`, in whichever format it is; a set without a
    validation split gets one (`val_split` of train, seeded)."""
    root = Path(root)
    kind = detect_format(root)
    problems = _Problems()
    data = {"yolo": _read_yolo, "coco": _read_coco, "voc": _read_voc}[kind](root, problems)
    problems.warn()
    data.problems = problems.found
    if "train" not in data.splits:
        raise DataError(f"{root} ({data.format}) has no train split",
                        hint="name the training images' split train (images/train, train/, or instances_train.json)")
    if "val" not in data.splits:
        data.splits["val"] = _split_off(data.splits["train"], val_split, seed)
    if not data.classes:
        raise DataError(f"{root} ({data.format}) names no classes", hint="list them (data.yaml names, COCO categories)")
    if not any(len(t) for t in data.splits["train"].targets):
        raise DataError(f"the train split of {root} holds no boxes", hint="check the label files (or their paths)")
    return data


def _split_off(train: DetectionSplit, fraction: float, seed: int) -> DetectionSplit:
    order = np.random.default_rng(seed).permutation(len(train))
    n = max(1, int(round(len(train) * fraction)))
    val_idx, train_idx = sorted(order[:n]), sorted(order[n:])
    val = DetectionSplit("val", [train.paths[i] for i in val_idx], [train.targets[i] for i in val_idx],
                         [train.sizes[i] for i in val_idx])
    train.paths, train.targets, train.sizes = ([train.paths[i] for i in train_idx],
                                               [train.targets[i] for i in train_idx],
                                               [train.sizes[i] for i in train_idx])
    return val


def _image_size(path: Path, problems: _Problems) -> tuple[int, int] | None:
    """(width, height) from the header (no decoding), with the EXIF orientation applied."""
    try:
        return photo_size(path)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        problems.add("unreadable images skipped", path.name)
        return None


def _clipped(boxes: list[list[float]], classes: list[int], size: tuple[int, int], where: str,
             problems: _Problems) -> Boxes:
    if not boxes:
        return Boxes.empty()
    w, h = size
    b = np.asarray(boxes, np.float64)
    x0, x1 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y0, y1 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    clipped = np.stack([x0.clip(0, w), y0.clip(0, h), x1.clip(0, w), y1.clip(0, h)], 1)
    moved = np.abs(clipped - np.stack([x0, y0, x1, y1], 1)).max(1) > 0.5  # half a pixel: rounding, not an error
    for _ in range(int(moved.sum())):
        problems.add("boxes outside their image clipped", where)
    keep = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    for _ in range(int((~keep).sum())):
        problems.add("boxes without area dropped", where)
    return Boxes(clipped[keep].astype(np.float32), np.asarray(classes, np.int64)[keep])


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


# ------------------------------------------------------------------ YOLO

def _yolo_names(doc: dict, where: Path) -> list[str]:
    names = doc.get("names")
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            ids = []
        if ids != list(range(len(names))):
            raise DataError(f"{where}: names must be numbered 0..{len(names) - 1}", hint="e.g. names: {0: cat, 1: dog}")
        return [str(names[k] if k in names else names[str(k)]) for k in ids]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise DataError(f"{where} names no classes", hint="add names: [cat, dog] (or {0: cat, 1: dog})")


def _read_yolo(root: Path, problems: _Problems) -> DetectionSet:
    import yaml

    path = root / "data.yaml" if (root / "data.yaml").is_file() else root / "data.yml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path} is not readable YAML: {' '.join(str(exc).split())[:200]}",
                        hint="data.yaml lists names (and the train/val image folders)") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path} holds no mapping", hint="data.yaml lists names (and the train/val image folders)")
    classes = _yolo_names(doc, path)
    roboflow = (root / "train" / "images").is_dir()
    layout = "YOLO (Roboflow layout)" if roboflow else "YOLO (Ultralytics layout)"
    splits = {}
    for folder_name, split in SPLIT_NAMES.items():
        images = root / folder_name / "images" if roboflow else root / "images" / folder_name
        if not images.is_dir() or split in splits:
            continue
        labels = images.parent / "labels" if roboflow else root / "labels" / folder_name
        splits[split] = _yolo_split(split, images, labels, len(classes), problems)
    if not splits:
        raise DataError(f"{root}: data.yaml is there but no images/train (Ultralytics) or train/images (Roboflow)",
                        hint="put the images in images/train and images/val, their labels in labels/train and "
                             "labels/val")
    return DetectionSet(root, layout, classes, splits)


def _yolo_split(name: str, images: Path, labels: Path, n_classes: int, problems: _Problems) -> DetectionSplit:
    paths, targets, sizes = [], [], []
    for image in _images_in(images):
        size = _image_size(image, problems)
        if size is None:
            continue
        label = labels / image.relative_to(images).with_suffix(".txt")
        if not label.is_file():
            problems.add("images without a label file (kept as images without objects)", image.name)
            boxes, classes = [], []
        else:
            boxes, classes = _yolo_lines(label, size, n_classes, problems)
        paths.append(image)
        sizes.append(size)
        targets.append(_clipped(boxes, classes, size, label.name, problems))
    return DetectionSplit(name, paths, targets, sizes)


def _yolo_lines(label: Path, size: tuple[int, int], n_classes: int, problems: _Problems):
    w, h = size
    boxes, classes = [], []
    try:
        text = label.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        problems.add("unreadable label files skipped", label.name)
        return boxes, classes
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls, values = int(parts[0]), [float(v) for v in parts[1:]]
        except ValueError:
            problems.add("malformed label lines skipped", f"{label.name}:{number}")
            continue
        if len(values) == 4:
            cx, cy, bw, bh = values
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
        elif len(values) >= 6 and len(values) % 2 == 0:  # a polygon (segmentation labels): its bounding box
            xs, ys = values[0::2], values[1::2]
            box = [min(xs) * w, min(ys) * h, max(xs) * w, max(ys) * h]
        else:
            problems.add("malformed label lines skipped", f"{label.name}:{number}")
            continue
        if not 0 <= cls < n_classes:
            problems.add("labels with a class id beyond the names skipped", f"{label.name}:{number} (class {cls})")
            continue
        if not all(np.isfinite(box)):
            problems.add("malformed label lines skipped", f"{label.name}:{number}")
            continue
        boxes.append(box)
        classes.append(cls)
    return boxes, classes


# ------------------------------------------------------------------ COCO

def _read_coco(root: Path, problems: _Problems) -> DetectionSet:
    files = sorted((root / "annotations").glob("*.json"))
    categories: dict[int, str] = {}
    docs = {}
    for f in files:
        split = next((SPLIT_NAMES[k] for k in sorted(SPLIT_NAMES, key=len, reverse=True) if k in f.stem.lower()), None)
        if split is None:
            continue
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
            cats = {int(c["id"]): str(c["name"]) for c in doc.get("categories", [])}
        except (ValueError, OSError, KeyError, TypeError) as exc:
            raise DataError(f"{f} is not COCO JSON: {exc}", hint="export the annotations again") from None
        categories.update(cats)
        docs[split] = (f, doc)
    if not docs:
        raise DataError(f"{root}/annotations holds no JSON file named for a split (train, val, test)",
                        hint="name them e.g. instances_train.json and instances_val.json")
    ids = sorted(categories)
    index = {cid: i for i, cid in enumerate(ids)}
    splits = {split: _coco_split(split, root, f, doc, index, problems) for split, (f, doc) in docs.items()}
    return DetectionSet(root, "COCO JSON", [categories[i] for i in ids], splits)


def _coco_split(name: str, root: Path, path: Path, doc: dict, index: dict[int, int],
                problems: _Problems) -> DetectionSplit:
    images = {}
    for img in doc.get("images", []):
        try:
            images[int(img["id"])] = img
        except (KeyError, TypeError, ValueError):
            problems.add("malformed COCO images skipped", path.name)
    by_image: dict[int, list] = {i: [] for i in images}
    for ann in doc.get("annotations", []):
        try:
            image_id, cat, (x, y, w, h) = int(ann["image_id"]), int(ann["category_id"]), ann["bbox"]
            box = [float(x), float(y), float(x) + float(w), float(y) + float(h)]
        except (KeyError, TypeError, ValueError):
            problems.add("malformed COCO annotations skipped", f"{path.name} id {ann.get('id')}")
            continue
        if ann.get("iscrowd"):
            problems.add("crowd annotations skipped", f"{path.name} id {ann.get('id')}")
            continue
        if cat not in index or image_id not in by_image:
            problems.add("annotations of unknown categories or images skipped", f"{path.name} id {ann.get('id')}")
            continue
        by_image[image_id].append((box, index[cat]))
    folders = [root / "images" / stem for stem in (name, path.stem.split("_")[-1])] + [root / "images", root]
    paths, targets, sizes = [], [], []
    for image_id, img in sorted(images.items()):
        file = next((f / img.get("file_name", "") for f in folders if (f / img.get("file_name", "")).is_file()), None)
        if file is None:
            problems.add("images named in the annotations but not found", str(img.get("file_name")))
            continue
        size = _image_size(file, problems)
        if size is None:
            continue
        found = by_image[image_id]
        paths.append(file)
        sizes.append(size)
        targets.append(_clipped([b for b, _ in found], [c for _, c in found], size, img.get("file_name", ""), problems))
    return DetectionSplit(name, paths, targets, sizes)


# ------------------------------------------------------------------ Pascal VOC

def _read_voc(root: Path, problems: _Problems) -> DetectionSet:
    if (root / "Annotations").is_dir():
        xmls = sorted((root / "Annotations").glob("*.xml"))
        sets = root / "ImageSets" / "Main"
        named = {}
        for f in sorted(sets.glob("*.txt")) if sets.is_dir() else []:
            if f.stem.lower() in SPLIT_NAMES:
                named[SPLIT_NAMES[f.stem.lower()]] = {line.split()[0] for line in f.read_text().splitlines() if line.strip()}
        groups = {s: [x for x in xmls if x.stem in ids] for s, ids in named.items()} if named else {"train": xmls}
        images_dir = root / "JPEGImages"
        layout = "Pascal VOC (Annotations/ + JPEGImages/)"
    else:
        xmls = sorted(p for p in root.rglob("*.xml") if not p.name.startswith("."))
        groups = {}
        for x in xmls:
            top = x.relative_to(root).parts[0].lower()
            groups.setdefault(SPLIT_NAMES.get(top, "train"), []).append(x)
        images_dir = None
        layout = "Pascal VOC (an XML beside each image)"
    parsed = {split: [(x, _voc_objects(x, problems)) for x in files] for split, files in groups.items()}
    classes = sorted({name for files in parsed.values() for _, objs in files if objs for name, _ in objs[1]})
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, files in parsed.items():
        paths, targets, sizes = [], [], []
        for xml, objs in files:
            if objs is None:
                continue
            filename, found = objs
            candidates = ([images_dir / filename] if images_dir else []) + [xml.with_name(filename)] + \
                [xml.with_suffix(s) for s in (".jpg", ".jpeg", ".png", ".JPG", ".PNG")] + \
                ([images_dir / (xml.stem + ".jpg")] if images_dir else [])
            image = next((c for c in candidates if c.is_file()), None)
            if image is None:
                problems.add("annotations whose image is not found", xml.name)
                continue
            size = _image_size(image, problems)
            if size is None:
                continue
            paths.append(image)
            sizes.append(size)
            targets.append(_clipped([b for _, b in found], [index[n] for n, _ in found], size, xml.name, problems))
        splits[split] = DetectionSplit(split, paths, targets, sizes)
    return DetectionSet(root, layout, classes, splits)


def _voc_objects(xml: Path, problems: _Problems):
    """(image file name, [(class name, box)]) of one VOC XML; None when unreadable."""
    try:
        tree = ET.parse(str(xml)).getroot()
    except (ET.ParseError, OSError):
        problems.add("malformed XML files skipped", xml.name)
        return None
    found = []
    for obj in tree.iter("object"):
        name, box = obj.findtext("name"), obj.find("bndbox")
        try:
            coords = [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
        except (TypeError, ValueError, AttributeError):
            problems.add("malformed XML objects skipped", xml.name)
            continue
        if not name or not name.strip():
            problems.add("malformed XML objects skipped", xml.name)
            continue
        found.append((name.strip(), coords))
    return (tree.findtext("filename") or xml.stem + ".jpg").strip(), found


__all__ = ["Boxes", "DetectionSet", "DetectionSplit", "detect_format", "is_detection_set", "open_detection"]
