"""The settings of evaluate and evaluate --stream (torch-free, light: the CLI and recipes
read them without loading the evaluation itself)."""
from __future__ import annotations

import dataclasses
import math

from edgetl.core.errors import ConfigError
from edgetl.core.settings import setting
from edgetl.runtime.settings import InferenceSettings

PICKS = ("common", "per-keyword")  # one threshold for every keyword, or one each


@dataclasses.dataclass(frozen=True)
class EvaluateSettings(InferenceSettings):
    split: str = setting("val", "train | val | test")
    batch_size: int = setting(64, "Samples per inference call.", min=1, example="64")
    report: str | None = setting(None, "Also write an HTML report into this folder (index.html; report.json with every "
                                 "figure). A classifier's: per-class precision, recall and F1, top-k accuracy, the "
                                 "confusion matrix, the misclassified files with thumbnails or players; a detector's: "
                                 "per-class AP, precision-recall curves, the worst images with true and found boxes "
                                 "drawn. An earlier report is replaced.", path=True)


@dataclasses.dataclass(frozen=True)
class StreamEvalSettings(InferenceSettings):
    hop_ms: float | None = setting(None, "With --stream: score every this many ms (default: the card's, 100).",
                                   above=0, max=1000, example="100")
    smoothing: int | None = setting(None, "With --stream: hops a keyword's probability is averaged over (card's; 6 "
                                    "unless it says; with --target-fa-per-hour, fixed instead of picked).", min=1,
                                    max=100, example="6")
    refractory_ms: float | None = setting(None, "With --stream: silence after a detection (card's; 500 unless it "
                                          "says; with --target-fa-per-hour, fixed instead of picked).", max=60000,
                                          example="500")
    target_fa_per_hour: float | None = setting(None, "With --stream on a validation recording: pick the threshold, "
                                               "smoothing and refractory period with the fewest false rejects at no "
                                               "more than this many false accepts per hour, and write them into the "
                                               "card.", above=0, example="1")
    pick: str = setting("common", "With --target-fa-per-hour: one threshold for every keyword (the default), or one "
                        "per keyword (which can overfit a validation recording of few voices).", choices=PICKS,
                        flag="--thresholds")
    plot: str | None = setting(None, "With --stream: write the DET curve (PNG).")
    live: bool = setting(False, "With --stream: feed the recording one hop at a time, as a microphone would, so the "
                         "real-time factor is a live device's (by default it is read in blocks of hops: the same "
                         "scores, sooner).")
    share: bool = setting(True, "Score overlapping windows once where the model's parts allow.", cli=False)

    def validate(self) -> None:
        if self.target_fa_per_hour is not None and not math.isfinite(self.target_fa_per_hour):
            raise ConfigError(f"--target-fa-per-hour must be a positive rate, got {self.target_fa_per_hour:g}",
                              hint="e.g. --target-fa-per-hour 1")
