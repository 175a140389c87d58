"""The audio modality: reading any common audio file, and the preprocessing recorded in
a ModelCard, in numpy, soundfile and soxr only.

Every file becomes a mono float waveform in [-1, 1] at the card's sample rate (16 kHz by
default), resampled by soxr (a real anti-aliasing resampler, on the device too), then
one window of the model's length: a shorter clip is centred in silence, a longer one
gives its loudest window. The features (log-mel) are computed inside the exported model,
so the device computes exactly what the model was trained on. Torch-free.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ConfigError, DataError
from edgetl.core.settings import Settings, setting
from edgetl.modality.registry import Modality, dummy_input, invalid_preprocessing, register

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"})
# Speech Commands' convention: the noise used for augmentation, not a class.
BACKGROUND_NOISE = "_background_noise_"
# Long recordings with keywords at known times (edgetl.data.streams), not a class either.
STREAMS = "_streams_"
# Below this peak a clip holds no sound worth learning from (about -80 dBFS).
SILENT_PEAK = 1e-4
# Longer files are refused as clips: hours of audio decoded in full would exhaust memory.
MAX_CLIP_SECONDS = 600.0
# Sample rates a real recording has (telephone 8 kHz is the lowest in use); a header that
# declares 1 Hz would make a 50-sample file a 50 s recording.
SAMPLE_RATES = (4000, 768000)
_REMEDY = "re-save it as a 16-bit WAV (e.g. `ffmpeg -i IN -ac 1 -ar 16000 OUT.wav`), or remove it"


def audio_info(path: str | Path) -> Any:
    """soundfile's info on `path`; an unreadable file is a DataError that says so."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist" if not path.exists() else f"{path} is not a regular file",
                        hint="check the path of the audio file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        raise _unreadable(path, exc) from None
    low, high = SAMPLE_RATES
    if not low <= info.samplerate <= high:
        raise DataError(f"audio file {path} declares a sample rate of {info.samplerate} Hz; edgetl reads {low:,} to "
                        f"{high:,} Hz", hint=f"its header is wrong, or it is not a recording: {_REMEDY}")
    return info


def _unreadable(path: str | Path, exc: BaseException) -> DataError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataError(f"cannot read audio {path}: {reason}", hint=_REMEDY)


def _mono(block: np.ndarray, path: str | Path) -> np.ndarray:
    """Frames x channels -> mono; NaN or infinite samples are a DataError."""
    if not np.isfinite(block).all():
        raise DataError(f"audio file {path} holds NaN or infinite samples", hint=_REMEDY)
    return block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]


