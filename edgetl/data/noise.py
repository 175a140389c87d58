"""Background noise: a data set's `_background_noise_` clips (Speech Commands' convention)
or generated coloured noise. Used to augment training clips, to make a `_silence_` class,
and by the synthesized keywords data set. Torch-free."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgetl.core.errors import ConfigError, DataError
from edgetl.modality import summarize
from edgetl.modality.audio import AUDIO_SUFFIXES, BACKGROUND_NOISE, read_audio

log = logging.getLogger("edgetl")
SILENCE = "_silence_"


def noise_files(data) -> list[Path]:
    """The background-noise clips of a data set (DATA/_background_noise_ or DATA/train/_background_noise_)."""
    if data is None:
        return []
    root = Path(data)
    found = []
    for folder in (root / BACKGROUND_NOISE, root / "train" / BACKGROUND_NOISE):
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    return found


def load_noise(files: list[Path], sample_rate: int, min_samples: int) -> np.ndarray | None:
    """The noise clips joined into one bank; unreadable ones are skipped with one warning."""
    parts, bad = [], []
    for f in files:
        try:
            parts.append(read_audio(f, sample_rate, max_seconds=3600))
        except DataError:
            bad.append(f)
    if bad:
        log.warning("skipped %d unreadable background-noise file(s): %s", len(bad), summarize(bad))
    if not parts:
        return None
    bank = np.concatenate(parts)
    return np.tile(bank, int(np.ceil(min_samples / len(bank)))) if len(bank) < min_samples else bank


def colored_noise(kind: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f: equal energy per octave) or brown noise, shaped in the frequency domain; peak 1."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    f = np.maximum(np.arange(len(spectrum)), 1)
    spectrum /= {"white": 1.0, "pink": np.sqrt(f), "brown": f}[kind]
    x = np.fft.irfft(spectrum, samples)
    return (x / np.abs(x).max()).astype(np.float32)


def background_noise(data, sample_rate: int, min_samples: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """(noise bank, where it came from): the data set's noise clips, else a minute of pink noise."""
    files = noise_files(data)
    bank = load_noise(files, sample_rate, min_samples)
    if bank is not None:
        return bank, f"{len(files)} file(s) in {BACKGROUND_NOISE}"
    return colored_noise("pink", max(60 * sample_rate, min_samples), np.random.default_rng(seed)), "pink noise"


def silence_clips(bank: np.ndarray, count: int, window: int, rng: np.random.Generator,
                  part: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """`count` windows of background noise at random levels (-70 to -20 dBFS RMS, as a
    room sounds to a microphone when nobody speaks), cut from the `part` of the bank."""
    lo, hi = int(part[0] * len(bank)), int(part[1] * len(bank))
    if hi - lo <= window:  # too little noise to keep the parts apart
        lo, hi = 0, len(bank)
    segment = bank[lo:hi]
    offsets = rng.integers(0, len(segment) - window, count)
    clips = np.stack([segment[o:o + window] for o in offsets]).astype(np.float32)
    rms = np.sqrt(np.mean(clips ** 2, axis=1, keepdims=True)).clip(min=1e-8)
    level = 10 ** (rng.uniform(-70, -20, (count, 1)) / 20)
    return (clips / rms * level).clip(-1, 1).astype(np.float32)


def wants_silence_class(option: bool | None, modality: str, classes: list[str], data) -> bool:
    """Whether fine-tuning adds a `_silence_` class: as asked, or by default (None) when
    audio data brings background noise and has no such class yet; a keyword spotter
    that never saw a quiet room fires on it."""
    if option is None:
        return modality == "audio" and SILENCE not in classes and bool(noise_files(data))
    if option:
        check_silence_class(modality, classes)
    return option


def check_silence_class(modality: str, classes: list[str]) -> None:
    if modality != "audio":
        raise ConfigError("--silence-class applies to audio data", hint="drop it for images")
    if SILENCE in classes:
        raise ConfigError(f"the data set already has a {SILENCE} class", hint="drop --silence-class")


def add_silence_class(splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str], data, preprocessing,
                      seed: int = 0) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """A `_silence_` class made from background noise, added to each decoded split with as
    many clips as its average class (train and validation cut from different noise), in
    the sorted class order; returns the new splits and classes."""
    bank, _ = background_noise(data, preprocessing.sample_rate, 10 * preprocessing.window, seed)
    new = sorted([*classes, SILENCE])
    remap = np.asarray([new.index(c) for c in classes], np.int64)
    rng = np.random.default_rng(seed)
    parts = {"train": (0.0, 0.8), "val": (0.8, 1.0)}
    out = {}
    for name, (x, y) in splits.items():
        count = max(1, round(len(y) / len(classes)))
        clips = silence_clips(bank, count, preprocessing.window, rng, parts.get(name, (0.0, 1.0)))
        joined = x.with_extra(clips) if hasattr(x, "with_extra") else np.concatenate([x, clips])  # a cached split stays on disk
        out[name] = (joined, np.concatenate([remap[y], np.full(count, new.index(SILENCE))]))
    return out, new
