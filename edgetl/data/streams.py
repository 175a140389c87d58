"""Long keyword streams: what a microphone hears all day, with keywords at known times.

A recording is sentences of ordinary words (never a keyword or a word that sounds like
one) said by the split's voices with pauses between them, keywords said alone at random
moments between sentences, and background noise all along at 10-30 dB under the speech.
Beside it go the keywords' times (CSV and JSON), from which `edgetl evaluate --stream`
counts false rejects and false accepts per hour; the JSON also lists the other speech
(text and times), so each false accept can be shown with what was being said. The
validation recording uses the validation voices, the test recording the test voices:
neither is heard in training.
"""
from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgetl.core.errors import DataError
from edgetl.data.espeak import SAMPLE_RATE, Utterance, synthesize, write_wav

SCHEMA = "edgetl.keyword-stream/1"
# Everyday words for the non-keyword speech; words that sound like a default keyword are left out.
STREAM_WORDS = (
    "the", "a", "and", "to", "of", "in", "is", "it", "you", "that", "he", "was", "for", "are", "with", "as", "they",
    "be", "at", "one", "have", "this", "from", "or", "had", "by", "hot", "word", "but", "what", "some", "we", "can",
    "out", "other", "were", "all", "there", "when", "your", "how", "said", "an", "each", "she", "which", "do", "their",
    "time", "if", "will", "way", "about", "many", "then", "them", "would", "like", "so", "these", "her", "long",
    "make", "thing", "see", "him", "two", "has", "look", "more", "day", "could", "come", "did", "number", "sound",
    "most", "people", "my", "over", "water", "than", "call", "first", "who", "may", "side", "been", "find",
    "any", "new", "work", "part", "take", "get", "place", "made", "live", "where", "after", "back", "little", "only",
    "round", "man", "year", "came", "show", "every", "good", "me", "give", "our", "under", "name", "very", "through",
    "just", "form", "sentence", "great", "think", "say", "help", "low", "line", "differ", "turn", "cause", "much",
    "mean", "before", "move", "same", "tell", "boy", "follow", "want", "air", "well", "also", "play", "small",
    "end", "put", "home", "read", "hand", "port", "large", "spell", "add", "even", "land", "here", "must", "big",
    "high", "such", "why", "ask", "men", "change", "went", "light", "kind", "need", "house", "picture", "try",
    "us", "again", "animal", "point", "mother", "world", "near", "build", "self", "earth", "father", "head",
    "stand", "own", "page", "should", "country", "found", "answer", "school", "grow", "study", "still", "learn",
    "plant", "cover", "food", "sun", "four", "between", "state", "keep", "eye", "never", "last", "let", "thought",
    "city", "tree", "cross", "farm", "hard", "start", "might", "story", "saw", "far", "sea", "draw", "late", "run",
    "while", "press", "close", "night", "real", "life", "few", "north", "open", "seem", "together", "next",
    "white", "children", "begin", "walk", "example", "ease", "paper", "group", "always", "music", "those",
    "both", "mark", "often", "letter", "until", "mile", "river", "car", "feet", "care", "second", "book", "carry",
    "took", "science", "eat", "room", "friend", "began", "idea", "fish", "mountain", "once", "base", "hear",
    "horse", "cut", "sure", "watch", "color", "face", "wood", "main", "enough", "plain", "girl", "usual", "young",
    "ready", "above", "ever", "red", "list", "though", "feel", "talk", "bird", "soon", "body", "dog", "family",
)
# Words that sound like a keyword (or contain it as a syllable) are never filler.
SOUNDS_LIKE = {"no": {"know", "known", "nose", "note"}, "right": {"write", "rite", "wright", "bright"},
               "go": {"going", "gone", "goal", "ago"}, "up": {"upon", "upper", "cup"}, "on": {"upon", "only", "one"},
               "off": {"often", "office", "of"}, "stop": {"top"}, "down": {"town", "brown"}, "left": {"lift"},
               "yes": {"yet"}}


def filler_words(keywords: list[str]) -> list[str]:
    banned = set(keywords)
    for k in keywords:
        banned |= SOUNDS_LIKE.get(k, set())
    return [w for w in STREAM_WORDS if w not in banned]