def read_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float = MAX_CLIP_SECONDS) -> np.ndarray:
    """Decode an audio file to a mono float32 waveform at `sample_rate`.

    Any channel count is averaged to mono, integer files (8/16/24/32-bit) are scaled to
    [-1, 1], and any other rate is resampled with soxr's high-quality filter. Empty,
    silent, non-finite and unreadable files raise DataError naming the cause. A long
    recording is read in blocks instead (read_audio_stream).
    """
    import soundfile as sf

    info = audio_info(path)
    if info.frames > max_seconds * info.samplerate:
        raise DataError(f"audio file {path} lasts {info.frames / info.samplerate:.0f} s, more than the "
                        f"{max_seconds:.0f} s a clip may", hint="cut it into clips of a few seconds around each word")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        raise _unreadable(path, exc) from None
    if data.size == 0:
        raise DataError(f"audio file {path} is empty (no samples)", hint="remove it, or record it again")
    wave = _mono(data, path)
    if rate != sample_rate:
        import soxr

        wave = soxr.resample(wave, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    if float(np.abs(wave).max(initial=0.0)) < SILENT_PEAK:
        raise DataError(f"audio file {path} is silent (peak below {SILENT_PEAK:g})",
                        hint="remove it, or check the microphone's level")
    return np.ascontiguousarray(wave, dtype=np.float32)


def read_audio_stream(path: str | Path, sample_rate: int, block_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """A long recording in blocks, decoded as read_audio decodes a clip (mono, scaled,
    checked), resampled to `sample_rate` as it is read (soxr's streaming resampler):
    hours of audio never held in memory at once."""
    import soundfile as sf

    info = audio_info(path)
    if info.frames == 0:
        raise DataError(f"audio file {path} is empty (no samples)", hint="record it again")
    try:
        blocks = sf.blocks(str(path), blocksize=max(1, int(block_seconds * info.samplerate)), dtype="float32",
                           always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as exc:
        raise _unreadable(path, exc) from None
    resampler = None
    if info.samplerate != sample_rate:
        import soxr

        resampler = soxr.ResampleStream(info.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
    for block in blocks:
        mono = _mono(block, path)
        yield resampler.resample_chunk(np.ascontiguousarray(mono)) if resampler else mono
    if resampler is not None:
        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def loudest_window(wave: np.ndarray, length: int, step: int) -> np.ndarray:
    """The `length` samples of `wave` with the most energy (searched every `step`)."""
    if len(wave) <= length:
        return wave
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    starts = np.arange(0, len(wave) - length + 1, step)
    if starts[-1] != len(wave) - length:
        starts = np.append(starts, len(wave) - length)
    best = starts[int(np.argmax(energy[starts + length] - energy[starts]))]
    return wave[best:best + length]


def fit_window(wave: np.ndarray, length: int, step: int) -> np.ndarray:
    """Exactly `length` samples: the loudest window of a longer clip, a shorter one centred."""
    wave = loudest_window(wave, length, step)
    if len(wave) < length:
        left = (length - len(wave)) // 2
        wave = np.pad(wave, (left, length - len(wave) - left))
    return wave


@dataclasses.dataclass(frozen=True)
class AudioPreprocessing:
    """Mono waveform at `sample_rate`, `window` samples long, float32 in [-1, 1]."""

    sample_rate: int = 16000
    window: int = 16000
    search_step: int = 160  # where a longer clip's loudest window may start (10 ms)

    kind = "audio"
    cache_dtype = np.float32

    def __post_init__(self) -> None:
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "window", int(self.window))
        object.__setattr__(self, "search_step", int(self.search_step))

    @property
    def cache_shape(self) -> tuple[int]:
        return (self.window,)

    @property
    def seconds(self) -> float:
        return self.window / self.sample_rate

    def with_size(self, size: int) -> AudioPreprocessing:
        raise ConfigError("--input-size applies to image backbones", hint="drop it: an audio model's input is "
                          f"{self.seconds:g} s of {self.sample_rate} Hz audio")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "audio", "sample_rate": self.sample_rate, "window": self.window, "channels": "mono",
                "scale": "float [-1, 1]", "crop": "loudest", "pad": "center", "search_step": self.search_step,
                "resampler": "soxr HQ", "layout": "NT"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioPreprocessing:
        if d.get("kind") != "audio":
            raise DataError(f"not an audio preprocessing spec: kind={d.get('kind')!r}",
                            hint="this model takes another modality")
        try:
            pre = cls(sample_rate=d["sample_rate"], window=d["window"], search_step=d.get("search_step", 160))
        except (KeyError, TypeError, ValueError) as exc:
            raise invalid_preprocessing(d, exc) from None
        if min(pre.sample_rate, pre.window, pre.search_step) < 1:
            raise invalid_preprocessing(d)
        return pre

    def read(self, path: str | Path) -> np.ndarray:
        return read_audio(path, self.sample_rate)

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        return fit_window(wave, self.window, self.search_step)

    def normalize(self, cached: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(cached, dtype=np.float32)

    def input_spec(self) -> dict[str, Any]:
        return {"name": "input", "shape": [None, self.window], "dtype": "float32", "layout": "NT",
                "sample_rate": self.sample_rate}

    def dummy_input(self, batch: int) -> np.ndarray:
        return dummy_input(self.input_spec(), batch)

    def __call__(self, path: str | Path | np.ndarray) -> np.ndarray:
        wave = self.read(path) if not isinstance(path, np.ndarray) else np.asarray(path, np.float32)
        return self.normalize(self.prepare(wave))



@dataclasses.dataclass
class AudioTrainingOptions(Settings):
    """What audio training does to a batch (the training transform reads it), and whether
    the data set gets a _silence_ class of its background noise."""

    noise_snr_db: tuple[float, float] = setting((5.0, 20.0), "Audio: background noise mixed in at a random SNR in "
                                                "LOW:HIGH dB.", flag="--noise-snr")
    noise_prob: float = setting(0.8, "Audio: share of clips that get noise.", min=0, max=1, example="0.8")
    shift_ms: float = setting(100.0, "Audio: random time shift, either way.", min=0, max=1000, example="100")
    gain_db: float = setting(6.0, "Audio: random gain, either way.", min=0, max=40, example="6")
    # None: when the data has _background_noise_
    silence_class: bool | None = setting(None, "Audio: add a _silence_ class of background noise at room levels (no "
                                         "speech); default: when the data has _background_noise_.")

    def validate(self) -> None:
        if len(self.noise_snr_db) != 2 or not -20 <= self.noise_snr_db[0] <= self.noise_snr_db[1] <= 100:
            raise ConfigError(f"the noise SNR range must be LOW <= HIGH within -20..100 dB, got {self.noise_snr_db}",
                              hint="e.g. 5:20")


AUDIO = register(Modality(
    name="audio", suffixes=AUDIO_SUFFIXES, noun="audio clip", skipped_as="unreadable, empty or silent clip(s)",
    preprocessing=AudioPreprocessing, reserved_folders=frozenset({BACKGROUND_NOISE, STREAMS})))
