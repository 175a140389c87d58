"""The settings of the built-in data sets (`edgetl data digits|keywords`, a recipe's
`data: {digits: ...}` or `{keywords: ...}`, `edgetl.make_digits` and `edgetl.make_keywords`):
one default each, light to import."""
from __future__ import annotations

import dataclasses

from edgetl.core.errors import ConfigError
from edgetl.core.settings import Settings, setting

DIGIT_DOMAINS = ("textured", "blurred")  # data/domains.py
KEYWORD_DOMAINS = ("room", "phone")
DEFAULT_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


@dataclasses.dataclass(frozen=True)
class DigitsSettings(Settings):
    """scikit-learn's real handwritten digits (1,797 images, 10 classes) as a folder data set."""

    size: int = setting(64, "Image side in pixels.", min=8, max=1024, example="64")
    seed: int = setting(0, "Seed of the stratified train/val/test split.", min=0, max=2**32 - 1, example="0")
    domain: str | None = setting(None, "The same digits and split in a shifted domain: textured (over real photos, a "
                                 "strong shift) or blurred (blur, low contrast, noise, a mild one).",
                                 choices=DIGIT_DOMAINS)


@dataclasses.dataclass(frozen=True)
class DigitScenesSettings(Settings):
    """Real handwritten digits placed on real photos, several per image, with their boxes:
    a detection set in the YOLO (Ultralytics) layout."""

    images: int = setting(300, "Images in all (70% train, 15% val, 15% test).", min=10, max=100_000, example="300")
    size: int = setting(320, "Image side in pixels.", min=64, max=2048, example="320")
    classes: int = setting(3, "Digit classes, from 0 up.", min=1, max=10, example="3")
    max_objects: int = setting(4, "Objects per image, from 1 up to this.", min=1, max=20, example="4")
    held_out: int | None = setting(None, "Images in each of val and test (default: 15% of --images each); the rest "
                                   "train. More test images tell two detectors apart more finely.", min=1,
                                   example="150")
    seed: int = setting(0, "Seed of the scenes and of the digits' split.", min=0, max=2**32 - 1, example="0")

    def validate(self) -> None:
        if self.held_out is not None and 2 * self.held_out >= self.images:
            raise ConfigError(f"--held-out {self.held_out} does not fit {self.images} images: val and test take that "
                              "many each and training needs the rest", hint=f"e.g. --images {3 * self.held_out}")


@dataclasses.dataclass(frozen=True)
class KeywordsSettings(Settings):
    """Spoken keywords synthesized with espeak-ng, split by voice."""

    words: tuple[str, ...] = setting(DEFAULT_WORDS, "Comma-separated keywords, one class each.")
    unknown: bool = setting(False, "Add an _unknown_ class of other words and of running speech without keywords.")
    voices: int = setting(80, "How many espeak-ng voices (accent+variant); split by voice into train/val/test.",
                          example="80")
    takes: int = setting(1, "Renderings of each word per voice (random speed and pitch).", example="1")
    held_out_voices: int | None = setting(None, "Voices for each of val and test (default: 15% of --voices each); the "
                                          "rest train. More training voices, not more takes, are what a detector "
                                          "needs for unseen speakers.")
    stream_minutes: float = setting(0.0, "Also write OUT/_streams_/{val,test}.wav: MINUTES each of other speech and "
                                    "noise with the keywords at known times (for evaluate --stream).",
                                    example="10")
    domain: str | None = setting(None, "Every clip in a shifted acoustic condition: room (a far microphone in a "
                                 "simulated reverberant room, a strong shift) or phone (an 8 kHz phone line's band, a "
                                 "mild one). Clips only, not --stream.", choices=KEYWORD_DOMAINS)
    seed: int = setting(0, "Seed of voices, speeds, pitches, noise and split.", min=0, max=2**32 - 1, example="0")

    def __post_init__(self):
        words = tuple(w.strip().lower() for w in self.words if w.strip())
        object.__setattr__(self, "words", words)

    def validate(self) -> None:
        words, voices, held_out = self.words, self.voices, self.held_out_voices
        if len(set(words)) < 2:
            raise ConfigError(f"--words needs at least two different words, got {','.join(words) or 'none'}",
                              hint="e.g. --words yes,no,up,down")
        if any(not w.replace("'", "").replace(" ", "").isalpha() for w in words):
            raise ConfigError(f"--words takes words of letters, got {','.join(words)}", hint="e.g. --words yes,no")
        if voices < 3:
            raise ConfigError(f"--voices must be at least 3 (train, val and test each need a voice), got {voices}",
                              hint="e.g. --voices 80")
        if held_out is not None and not 1 <= held_out <= (voices - 1) // 2:
            raise ConfigError(f"--held-out-voices {held_out} does not fit {voices} voices: val and test take "
                              "that many each and training needs at least one",
                              hint="at least 1 each for val and test" if held_out < 1 else
                              f"e.g. --voices {2 * held_out + 28}")
        if self.takes < 1:
            raise ConfigError(f"--takes must be at least 1, got {self.takes}", hint="e.g. --takes 1")
        minutes = self.stream_minutes
        if not minutes == minutes or minutes < 0 or 0 < minutes < 0.5 or minutes == float("inf"):
            raise ConfigError(f"--stream-minutes takes the minutes of each recording, at least 0.5, got {minutes:g}",
                              hint="e.g. --stream-minutes 10 (60 for a benchmark)")


__all__ = ["DEFAULT_WORDS", "DIGIT_DOMAINS", "KEYWORD_DOMAINS", "DigitsSettings", "KeywordsSettings"]