def make_stream(path: Path, keywords: list[str], voices: list[str], minutes: float, bank: np.ndarray,
                rng: np.random.Generator, split: str, keywords_per_minute: float = 4.0, advance=None) -> dict:
    """Write `path` (16 kHz WAV) with its keyword times beside it (.csv, .json); returns
    the JSON reference. `bank` is background noise; `advance(seconds)` reports progress."""
    total = int(minutes * 60 * SAMPLE_RATE)
    if total < 5 * SAMPLE_RATE:
        raise DataError(f"a stream of {minutes:g} minutes is too short to hold keywords", hint="e.g. --stream-minutes 10")
    filler = filler_words(keywords)
    audio = np.zeros(total, np.float32)
    speech_level = np.zeros(total, np.float32)  # the RMS the noise is set against, per sample
    reference: list[dict] = []
    speech: list[dict] = []  # the other speech, so a false accept can be told what it heard
    keyword_share = keywords_per_minute / 15.0  # about 15 segments (sentence or keyword, with a pause) a minute
    pos = int(rng.uniform(0.5, 2.0) * SAMPLE_RATE)
    with ThreadPoolExecutor(max_workers=4) as pool:
        while pos < total:
            plan = []
            for _ in range(32):
                is_keyword = bool(rng.random() < keyword_share)
                text = str(rng.choice(keywords)) if is_keyword else " ".join(rng.choice(filler, int(rng.integers(3, 13))))
                plan.append((is_keyword, Utterance(text, str(rng.choice(voices)), int(rng.integers(120, 200)),
                                                   int(rng.integers(20, 80)))))
            for (is_keyword, u), wave in zip(plan, pool.map(lambda p: synthesize(p[1]), plan)):
                voiced = np.flatnonzero(np.abs(wave) > 0.01 * max(1e-6, float(np.abs(wave).max())))
                if not len(voiced):
                    continue
                wave = wave[voiced[0]:voiced[-1] + 1]
                if pos + len(wave) > total - SAMPLE_RATE // 2:  # keep a tail, so the last word can be heard whole
                    pos = total
                    break
                rms = float(np.sqrt(np.mean(wave ** 2)))
                level = 10 ** (rng.uniform(-30, -18) / 20)  # speech RMS between -30 and -18 dBFS
                audio[pos:pos + len(wave)] = wave * (level / max(rms, 1e-6))
                speech_level[pos:pos + len(wave)] = level
                said = {"start": round(pos / SAMPLE_RATE, 3), "end": round((pos + len(wave)) / SAMPLE_RATE, 3),
                        "voice": u.voice}
                if is_keyword:
                    reference.append({"label": u.text, **said})
                else:
                    speech.append({"text": u.text, **said})
                step = len(wave) + int(rng.uniform(0.3, 1.5) * SAMPLE_RATE)
                pos += step
                if advance:
                    advance(step / SAMPLE_RATE)
    _add_noise(audio, speech_level, bank, rng)
    write_wav(path, audio)
    doc = {"schema": SCHEMA, "recording": path.name, "split": split, "seconds": total / SAMPLE_RATE,
           "sample_rate": SAMPLE_RATE, "words": list(keywords), "voices": list(voices), "keywords": reference, "speech": speech}
    path.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["label", "start", "end", "voice"])
    writer.writeheader()
    writer.writerows(reference)
    path.with_suffix(".csv").write_text(out.getvalue())
    return doc


def _add_noise(audio: np.ndarray, speech_level: np.ndarray, bank: np.ndarray, rng: np.random.Generator,
               segment: int = 160000) -> None:
    """Background noise all along, each 10 s at 10-30 dB under the speech heard nearby."""
    typical = float(np.median(speech_level[speech_level > 0])) if (speech_level > 0).any() else 0.05
    for start in range(0, len(audio), segment):
        n = min(segment, len(audio) - start)
        offset = int(rng.integers(0, max(1, len(bank) - n)))
        noise = np.resize(bank[offset:offset + n], n)
        near = speech_level[start:start + n]
        level = float(near[near > 0].mean()) if (near > 0).any() else typical
        rms = float(np.sqrt(np.mean(noise ** 2)))
        audio[start:start + n] += noise * (level * 10 ** (-rng.uniform(10, 30) / 20) / max(rms, 1e-6))
    np.clip(audio, -1, 1, out=audio)
