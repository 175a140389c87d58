"""Keyword detection on a live audio stream, through any Runner. Torch-free.

The detector takes audio in chunks of any size (a microphone callback's 20 ms frames, or
a file's blocks), keeps the model's window of the latest audio, and every hop (100 ms
by default) scores that window. Each keyword's probability is averaged over the last
few hops; a keyword fires when its average crosses its threshold. After a detection no
keyword fires for a refractory period, and a keyword fires again only once its average
has fallen back under its threshold (one keyword, one detection). Labels that start
with an underscore (`_unknown_`, `_silence_`) never fire: they are what a model says
when nobody says a keyword.

Hop, smoothing, thresholds and refractory period are the card's `streaming` section, so
a device gets them with the model. Before the first window is full, the audio before
the stream's start counts as silence.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.modality.audio import SILENT_PEAK, AudioPreprocessing, audio_info, read_audio_stream
from edgetl.runtime.runner import check_finite
from edgetl.task.classification import softmax
from edgetl.task.keywords import never_fires

if TYPE_CHECKING:
    from edgetl.core.card import ModelCard
    from edgetl.runtime.runner import Runner

Part = Callable[..., Any]  # a runner's part: numpy arrays in, a list of arrays out

# Windows scored per call when audio arrives faster than real time (files, replays).
MAX_BATCH = 64


@dataclasses.dataclass(frozen=True)
class StreamingSettings:
    hop_ms: float = 100.0  # the window is scored every hop
    # hops a keyword's probability is averaged over: about the time a short word stays
    # whole in a 1 s window (a fine-tuned speech embedding at 80 ms hops: 8 hops instead of
    # 3 took test FRR at 20 FA/h from 39% to 22% on a keyword stream)
    smoothing: int = 6
    threshold: float = 0.5  # for keywords without their own
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    # silence after a detection; a keyword said within it after another is lost (1 s lost 6
    # points of FRR at 20 FA/h on a keyword stream against 0.4 s, for no fewer false accepts)
    refractory_ms: float = 500.0

    def __post_init__(self) -> None:
        checks = [(self.hop_ms > 0, "hop_ms", "must be positive", "e.g. 100"),
                  (int(self.smoothing) == self.smoothing and self.smoothing >= 1, "smoothing",
                   "must be a whole number of hops, at least 1", "e.g. 3"),
                  (self.refractory_ms >= 0, "refractory_ms", "cannot be negative", "e.g. 1000")]
        checks += [(0 < t <= 1, f"threshold of {k}", "must be a probability in (0, 1]", "e.g. 0.5")
                   for k, t in {"keywords": self.threshold, **self.thresholds}.items()]
        for ok, name, rule, example in checks:
            if not ok:
                raise ConfigError(f"streaming {name} {rule}", hint=example)
        object.__setattr__(self, "smoothing", int(self.smoothing))

    def threshold_of(self, label: str) -> float:
        return float(self.thresholds.get(label, self.threshold))

    def replace(self, **changes: Any) -> StreamingSettings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> StreamingSettings:
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in (d or {}).items() if k in fields})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"the card's streaming settings are not valid: {exc}",
                              hint="fix or remove the card's streaming section") from None

    @classmethod
    def of(cls, card: ModelCard) -> StreamingSettings:
        return cls.from_dict(card.streaming)


@dataclasses.dataclass
class Detection:
    label: str
    time: float  # seconds from the stream's start when it fired: the end of the window scored
    score: float  # the keyword's averaged probability then
    start: float  # start of that window: the keyword was said between start and time

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


class Trigger:
    """The decision, hop by hop, from each hop's class probabilities."""

    def __init__(self, labels: list[str], settings: StreamingSettings):
        self.settings = settings
        self.threshold = np.array([np.inf if never_fires(lab) else settings.threshold_of(lab) for lab in labels])
        self.refractory = int(round(settings.refractory_ms / settings.hop_ms))
        self.recent: collections.deque[np.ndarray] = collections.deque(maxlen=settings.smoothing)
        self.armed = np.ones(len(labels), bool)
        self.quiet_until = -1  # hop index

    def step(self, probs: np.ndarray, hop: int) -> int | None:
        """The index of the label that fires at this hop, if any."""
        self.recent.append(probs)
        return self.decide(np.mean(self.recent, axis=0), hop)

    def decide(self, mean: np.ndarray, hop: int) -> int | None:
        """The decision at this hop from each label's average over the last hops."""
        above = mean >= self.threshold
        self.armed |= ~above  # a keyword re-arms once its average fell under its threshold
        if hop < self.quiet_until:
            self.armed &= ~above  # heard during the refractory period: not a new detection
            return None
        candidates = above & self.armed
        if not candidates.any():
            return None
        best = int(np.argmax(np.where(candidates, mean, -np.inf)))
        self.armed[best] = False
        self.quiet_until = hop + 1 + self.refractory
        self.last_score = float(mean[best])
        return best


