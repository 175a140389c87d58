"""Speech synthesized with espeak-ng: the voices it has, one utterance as a 16 kHz
waveform, and the WAV files the built-in speech data sets are written as (data/keywords.py,
data/streams.py)."""
from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np

from edgetl.core.errors import DataError

SAMPLE_RATE = 16000
INSTALL_HINT = ("install espeak-ng: `apt-get install espeak-ng` (Debian/Ubuntu), `dnf install espeak-ng` (Fedora), "
                "`brew install espeak-ng` (macOS)")
# Variants that are effects rather than voices.
_NOT_VOICES = {"Demonic", "announcer", "fast", "UniRobot", "anikaRobot", "Mr", "Tweaky", "RicishayMax",
               "RicishayMax2", "RicishayMax3", *(f"robosoft{i}" for i in ("", 2, 3, 4, 5, 6, 7, 8))}


def espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError("espeak-ng is not installed; edgetl synthesizes keywords with it", hint=INSTALL_HINT)
    return exe


def voice_variants() -> list[str]:
    out = subprocess.run([espeak(), "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = [line.split()[-1].removeprefix("!v/") for line in out.splitlines()[1:] if "!v/" in line]
    return sorted(n for n in names if n not in _NOT_VOICES)


@dataclasses.dataclass(frozen=True)
class Utterance:
    text: str
    voice: str  # accent+variant
    speed: int  # words per minute
    pitch: int  # 0..99


def synthesize(u: Utterance) -> np.ndarray:
    """One utterance as float32 mono at 16 kHz (espeak-ng writes 22.05 kHz; soxr resamples)."""
    import soundfile as sf
    import soxr

    cmd = [espeak(), "-v", u.voice, "-s", str(u.speed), "-p", str(u.pitch), "--stdout", u.text]
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0 or len(done.stdout) < 100:
        raise DataError(f"espeak-ng failed for voice {u.voice}: {done.stderr.decode(errors='replace').strip()[:200]}",
                        hint=INSTALL_HINT)
    wave, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    return soxr.resample(wave, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def trim(speech: np.ndarray) -> np.ndarray:
    """Without the synthesizer's silence before and after."""
    voiced = np.flatnonzero(np.abs(speech) > 0.01 * max(1e-6, float(np.abs(speech).max())))
    return speech[voiced[0]:voiced[-1] + 1] if len(voiced) else speech


def write_wav(path: Path, wave: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), np.clip(wave, -1, 1), SAMPLE_RATE, subtype="PCM_16")


def espeak_version() -> str:
    done = subprocess.run([espeak(), "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()
