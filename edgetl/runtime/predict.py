"""Predict: the top-k labels of raw files (images or audio clips) through any artifact.

Each file is read and preprocessed by the card's own preprocessing, exactly as in
evaluation, so every backend gives the same answer. An audio file longer than the
model's window is a stream: the keyword detector (runtime/streaming.py) reports each
keyword said in it, with its time. A file that cannot be used gets its own error and
the others are still predicted. Torch-free.
"""
from __future__ import annotations

import dataclasses
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl import modality as modalities
from edgetl.core.errors import ConfigError, DataError
from edgetl.core.progress import progress_bar
from edgetl.runtime.artifacts import read_card
from edgetl.runtime.backends import open_runner
from edgetl.runtime.settings import PredictSettings
from edgetl.runtime.streaming import KeywordDetector, audio_seconds, detect_file
from edgetl.task import task_of

if TYPE_CHECKING:
    from PIL import Image

    from edgetl.runtime.runner import Runner


@dataclasses.dataclass
class Prediction:
    file: str
    labels: list[str]  # best first
    scores: list[float]  # softmax probabilities, same order; for a stream, the detections'
    error: str | None = None
    hint: str | None = None  # the remedy for this file's error
    detections: list[dict[str, Any]] | None = None  # a stream's keywords in order: label, time, score, start
    # a detector's: each object found, best first: label, score, box [x0, y0, x1, y1] in the photo's pixels
    objects: list[dict[str, Any]] | None = None
    real_time_factor: float | None = None  # a stream's: processing time over its length

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_regular(path: Path) -> None:
    """Only regular files are opened: a named pipe would wait forever for a writer."""
    if path.is_dir():
        raise DataError(f"{path} is a folder", hint=f"pass the files in it, e.g. {path}/*")
    if not path.exists():
        raise DataError(f"{path} does not exist", hint="check the path")
    if not stat.S_ISREG(path.stat().st_mode):
        raise DataError(f"{path} is not a regular file (a named pipe, device or socket)",
                        hint="save what it carries to a file and pass that")


def read_input(path: Path, kind: modalities.Modality, preprocessing: modalities.Preprocessing
               ) -> tuple[np.ndarray, tuple[int, int] | None]:
    """One file as the model's cached sample, and an image's (width, height) as decoded;
    DataError says why a file cannot be used."""
    takes = f"{kind.noun}s ({', '.join(sorted(kind.suffixes))})"
    check_regular(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes)", hint=f"re-save or re-record it; this model takes {takes}")
    suffix = path.suffix.lower()
    other = modalities.claiming({suffix}, besides=kind.name)
    if other and suffix not in kind.suffixes:
        raise DataError(f"{path} is an {other.noun} (by its suffix), but this model takes {kind.noun}s",
                        hint=f"pass {takes}")
    try:
        decoded = preprocessing.read(path)
        return preprocessing.prepare(decoded), getattr(decoded, "size", None)
    except DataError:
        if suffix in kind.suffixes:
            raise
        raise DataError(f"{path} is not an {kind.noun} edgetl can read ({suffix or 'no suffix'})",
                        hint=f"this model takes {takes}") from None


def predict(artifact: str | Path, files: Sequence[str | Path], settings: PredictSettings | None = None,
            **options: Any) -> list[Prediction]:
    """Top-k labels and scores of each file, in the order given; unusable files carry an
    error. `settings` (or its fields as keyword options): PredictSettings."""
    s = PredictSettings.of(settings, **options)
    backend, top_k, device, batch, threads = s.backend, s.top_k, s.device, s.batch, s.threads
    if not files:
        raise ConfigError("no files to predict", hint="pass one or more image or audio files after the artifact")
    # each file's length if it may be audio (not an image by its suffix), read once from its header
    seconds = {f: None if modalities.claiming({Path(f).suffix.lower()}, besides="audio") or not Path(f).is_file()
               else audio_seconds(f) for f in files}
    if threads is None and _has_recordings(artifact, seconds):
        # A hop's work is too small to split: a second thread only spins, on a busy CPU
        # it slows the detector down (measured: 3.5x the CPU time with ONNX Runtime's default).
        threads = 1
    with open_runner(artifact, backend=backend, device=device, threads=threads,
                     precision_hint=s.precision_hint) as runner:
        card = runner.card
        kind = modalities.get(card.modality)
        pre = modalities.preprocessing_of(card)
        window = _stream_window(pre)
        results: list[Prediction] = []
        samples: list[np.ndarray] = []
        where: list[int] = []
        sizes: list[tuple[int, int] | None] = []
        for f in files:
            try:
                check_regular(Path(f))  # before anything opens it
                length = seconds[f]
                if window is not None and length is not None and length > window:
                    results.append(_detect(runner, Path(f), length))
                    continue
                sample, size = read_input(Path(f), kind, pre)
                samples.append(sample)
                sizes.append(size)
                where.append(len(results))
                results.append(Prediction(str(f), [], []))
            except DataError as exc:
                results.append(Prediction(str(f), [], [], error=exc.message, hint=exc.hint))
        if samples:
            # The runner checks the output against the card and pads static batches.
            outputs = runner.infer_all(pre.normalize(np.stack(samples)), batch)
            to_photo = [modalities.to_photo(pre, size) for size in sizes]
            for i, shown in zip(where, task_of(card).shown(outputs, card.labels, top_k, to_photo)):
                results[i].labels, results[i].scores = shown["labels"], shown["scores"]
                results[i].objects = shown.get("objects")
    if s.draw:
        for r in results:
            if r.ok and r.objects is not None:
                draw_objects(Path(r.file), r.objects, Path(s.draw))
    return results