def smoothed(probs: np.ndarray, k: int) -> np.ndarray:
    """Each hop's mean over the last k hops (fewer at the start), as the Trigger averages."""
    c = np.cumsum(np.vstack([np.zeros((1, probs.shape[1])), probs]), axis=0)
    i = np.arange(1, len(probs) + 1)
    lo = np.maximum(0, i - k)
    means: np.ndarray = (c[i] - c[lo]) / (i - lo)[:, None]
    return means


def replay(probs: np.ndarray, labels: list[str], settings: StreamingSettings, hop_seconds: float,
           window_seconds: float) -> list[Detection]:
    """The detections that recorded per-hop probabilities give under `settings` (thresholds
    tried without running the model again). The Trigger's decision, hop by hop, but only
    at the hops where some keyword's average is over its threshold: at any other hop
    nothing fires and every keyword re-arms, so an hour is replayed in milliseconds."""
    trigger, found, previous = Trigger(labels, settings), [], -2
    means = smoothed(probs, settings.smoothing)
    for i in np.flatnonzero((means >= trigger.threshold).any(axis=1)):
        if i != previous + 1:
            trigger.armed[:] = True  # the hop before had no keyword over its threshold
        previous = int(i)
        j = trigger.decide(means[i], int(i))
        if j is not None:
            end = (i + 1) * hop_seconds
            found.append(Detection(labels[j], end, trigger.last_score, max(0.0, end - window_seconds)))
    return found


