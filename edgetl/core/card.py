"""ModelCard: what travels with every artifact.

A card is plain JSON (never evaluated): labels, modality, input spec, preprocessing,
source (backbone, weights, strategy, data), precision, metrics, streaming settings and the
build fingerprint (versions, machine). It lives in `edgetl.json` beside an artifact and, once
exported, inside ONNX metadata_props / OpenVINO rt_info as the same JSON string.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgetl.core.atomic import write_atomic
from edgetl.core.errors import ArtifactError

CARD_FILENAME = "edgetl.json"
# Bump when a field changes meaning; readers refuse cards from a newer schema.
SCHEMA_VERSION = 1


def build_fingerprint() -> dict[str, Any]:
    """Versions and machine that produced an artifact (only libraries already loaded)."""
    from edgetl._version import __version__

    libs = {}
    for name in ("torch", "torchvision", "timm", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "__version__"):
            libs[name] = str(mod.__version__)
    return {
        "edgetl": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "libraries": libs,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@dataclasses.dataclass
class ModelCard:
    labels: list[str]
    modality: str  # "image" | "audio"
    input: dict[str, Any]  # name, shape (None for dynamic axes), dtype, layout
    preprocessing: dict[str, Any]  # the modality's preprocessing (edgetl.modality), as to_dict writes it
    source: dict[str, Any] = dataclasses.field(default_factory=dict)
    precision: str = "fp32"
    task: str = "classification"
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    # audio: how the streaming keyword detector runs this model (hop, smoothing,
    # thresholds: edgetl.runtime.streaming.StreamingSettings); empty means its defaults
    streaming: dict[str, Any] = dataclasses.field(default_factory=dict)
    # audio: how a model embeds windows of its frames (scope, frames, step; once exported,
    # the tensors between its parts), so streaming can reuse what overlapping windows share
    parts: dict[str, Any] = dataclasses.field(default_factory=dict)
    build: dict[str, Any] = dataclasses.field(default_factory=build_fingerprint)
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "card") -> ModelCard:
        if not isinstance(data, dict):
            raise ArtifactError(f"{where} is not a JSON object", hint="the card was damaged: export the model again")
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            made_by = data.get("build", {}).get("edgetl", "a newer edgetl")
            raise ArtifactError(
                f"{where} uses card schema {version}, written by edgetl {made_by}; this edgetl reads up to {SCHEMA_VERSION}",
                hint="upgrade edgetl (pip install -U edgetl)",
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("labels", "modality", "input", "preprocessing") if k not in data]
        if missing:
            raise ArtifactError(f"{where} lacks the fields {', '.join(missing)}",
                                hint="the card was damaged: export the model again")
        for key, problem in _problems(data):
            raise ArtifactError(f"{where}: {key} {problem}", hint="the card was damaged: export the model again")
        return cls(**{k: v for k, v in data.items() if k in fields})

    @classmethod
    def from_json(cls, text: str, where: str = "card") -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{where} is not valid JSON: {exc}",
                                hint="the card was damaged: export the model again") from None
        return cls.from_dict(data, where)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically: a temporary name, then rename."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILENAME
        return write_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelCard:
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILENAME
        if not path.is_file():
            raise ArtifactError(f"no model card at {path}", hint="pass a run directory made by `edgetl finetune`")
        return cls.from_json(path.read_text(), where=str(path))


_OBJECTS = ("input", "preprocessing", "source", "metrics", "streaming", "parts", "build")
PRECISIONS = ("fp32", "fp16", "int8")


def _problems(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, what is wrong) for each field of a card's JSON whose type is not the card's:
    a card another tool or version wrote is named by its field, never used half-read."""
    labels = data["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        yield "labels", f"must be a list of names, got {_short(labels)}"
    for key in ("modality", "task"):
        if key in data and not (isinstance(data[key], str) and data[key]):
            yield key, f"must be a name, got {_short(data[key])}"
    if "precision" in data and data["precision"] not in PRECISIONS:
        yield "precision", f"must be one of {', '.join(PRECISIONS)}, got {_short(data['precision'])}"
    for key in _OBJECTS:
        if key in data and not isinstance(data[key], dict):
            yield key, f"must be an object, got {_short(data[key])}"
    shape = data["input"].get("shape") if isinstance(data["input"], dict) else None
    if shape is not None and not (isinstance(shape, list) and all(d is None or (isinstance(d, int) and d > 0)
                                                                  for d in shape)):
        yield "input.shape", f"must be a list of sizes (null where open), got {_short(shape)}"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def run_card(*, labels: list[str], preprocessing: Any, backbone_name: str, backbone: Any, settings: dict[str, Any],
             data: Any, train_labels: Any, history: list[dict[str, Any]], best_epoch: int, device: str, world_size: int,
             train_seconds: float, compute: dict[str, Any] | None = None, adaptation: dict[str, Any] | None = None,
             task: str = "classification", estimated_seconds: float | None = None) -> ModelCard:
    """The card of a fine-tuning run: what it takes (the preprocessing, which names its
    modality), where it came from (backbone, settings, data, counts, device) and what it
    reached (the kept epoch's figures; an adapted run's final validation accuracy), in how
    long, against the estimate said before training (None where none was made)."""
    best = history[best_epoch - 1]
    val_accuracy = adaptation["final"]["val_accuracy"] if adaptation else best["val_accuracy"]
    counts = {c: int((train_labels == i).sum()) for i, c in enumerate(labels)}  # as decoded
    return ModelCard(
        labels=list(labels), modality=preprocessing.kind, task=task, input=preprocessing.input_spec(),
        preprocessing=preprocessing.to_dict(), streaming=dict(backbone.streaming), parts=dict(backbone.parts),
        source={"backbone": backbone_name, "weights": backbone.weights, "strategy": settings["strategy"],
                "stages": len(backbone.stages), "trained_stages": max(h["trainable_stages"] for h in history),
                "data": str(Path(data).resolve()), "train_counts": counts, "config": settings, "device": device,
                "compute": compute or {}, "world_size": world_size, **({"adaptation": adaptation} if adaptation else {})},
        metrics={"val_accuracy": val_accuracy, "val_loss": best["val_loss"], "train_accuracy": best["train_accuracy"],
                 "best_epoch": best_epoch, "epochs_run": len(history), "train_seconds": train_seconds,
                 "estimated_seconds": estimated_seconds},
    )
