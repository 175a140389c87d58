"""Built-in data set: spoken keywords synthesized with espeak-ng, as an audio folder data set.

Voices are English accents x espeak-ng voice variants (e.g. `en-us+f3`), each word said
at a few random speeds and pitches, with background noise at a random SNR and a random
onset in a 1 s, 16 kHz, 16-bit clip. The split is by voice: validation and test voices
are never heard in training. Half of the keywords are said next to other words (the end
of a sentence before, or its start after, a short pause). `--unknown` adds an
`_unknown_` class of other words said alone and of seconds cut from running speech
(sentences without keywords: what a listening device mostly hears), and `_background_noise_` holds noise for augmentation
(Speech Commands' layout). `--stream-minutes` adds long recordings for streaming evaluation
(data/streams.py).
"""
from __future__ import annotations

import logging
import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgetl.core import progress
from edgetl.core.outputs import check_output, publish_data, temp_dir_beside
from edgetl.data.domains import keyword_domain
from edgetl.data.espeak import SAMPLE_RATE, Utterance, espeak_version, synthesize, trim, voice_variants, write_wav
from edgetl.data.noise import colored_noise
from edgetl.data.settings import KeywordsSettings
from edgetl.data.streams import filler_words, make_stream
from edgetl.modality.audio import STREAMS

log = logging.getLogger("edgetl")

# Speech Commands' auxiliary words and digits, for the `_unknown_` class.
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "zero", "one",
                 "two", "three", "four", "five", "six", "seven", "eight", "nine", "learn", "follow", "forward",
                 "backward", "visual", "yellow", "open", "water", "table", "window", "under", "about", "morning")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
UNKNOWN = "_unknown_"


def place(speech: np.ndarray, rng: np.random.Generator, length: int = SAMPLE_RATE, cut: bool = False,
          context: np.ndarray | None = None) -> np.ndarray:
    """Trim the synthesizer's silence and put the word at a random onset in `length`
    samples; with `cut`, longer speech (a sentence) gives a random `length` of itself.
    `context` (other speech) fills the room before or after the word, after a short
    pause: a keyword is often said next to other words."""
    speech = trim(speech)
    start = int(rng.integers(0, len(speech) - length + 1)) if cut and len(speech) > length else 0
    speech = speech[start:start + length]
    out = np.zeros(length, np.float32)
    start = int(rng.integers(0, length - len(speech) + 1))
    out[start:start + len(speech)] = speech
    if context is not None:
        context = trim(context)
        gap = int(rng.uniform(0.15, 0.4) * SAMPLE_RATE)
        level = rng.uniform(0.5, 1.0) * np.sqrt(np.mean(speech ** 2)) / max(1e-6, np.sqrt(np.mean(context ** 2)))
        if rng.random() < 0.5 and start - gap > SAMPLE_RATE // 10:  # the end of a sentence, then the word
            piece = context[-(start - gap):]
            out[start - gap - len(piece):start - gap] += piece * level
        elif length - start - len(speech) - gap > SAMPLE_RATE // 10:  # the word, then a sentence begins
            piece = context[:length - start - len(speech) - gap]
            out[start + len(speech) + gap:start + len(speech) + gap + len(piece)] += piece * level
    return out


def mix(clip: np.ndarray, bank: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, len(bank) - len(clip)))
    n = bank[start:start + len(clip)]
    voiced = clip[np.abs(clip) > 1e-3]
    signal_rms = np.sqrt(np.mean(voiced ** 2)) if len(voiced) else 1e-3
    noise_rms = np.sqrt(np.mean(n ** 2))
    out = clip + n * signal_rms / (noise_rms * 10 ** (snr_db / 20)) if noise_rms > 1e-5 else clip
    return (out / max(1.0, np.abs(out).max() / 0.95) * rng.uniform(0.3, 1.0)).astype(np.float32)


def unknown_clips(keywords: int) -> tuple[int, int]:
    """`_unknown_` clips per voice and take: other words said alone, and seconds cut from
    running speech. As many as there are keywords (at least 3), a fifth of them words:
    running speech is what a listening device mostly hears. With 10 keywords, going from
    1 + 2 to 2 + 8 took a fine-tuned speech embedding's false rejects on a 15-minute test
    stream from 49% to 39% at 20 false accepts per hour, and from 31% to 18% at 100."""
    total = max(3, keywords)
    words = max(1, round(total / 5))
    return words, total - words


def split_voices(voices: list[str], seed: int, val: float = 0.15, test: float = 0.15,
                 held_out: int | None = None) -> dict[str, list[str]]:
    """Disjoint voice sets per split (at least one voice in each); `held_out` voices each
    for val and test instead of the fractions."""
    rng = random.Random(seed)
    voices = voices[:]
    rng.shuffle(voices)
    if held_out is None:
        n_val, n_test = max(1, round(len(voices) * val)), max(1, round(len(voices) * test))
    else:
        n_val = n_test = held_out
    return {"val": voices[:n_val], "test": voices[n_val:n_val + n_test], "train": voices[n_val + n_test:]}


