"""A run directory: model.pt (state dict), edgetl.json (card), history.json, curves.png."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from edgetl.backbones.stages import safe_load
from edgetl.core.card import CARD_FILENAME, ModelCard
from edgetl.core.errors import ArtifactError
from edgetl.core.outputs import check_output, publish, temp_dir_beside
from edgetl.finetune.model import Classifier

CHECKPOINT = "model.pt"
HISTORY = "history.json"
CURVES = "curves.png"


def load_run(path: str | os.PathLike, map_location: str = "cpu") -> tuple[Classifier, ModelCard]:
    """Rebuild the fine-tuned model of a run directory (eval mode)."""
    from edgetl.backbones import build_backbone

    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not a run directory", hint="pass the --out folder of `edgetl finetune`")
    card = ModelCard.load(path)
    ckpt = path / CHECKPOINT
    if not ckpt.is_file() and card.source.get("imported"):
        raise ArtifactError(f"{path} holds an imported model, which has no PyTorch checkpoint to export or train",
                            hint=f"it is exported already: pass {path / 'model.onnx'} (or the folder) to the command")
    if not ckpt.is_file():
        raise ArtifactError(f"{path} has no checkpoint ({CHECKPOINT})", hint="the run may have been interrupted; train again")
    if not isinstance(card.source.get("backbone"), str):
        raise ArtifactError(f"{path / CARD_FILENAME} does not name the run's backbone (source.backbone)",
                            hint="the card was damaged: train the run again, or pass its exported model.onnx")
    if card.task == "detection":
        from edgetl.finetune.detector import load_detector

        return load_detector(path, card), card
    backbone = build_backbone(card.source["backbone"], weights="none")
    if card.modality == "audio":  # a run from before the fixed log-mel floor records none: its own floor
        from edgetl.backbones.frontend import set_floor

        set_floor(backbone.features, card.parts.get("floor_db"))
    model = Classifier(backbone.features, backbone.feature_dim, card.num_classes)
    try:
        state = safe_load(ckpt)
    except ValueError as exc:
        raise ArtifactError(f"cannot load {ckpt}: {exc}", hint="the run is damaged: train it again") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # torch lists every mismatching tensor; the first names the problem
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ArtifactError(f"{ckpt} does not fit the {card.source['backbone']} model its card describes: "
                            f"{' '.join(lines[1:3]) or lines[0]}",
                            hint="the checkpoint and edgetl.json come from different runs: train again") from None
    return model.eval(), card


class RunWriter:
    """Collects a run's files in a hidden temporary folder and renames it into place
    only when everything is written, so an interrupted run leaves nothing half-done."""

    def __init__(self, out: str | os.PathLike, overwrite: bool = False, inputs: dict | None = None):
        self.out = check_output(out, "run", overwrite, inputs)
        self.overwrite = overwrite
        self.tmp = temp_dir_beside(self.out)

    def save_model(self, state: dict) -> None:
        torch.save(state, self.tmp / CHECKPOINT)

    def save_history(self, history: list[dict]) -> None:
        (self.tmp / HISTORY).write_text(json.dumps(history, indent=2) + "\n")

    def save_card(self, card: ModelCard) -> None:
        card.save(self.tmp / CARD_FILENAME)

    @property
    def folder(self) -> Path:
        return self.tmp

    def commit(self) -> Path:
        publish({self.tmp: self.out}, "run", self.overwrite)  # exclusive unless --overwrite
        return self.out

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