def draw_objects(photo: Path, objects: list[dict[str, Any]], folder: Path) -> Path:
    """The photo with its objects' boxes and labels drawn, written into `folder` as
    NAME.boxes.jpg (or .png): never over the photo itself, whatever the folder."""
    import io

    from edgetl.core.atomic import write_atomic
    from edgetl.modality.image import load_image

    image = drawn(load_image(photo), objects)  # as the model saw it: EXIF orientation applied
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (photo.stem + ".boxes" + (".jpg" if photo.suffix.lower() in (".jpg", ".jpeg") else ".png"))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if out.suffix == ".jpg" else "PNG", quality=92)
    return write_atomic(out, buffer.getvalue())


FOUND_COLOUR, TRUE_COLOUR = (255, 32, 32), (0, 200, 60)


def drawn(image: Image.Image, objects: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]] = ()) -> Image.Image:
    """A PIL image with `truths` (label, box) drawn in green under `objects` (label, score,
    box) in red, boxes in the image's pixels."""
    from PIL import ImageDraw

    pen = ImageDraw.Draw(image)
    width = max(2, round(min(image.size) / 200))
    for o in [*truths, *objects]:
        x0, y0, x1, y1 = o["box"]
        colour = FOUND_COLOUR if "score" in o else TRUE_COLOUR
        pen.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        text = f"{o['label']} {o['score']:.2f}" if "score" in o else o["label"]
        pen.text((x0 + width, max(0, y0 - 12) if "score" in o else y1 - 12), text, fill=colour)
    return image


def _stream_window(pre: modalities.Preprocessing) -> float | None:
    """An audio model's window in seconds (a longer recording is a stream of them), None
    for a model that takes no streams."""
    window = getattr(pre, "seconds", None)
    return None if window is None else float(window)


def _has_recordings(artifact: str | Path, seconds: dict[str | Path, float | None]) -> bool:
    """Whether some file is audio (`seconds`: each file's length, None when not audio)
    longer than an audio model's window (a stream)."""
    longest = max((s or 0 for s in seconds.values()), default=0)
    if not longest:  # no audio at all: the model's card is not even read
        return False
    try:
        card = read_card(artifact)
    except Exception:
        return False
    window = _stream_window(modalities.preprocessing_of(card))
    return window is not None and longest > window


def _detect(runner: Runner, path: Path, seconds: float) -> Prediction:
    """The keywords of a recording, with progress over its length when it is long."""
    detector = KeywordDetector(runner)
    with progress_bar() as bar:
        task = bar.add_task(f"listening to {path.name}", total=round(seconds, 1), status="")
        found = detect_file(detector, path, progress=lambda heard: bar.advance(task, heard))
    return Prediction(str(path), [d.label for d in found], [d.score for d in found],
                      detections=[d.to_dict() for d in found], real_time_factor=round(detector.real_time_factor, 5))


def none_predicted(results: list[Prediction]) -> DataError:
    """The error when no file could be predicted: a single file's own error and remedy,
    or for several the remedy they share."""
    if len(results) == 1:
        return DataError(results[0].error or "it could not be predicted", hint=results[0].hint)
    hints = {r.hint for r in results}
    return DataError(f"none of the {len(results)} files could be predicted",
                     hint=hints.pop() if len(hints) == 1 else "each skipped line above names its file and remedy")


__all__ = ["Prediction", "PredictSettings", "draw_objects", "drawn", "none_predicted", "predict"]