def make_keywords(out: str | os.PathLike, settings: KeywordsSettings | None = None, overwrite: bool = False,
                  snr_db: tuple[float, float] = (10.0, 30.0), **options) -> Path:
    """Write OUT/{train,val,test}/{WORD,[_unknown_]}/*.wav and OUT/_background_noise_/*.wav;
    with `stream_minutes`, also OUT/_streams_/{val,test}.wav, long recordings of other
    speech with the keywords at the times listed beside them (.csv, .json). `domain`
    (data/domains.py) records every clip in a shifted acoustic condition. `settings` (or
    its fields as keyword options): KeywordsSettings."""
    s = KeywordsSettings.of(settings, **options)
    words, unknown, voices, takes, seed = list(s.words), s.unknown, s.voices, s.takes, s.seed
    stream_minutes, domain, held_out_voices = s.stream_minutes, s.domain, s.held_out_voices
    shift = keyword_domain(domain) if domain else None
    out = check_output(out, "data", overwrite)
    variants = voice_variants()
    rng = np.random.default_rng(seed)
    pool = [f"{a}+{v}" for a in ACCENTS for v in variants]
    if voices > len(pool):
        log.warning(f"--voices {voices}: espeak-ng has {len(pool)} voices here; all of them are used")
    chosen = [pool[i] for i in rng.permutation(len(pool))[:voices]]
    by_split = split_voices(chosen, seed, held_out=held_out_voices)
    others = [w for w in UNKNOWN_WORDS if w not in words]
    n_words, n_speech = unknown_clips(len(words))
    filler = filler_words(words)
    def say(text: str, voice: str) -> Utterance:
        return Utterance(text, voice, int(rng.integers(120, 200)), int(rng.integers(20, 80)))

    def sentence(voice: str) -> Utterance:
        return say(" ".join(rng.choice(filler, 8)), voice)

    # split, class, utterance, other speech around it (or None)
    jobs: list[tuple[str, str, Utterance, Utterance | None]] = []
    for split, vs in by_split.items():
        for v in vs:
            for _ in range(takes):
                for w in words:  # half of the keywords next to other words
                    jobs.append((split, w, say(w, v), sentence(v) if rng.random() < 0.5 else None))
                if unknown:  # other words said alone, and seconds of running speech without keywords
                    jobs += [(split, UNKNOWN, say(others[int(rng.integers(len(others)))], v), None)
                             for _ in range(n_words)]
                    jobs += [(split, UNKNOWN, sentence(v), None) for _ in range(n_speech)]
    tmp = temp_dir_beside(out)
    try:
        bank = _write_noise(tmp / "_background_noise_", by_split["train"], rng)
        with progress.progress_bar() as bar, ThreadPoolExecutor(max_workers=4) as pool_:
            task = bar.add_task("synthesizing keywords", total=len(jobs), status="")
            spoken = pool_.map(lambda j: (synthesize(j[2]), synthesize(j[3]) if j[3] else None), jobs)
            for i, (job, (wave, context)) in enumerate(zip(jobs, spoken)):
                split, cls, u, _ = job
                running = " " in u.text and cls == UNKNOWN
                clip = mix(place(wave, rng, cut=running, context=context), bank, float(rng.uniform(*snr_db)), rng)
                if shift:
                    clip = shift(clip, rng)
                folder = tmp / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                name = "speech" if running else u.text.replace(" ", "_")
                write_wav(folder / f"{name}_{u.voice.replace('+', '_')}_{i:05d}.wav", clip)
                bar.advance(task)
            if stream_minutes:
                streams = tmp / STREAMS
                streams.mkdir()
                task = bar.add_task("synthesizing streams", total=2 * stream_minutes * 60, status="")
                for split in ("val", "test"):
                    make_stream(streams / f"{split}.wav", words, by_split[split], stream_minutes, bank, rng, split,
                                advance=lambda s: bar.advance(task, s))
        publish_data(tmp, out, {"data set": "keywords", "words": words, "unknown": unknown, "voices": by_split,
                                "takes": takes, "seed": seed, "snr_db": list(snr_db), "stream_minutes": stream_minutes,
                                "domain": domain or "close-talk",
                                "espeak-ng": espeak_version()}, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_noise(folder: Path, train_voices: list[str], rng: np.random.Generator) -> np.ndarray:
    """Ten seconds each of white, pink and brown noise, and a babble of training voices
    saying other words; returns them joined (the noise the clips are mixed with)."""
    folder.mkdir(parents=True)
    parts = {kind: colored_noise(kind, 10 * SAMPLE_RATE, rng) * 0.5 for kind in ("white", "pink", "brown")}
    babble = np.zeros(10 * SAMPLE_RATE, np.float32)
    for v in train_voices[:4]:
        sentence = " ".join(rng.choice(UNKNOWN_WORDS, 20))
        speech = synthesize(Utterance(sentence, v, 170, 50))[:len(babble)]
        babble[:len(speech)] += speech
    voiced = np.flatnonzero(np.abs(babble) > 1e-3)
    babble = babble[:voiced[-1] + 1] if len(voiced) else babble  # no silent tail to mix in
    parts["babble"] = babble / max(1e-3, np.abs(babble).max()) * 0.5
    for kind, wave in parts.items():
        write_wav(folder / f"{kind}.wav", wave)
    return np.concatenate(list(parts.values()))