class SharedWindows:
    """Scores a model that embeds windows of its front-end's frames (the card's `parts`,
    e.g. the speech embedding: 76-frame windows every 8 frames) part by part, each piece
    of work done once for the stream: the front-end on the samples of the frames no hop
    has computed yet (a frame depends on its own 512 samples when the front-end's floor
    is fixed, the card's `floor_db`), the embedding of only the frame windows no hop has
    embedded (at a hop of one step, exactly one per hop), and the head. When the
    embedding streams (the card's `stages`, measured at export: a chain of stages whose
    output columns each depend on a few input columns), each column of each stage is
    computed once from the columns kept before it, so a new embedding costs one new
    column per stage, not a whole window. Consecutive windows scored together (a file's
    blocks) share one call of each part. For a model whose front-end takes each window's
    own floor (runs made before the fixed floor), the front-end runs on the whole window
    and an embedding is reused only when its frames are exactly the same. Either way the
    scores are those of the whole model."""

    def __init__(self, frontend: Part, embed: Part | None, head: Part, parts: dict[str, Any], hop: int,
                 stage_parts: list[Part] | None = None):
        self.frontend, self.embed, self.head, self.hop = frontend, embed, head, hop
        self.frames, self.step, self.starts = parts["frames"], parts["step"], list(parts["starts"])
        self.frame_samples = parts["frame_samples"]
        self.incremental = self.frames_once(parts)
        self.frame_context = parts.get("frame_context", 0)
        self.latest, self.latest_first = np.zeros((0, 0), np.float32), 0  # the last frames computed, the first's index
        self.cache: dict[int, np.ndarray] = {}  # first frame of a window -> its embedding
        self.blocks: dict[int, np.ndarray] = {}  # the same windows' frames (front-ends without a fixed floor)
        self.reused = self.computed = 0  # embeddings
        self.frontend_calls = self.frames_computed = self.embed_calls = 0
        # the embedding's stages (each part takes any number of columns) and, per stage, the
        # columns kept (first index, rows shaped as a batch's), counted as computed
        self.stages: list[dict[str, Any]] = parts["stages"] if stage_parts else []
        self.stage_parts: list[Part] = stage_parts or []
        self.kept: list[tuple[int, np.ndarray] | None] = [None] * len(self.stages)
        self.columns_computed = [0] * len(self.stages)
        self.origin: int | None = None  # the frame the windows' grid starts from (mod step)

    @staticmethod
    def frames_once(parts: dict[str, Any]) -> bool:
        """Whether each frame depends on its own samples only (the front-end's floor is fixed)."""
        return parts.get("floor_db") is not None and "frame_context" in parts

    @classmethod
    def of(cls, runner: Runner, hop: int) -> tuple[SharedWindows | None, str]:
        """The shared computation for `runner` at a hop of `hop` samples, or None and why not."""
        parts = runner.card.parts
        tensors = parts.get("tensors")
        if not tensors:
            return None, "the model has no parts to share between windows"
        step = parts["step"] * parts["frame_samples"]
        if hop % step:
            return None, f"a hop that is not a multiple of {step} samples moves the windows off the embedding's steps"
        incremental = cls.frames_once(parts)
        stages: list[Part] | None = None
        if incremental and parts.get("stages") and (runner.card.precision != "int8" or runner.int8_cuts_exact):
            cut = [runner.part([st["from"]], [st["to"]], any_length=True) for st in parts["stages"]]
            stages = [p for p in cut if p is not None] if all(p is not None for p in cut) else None
        frontend: Part | None
        embed: Part | None = None
        if stages:  # the stages start from the features tensor itself
            frontend = runner.part([runner.card.input.get("name", "input")], [tensors["features"]], any_length=True)
        else:  # windows embedded whole
            frontend, embed = runner.window_parts(tensors, any_length=incremental)
        head = runner.part([tensors["embeddings"]], ["logits"])
        if frontend is None or head is None or (embed is None and not stages):
            return None, f"{runner.backend} cannot run this model's parts apart"
        how = ("each frame and each stage's column computed once" if stages else
               "each frame and window computed once" if incremental else "embeddings of overlapping windows reused")
        return cls(frontend, embed, head, parts, hop, stages), how

    def logits(self, windows: np.ndarray, first_samples: np.ndarray) -> np.ndarray:
        """The logits of `windows` ([n, samples], in stream order), each starting at its
        sample of the stream (`first_samples`): runs of consecutive windows are scored
        together."""
        first_samples = np.asarray(first_samples, dtype=np.int64)
        if not self.incremental:
            return np.stack([self._whole_window_logits(w, int(s)) for w, s in zip(windows, first_samples)])
        breaks = np.flatnonzero(np.diff(first_samples) != self.hop) + 1
        return np.concatenate([self._run_logits(w, s) for w, s in
                               zip(np.split(windows, breaks), np.split(first_samples, breaks))])

    def _run_logits(self, windows: np.ndarray, first_samples: np.ndarray) -> np.ndarray:
        # the audio of consecutive windows: the first whole, then each next one's newest hop
        audio = np.concatenate([windows[0], *(w[-self.hop:] for w in windows[1:])])
        first = int(first_samples[0]) // self.frame_samples
        features = self._features(audio, first)
        firsts = first + (first_samples - first_samples[0]) // self.frame_samples
        wanted = sorted({int(f) + s for f in firsts for s in self.starts})
        missing = [w for w in wanted if w not in self.cache]
        if missing:
            self._embed(features, first, missing)
        self.reused += len(firsts) * len(self.starts) - len(missing)
        # the windows of every hop, start by start: the order of the model's own windows
        embeddings = np.stack([self.cache[int(f) + s] for s in self.starts for f in firsts])
        self.cache = {k: v for k, v in self.cache.items() if k >= firsts[-1]}  # older windows never come back
        logits: np.ndarray = self.head(embeddings)[0]
        return logits

    def _features(self, audio: np.ndarray, first: int) -> np.ndarray:
        """The frames of `audio` (starting at frame `first`): those kept from earlier hops,
        the others computed now from their own samples only (once per stream)."""
        count = (len(audio) - self.frame_context) // self.frame_samples
        shift = first - self.latest_first  # windows only move forward
        kept = self.latest[shift:] if 0 <= shift < len(self.latest) else self.latest[:0]
        if len(kept) < count:  # the frames no hop has computed: from their own samples only
            self.frontend_calls += 1
            new = self.frontend(np.ascontiguousarray(audio[None, len(kept) * self.frame_samples:]))[0][0]
            self.frames_computed += len(new)
            kept = np.concatenate([kept, new]) if len(kept) else new
        self.latest, self.latest_first = kept, first
        return kept

    def _embed(self, features: np.ndarray, first: int, missing: list[int]) -> None:
        """Embed the windows starting at the frames `missing` (of `features`, which start at
        frame `first`) into the cache: through the stages, each column once, when the
        embedding streams, else as a batch of windows."""
        self.embed_calls += 1
        if self.stages:
            if self.origin is None:
                self.origin = missing[0] % self.step
            top = [(m - self.origin) // self.step for m in missing]
            rows = self._columns(len(self.stages) - 1, top[0], top[-1] + 1, features, first)
            for m, i in zip(missing, top):
                self.cache[m] = rows[i - top[0]]
            self.computed += len(missing)
            return
        out = self._whole(np.stack([features[m - first:m - first + self.frames] for m in missing]))
        self.cache.update(zip(missing, out))
        self.computed += len(missing)

    def _columns(self, k: int, lo: int, hi: int, features: np.ndarray, first: int) -> np.ndarray:
        """Columns lo..hi-1 of stage k's output, as rows: those kept, the others computed
        from the columns of the stage before (of the frames for the first stage) that they
        depend on. Windows only move forward: what comes before `lo` is let go."""
        stage = self.stages[k]
        kept_first, kept = self.kept[k] or (lo, None)
        kept_end = kept_first + (0 if kept is None else len(kept))
        if kept is not None and kept_first <= lo and hi <= kept_end:
            return kept[lo - kept_first:hi - kept_first]
        extend = kept is not None and kept_first <= lo <= kept_end
        start = kept_end if extend else lo
        a, b = start * stage["stride"], (hi - 1) * stage["stride"] + stage["width"]  # input columns needed
        if k == 0:  # the frames, on the windows' grid
            x = np.moveaxis(features[None, self.origin + a - first:self.origin + b - first], 1, stage["axis"])
        else:
            x = np.swapaxes(self._columns(k - 1, a, b, features, first), 0, stage["axis"])
        new = np.swapaxes(self.stage_parts[k](np.ascontiguousarray(x))[0], 0, stage["out_axis"])
        if len(new) != hi - start:
            raise ArtifactError(f"the embedding's stage {stage['from']} -> {stage['to']} gave {len(new)} columns "
                                f"for {hi - start}: the card's stages do not match the model",
                                hint="export the run again (edgetl export), which measures them")
        self.columns_computed[k] += len(new)
        if extend and kept is not None:
            new = np.concatenate([kept[lo - kept_first:], new])
        self.kept[k] = (lo, new)
        return np.asarray(new[:hi - lo])

    def _whole(self, windows: np.ndarray) -> np.ndarray:
        """The embeddings of whole windows of frames (a model cut without stages)."""
        if self.embed is None:  # of() gives every model without stages its window part
            raise ArtifactError("the model's windows cannot be embedded whole", hint="export the run again")
        embeddings: np.ndarray = self.embed(windows)[0]
        return embeddings

    def _whole_window_logits(self, window: np.ndarray, first_sample: int) -> np.ndarray:
        """A front-end with each window's own floor: the whole window's frames, and an
        embedding reused only when its frames are the same."""
        self.frontend_calls += 1
        features = self.frontend(window[None])[0][0]
        self.frames_computed += len(features)
        first = first_sample // self.frame_samples
        blocks = {first + s: features[s:s + self.frames] for s in self.starts}
        todo = [k for k, b in blocks.items() if k not in self.cache or not np.array_equal(self.blocks[k], b)]
        if todo:
            self.embed_calls += 1
            out = self._whole(np.stack([blocks[k] for k in todo]))
            self.cache.update(zip(todo, out))
            self.blocks.update((k, blocks[k].copy()) for k in todo)
        self.reused += len(blocks) - len(todo)
        self.computed += len(todo)
        self.cache = {k: v for k, v in self.cache.items() if k >= first}
        self.blocks = {k: v for k, v in self.blocks.items() if k >= first}
        logits: np.ndarray = self.head(np.stack([self.cache[first + s] for s in self.starts]))[0][0]
        return logits


class KeywordDetector:
    """Feed audio (mono float32 at the card's sample rate), get detections.

    `runner` is any Runner of an audio model (`edgetl.runtime.open_runner`). With
    `record=True` every hop's probabilities are kept (`probabilities()`), so other
    thresholds can be tried with `replay`."""

    def __init__(self, runner: Runner, settings: StreamingSettings | None = None, record: bool = False,
                 share: bool = True):
        card = runner.card
        if card.modality != "audio":
            raise ConfigError(f"{runner.path.name} takes {card.modality}s; keyword detection needs an audio model",
                              hint="pass a model fine-tuned on audio clips")
        self.runner, self.labels = runner, list(card.labels)
        self.settings = settings or StreamingSettings.of(card)
        pre = AudioPreprocessing.from_dict(card.preprocessing)
        self.preprocessing, self.sample_rate, self.window = pre, pre.sample_rate, pre.window
        self.hop = max(1, int(round(self.settings.hop_ms * self.sample_rate / 1000)))
        if self.hop > self.window:
            raise ConfigError(f"a hop of {self.settings.hop_ms:g} ms is longer than the model's "
                              f"{pre.seconds * 1000:g} ms window: audio between windows would never be heard",
                              hint=f"use a hop of at most {pre.seconds * 1000:g} ms (e.g. 100)")
        static = card.input.get("shape", [None])[0]
        self.static_batch = static if isinstance(static, int) else None
        self.trigger = Trigger(self.labels, self.settings)
        # one window per hop through the shared parts where the model and backend allow it
        self.shared, self.sharing = SharedWindows.of(runner, self.hop) if share else (None, "not asked for")
        self.tail = np.zeros(self.window, np.float32)  # the last window scored (silence before the start)
        self.pending = np.zeros(0, np.float32)  # audio not yet part of a scored window
        self.hops = 0
        self.busy_seconds = 0.0
        self.record = record
        self._recorded: list[np.ndarray] = []

    @property
    def hop_seconds(self) -> float:
        return self.hop / self.sample_rate

    @property
    def seconds_heard(self) -> float:
        return (self.hops * self.hop + len(self.pending)) / self.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio time (0.05: an hour of audio takes three minutes)."""
        heard = self.seconds_heard
        return self.busy_seconds / heard if heard else 0.0

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities of the next windows (those ending at the next hops): by the
        shared parts, else the whole model on each window. A window without
        sound (digital silence, e.g. before the stream's start) holds no keyword: it is
        not shown to the model, which never heard such input, and scores zero for all."""
        probs = np.zeros((len(windows), len(self.labels)), np.float32)
        heard = np.abs(windows).max(axis=1) >= SILENT_PEAK
        if not heard.any():
            return probs
        x = self.preprocessing.normalize(windows[heard])
        if self.shared is not None:
            ends = (self.hops + 1 + np.flatnonzero(heard)) * self.hop  # where each window ends in the stream
            logits = self.shared.logits(x, ends - self.window)
        else:
            logits = self.runner.infer_all(x, self.static_batch or len(x))
        check_finite(logits, f"{self.runner.path.name} ({self.runner.backend})")
        probs[heard] = softmax(logits)
        return probs

    def feed(self, chunk: np.ndarray) -> list[Detection]:
        """Take the next samples of the stream; returns the detections they completed."""
        t0 = time.perf_counter()
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.pending = np.concatenate([self.pending, chunk]) if len(self.pending) else chunk
        found: list[Detection] = []
        while len(self.pending) >= self.hop:
            n = min(len(self.pending) // self.hop, self.static_batch or MAX_BATCH)
            audio = np.concatenate([self.tail, self.pending[:n * self.hop]])
            windows = np.lib.stride_tricks.sliding_window_view(audio, self.window)[self.hop::self.hop][:n]
            probs = self.score(np.ascontiguousarray(windows))
            if self.record:
                self._recorded.append(probs)
            for p in probs:
                j = self.trigger.step(p, self.hops)
                self.hops += 1
                if j is not None:
                    end = self.hops * self.hop_seconds
                    found.append(Detection(self.labels[j], end, self.trigger.last_score,
                                           max(0.0, end - self.window / self.sample_rate)))
            self.tail = audio[-self.window:]
            self.pending = self.pending[n * self.hop:]
        self.busy_seconds += time.perf_counter() - t0
        return found

    def probabilities(self) -> np.ndarray:
        """Every scored hop's class probabilities (needs record=True)."""
        if not self._recorded:
            return np.zeros((0, len(self.labels)), np.float32)
        return np.concatenate(self._recorded)


def detect_file(detector: KeywordDetector, path: str | Path, chunk_seconds: float | None = None,
                progress: Callable[[float], object] | None = None) -> list[Detection]:
    """Every detection in a recording. It is read in blocks and fed `chunk_seconds` at a
    time (a hop: one window per model call, as live; None: whole blocks, batched);
    `progress(seconds)` is told how much audio each block held."""
    found: list[Detection] = []
    step = max(1, int(round(chunk_seconds * detector.sample_rate))) if chunk_seconds else None
    for block in read_audio_stream(path, detector.sample_rate):
        for start in range(0, len(block), step or max(1, len(block))):
            found += detector.feed(block[start:start + step] if step else block)
        if progress:
            progress(len(block) / detector.sample_rate)
    return found


def audio_seconds(path: str | Path) -> float | None:
    """The length of an audio file, or None when it cannot be told (it is read later, and
    fails there with the reason)."""
    try:
        info = audio_info(path)
    except DataError:  # not audio, unreadable, a rate no recording has: the reader says why
        return None
    return float(info.frames / info.samplerate)


__all__ = ["Detection", "KeywordDetector", "SharedWindows", "StreamingSettings", "Trigger", "audio_seconds", "detect_file",
           "never_fires", "replay", "smoothed"]
