"""Streaming evaluation: false rejects and false accepts per hour on a long recording.

The recording is run through the streaming detector exactly as a device would run it
(one window per hop), every hop's probabilities are kept, and other thresholds are
then tried by replaying the detector's decision on them (the model runs once). A
detection is right when a keyword of its label was said in the window that fired
(from the keyword's start to one window and the smoothing after its end); each
keyword said counts once; every other detection is a false accept.
"""
from __future__ import annotations

import bisect
import csv
import dataclasses
import functools
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.card import ModelCard
from edgetl.core.errors import ConfigError, DataError
from edgetl.evaluate.settings import StreamEvalSettings
from edgetl.modality.audio import audio_info
from edgetl.runtime.artifacts import write_card
from edgetl.runtime.backends import open_runner
from edgetl.runtime.streaming import Detection, KeywordDetector, StreamingSettings, detect_file, never_fires, replay, smoothed

# Thresholds tried for the DET curve and when picking a keyword's threshold.
THRESHOLDS = np.unique(np.concatenate([np.linspace(0.05, 0.95, 19), 1 - np.geomspace(0.05, 1e-6, 26)]))
PEAK_THRESHOLDS = 200  # at most this many more, placed at the recorded scores' peaks
# Tried when an operating point is picked: smoothing (milliseconds, whole hops of each)
# and refractory periods (a keyword said within a second of another is lost to a long one).
SMOOTHING_MS = (200, 400, 600, 800, 1000)
REFRACTORY_MS = (250.0, 500.0, 1000.0)


@dataclasses.dataclass(frozen=True)
class Said:
    label: str
    start: float
    end: float


@dataclasses.dataclass
class Reference:
    keywords: list[Said]
    split: str | None  # "val" or "test" when the recording was made by `edgetl data keywords --stream`
    speech: list[Said] = dataclasses.field(default_factory=list)  # other speech (label: its text), when listed

    def heard(self, start: float, end: float) -> str | None:
        """What was said between start and end, keywords in brackets (None: the recording
        does not list its other speech)."""
        if not self.speech:
            return None
        return " / ".join(s.label for s in self._everything if s.start < end and s.end > start)

    @functools.cached_property
    def _everything(self) -> list[Said]:
        return sorted([*self.speech, *(dataclasses.replace(k, label=f"[{k.label}]") for k in self.keywords)],
                      key=lambda s: s.start)


def read_reference(recording: Path) -> Reference:
    """The keywords said in `recording`: RECORDING.json (edgetl's) or RECORDING.csv with
    columns label,start,end in seconds."""
    doc, table = recording.with_suffix(".json"), recording.with_suffix(".csv")
    hint = f"put the keyword times beside the recording: {table.name} with columns label,start,end (seconds)"
    try:
        other = []
        if doc.is_file():
            data = json.loads(doc.read_text())
            rows, split = data["keywords"], data.get("split")
            other = [Said(str(r["text"]), float(r["start"]), float(r["end"])) for r in data.get("speech", [])]
        elif table.is_file():
            rows, split = list(csv.DictReader(io.StringIO(table.read_text()))), None
        else:
            raise DataError(f"no keyword times for {recording} ({doc.name} or {table.name})", hint=hint)
        said = [Said(str(r["label"]), float(r["start"]), float(r["end"])) for r in rows]
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise DataError(f"the keyword times of {recording} cannot be read ({type(exc).__name__}: {exc})",
                        hint=hint) from None
    bad = [s for s in said if not (0 <= s.start <= s.end)]
    if bad:
        raise DataError(f"keyword times of {recording} hold {len(bad)} interval(s) that end before they start "
                        f"(first: {bad[0].label} {bad[0].start}-{bad[0].end})", hint=hint)
    return Reference(sorted(said, key=lambda s: s.start), split, sorted(other, key=lambda s: s.start))


@dataclasses.dataclass
class Matching:
    hits: list[tuple[Said, Detection]]
    misses: list[Said]
    false_accepts: list[Detection]


def match(detections: list[Detection], said: list[Said], window: float, slack: float) -> Matching:
    """Pair each detection with the earliest unmatched keyword of its label that was said
    in the window that fired; the rest are false accepts. Each label's keywords are
    searched by start time, so a low threshold's thousands of detections match quickly."""
    order = sorted(range(len(said)), key=lambda j: said[j].start)
    by_label: dict[str, list[int]] = {}
    for j in order:
        by_label.setdefault(said[j].label, []).append(j)
    starts = {label: [said[j].start for j in js] for label, js in by_label.items()}
    reach = max((s.end - s.start for s in said), default=0.0) + window + slack  # the furthest a match lies back
    used = [False] * len(said)
    hits, false = [], []
    for d in detections:
        mine = by_label.get(d.label, [])
        lo = bisect.bisect_left(starts.get(d.label, []), d.time - reach)
        hi = bisect.bisect_right(starts.get(d.label, []), d.time)
        found = next((j for j in mine[lo:hi] if not used[j] and d.time <= said[j].end + window + slack), None)
        if found is None:
            false.append(d)
        else:
            used[found] = True
            hits.append((said[found], d))
    return Matching(hits, [s for s, u in zip(said, used) if not u], false)


@dataclasses.dataclass
class StreamReport:
    artifact: str
    recording: str
    backend: str
    inference_precision: str
    hours: float
    settings: dict[str, Any]
    keywords: int  # said in the recording
    detected: int
    false_rejects: int
    frr: float
    false_accepts: int
    fa_per_hour: float
    mean_delay: float | None  # seconds from a keyword's end to its detection
    real_time_factor: float
    live: bool  # fed one hop at a time (a live device's real-time factor), or in blocks of hops
    shared: str  # whether overlapping windows shared their work, or why not
    per_keyword: dict[str, Any]
    false_accept_list: list[dict[str, Any]]  # label, time, score, what other speech was heard in the window that fired
    det: list[dict[str, Any]]  # threshold, frr, fa_per_hour: one common threshold for every keyword
    thresholds_written: str | None = None  # where the picked thresholds went
    plot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _slack(settings: StreamingSettings, hop: float) -> float:
    """How long after a keyword's end (beyond one window) a detection still counts: the
    smoothing's hops, by which the average lags the scores."""
    return settings.smoothing * hop


def _figures(m: Matching, n: int, hours: float) -> tuple[float, float]:
    return (len(m.misses) / n if n else 0.0), len(m.false_accepts) / hours


def _peaks(curve: np.ndarray) -> np.ndarray:
    """The values of a score curve at its local maxima: where a threshold's decisions change."""
    c = np.concatenate([[-np.inf], curve, [-np.inf]])
    return curve[(c[1:-1] > c[:-2]) & (c[1:-1] >= c[2:])]


def candidate_thresholds(curve: np.ndarray, most: int = PEAK_THRESHOLDS) -> np.ndarray:
    """Thresholds worth trying on a score curve: the fixed grid, and just over each of its
    peaks (over quantiles of them when there are many). A model trained with label
    smoothing scores the keywords it is sure of at about 0.9 and never near 1, so a
    fixed grid alone would step over the region where its detections are decided."""
    peaks = _peaks(curve)
    peaks = peaks[peaks >= THRESHOLDS[0]]
    if len(peaks) > most:
        peaks = np.quantile(peaks, np.linspace(0, 1, most))
    just_over = np.ceil(peaks * 1e6 + 1) / 1e6
    return np.unique(np.concatenate([THRESHOLDS, just_over[just_over <= 1]]))


def _fires_alone(mean: np.ndarray, threshold: float, refractory: int) -> np.ndarray:
    """The hops at which one keyword fires when it is the only keyword (rising edges of its
    average over the threshold, none within the refractory period of the last)."""
    above = mean >= threshold
    edges = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
    fired, quiet = [], -1
    for e in edges:
        if e >= quiet:
            fired.append(e)
            quiet = int(e) + 1 + refractory
    return np.asarray(fired, dtype=int)


def pick_thresholds(probs: np.ndarray, labels: list[str], settings: StreamingSettings, said: list[Said],
                    hours: float, hop: float, window: float, target_fa_per_hour: float) -> dict[str, float]:
    """Each keyword's lowest threshold whose false accepts stay within its share of the
    target (the target split evenly over the keywords), on this (validation) recording."""
    keywords = [i for i, lab in enumerate(labels) if not never_fires(lab)]
    allowed = target_fa_per_hour * hours / len(keywords)
    means = smoothed(probs, settings.smoothing)
    refractory = int(round(settings.refractory_ms / settings.hop_ms))
    slack = _slack(settings, hop)
    chosen = {}
    for i in keywords:
        label = labels[i]
        mine = [s for s in said if s.label == label]
        chosen[label] = float(THRESHOLDS[-1])
        for t in candidate_thresholds(means[:, i]):
            fired = [Detection(label, (h + 1) * hop, 0.0, 0.0) for h in _fires_alone(means[:, i], t, refractory)]
            if len(match(fired, mine, window, slack).false_accepts) <= allowed:
                chosen[label] = round(float(t), 6)
                break
    return chosen


def det_curve(probs: np.ndarray, labels: list[str], settings: StreamingSettings, said: list[Said],
              hours: float, hop: float, window: float) -> list[dict[str, Any]]:
    """FRR and false accepts per hour of one threshold for every keyword, at each threshold
    where the decisions change (ascending), by replaying the detector on the recorded
    probabilities."""
    columns = [i for i, lab in enumerate(labels) if not never_fires(lab)]
    strongest = smoothed(probs, settings.smoothing)[:, columns].max(axis=1, initial=0.0)
    curve = []
    for t in candidate_thresholds(strongest):
        common = settings.replace(threshold=float(t), thresholds={})
        m = match(replay(probs, labels, common, hop, window), said, window, _slack(settings, hop))
        frr, fa = _figures(m, len(said), hours)
        curve.append({"threshold": round(float(t), 6), "frr": frr, "fa_per_hour": fa})
    return curve


def smoothing_choices(hop_ms: float) -> tuple[int, ...]:
    return tuple(sorted({max(1, round(ms / hop_ms)) for ms in SMOOTHING_MS}))


def pick_operating_point(probs: np.ndarray, labels: list[str], settings: StreamingSettings, said: list[Said],
                         hours: float, hop: float, window: float, target_fa_per_hour: float,
                         pick: str = "common", smoothings: tuple[int, ...] | None = None,
                         refractories: tuple[float, ...] | None = None) -> StreamingSettings:
    """The smoothing, refractory period and thresholds with the fewest false rejects whose
    false accepts stay within the target on this (validation) recording. `common`: one
    threshold for every keyword, the lowest that holds the target; `per-keyword`: each
    keyword's lowest within its share. Thresholds picked per keyword on a few validation
    voices overfit them (measured: 14% FRR at 0 FA/h on validation gave 68 FA/h on test,
    against 20 for one common threshold), so common is the default. Ties go to the
    shorter smoothing, which detects sooner, then to the longer refractory period."""
    tried = []
    for smoothing in smoothings or smoothing_choices(settings.hop_ms):
        for refractory in refractories or REFRACTORY_MS:
            trial = settings.replace(smoothing=smoothing, refractory_ms=refractory)
            if pick == "per-keyword":
                trial = trial.replace(thresholds=pick_thresholds(probs, labels, trial, said, hours, hop, window,
                                                                 target_fa_per_hour))
                m = match(replay(probs, labels, trial, hop, window), said, window, _slack(trial, hop))
                frr, fa = _figures(m, len(said), hours)
            else:
                curve = det_curve(probs, labels, trial, said, hours, hop, window)
                point = next((p for p in curve if p["fa_per_hour"] <= target_fa_per_hour), curve[-1])
                trial = dataclasses.replace(trial, threshold=point["threshold"], thresholds={})
                frr, fa = point["frr"], point["fa_per_hour"]
            tried.append((fa > target_fa_per_hour, frr, smoothing, -refractory, trial))
    return min(tried, key=lambda t: t[:4])[4]


def write_streaming(path: Path, card: ModelCard) -> str:
    """Store the card (with its streaming settings) back into the artifact it came from."""
    if path.is_dir():
        return str(card.save(path))
    if path.suffix.lower() in (".onnx", ".xml"):
        write_card(path, card)
        return str(path)
    raise ConfigError(f"thresholds cannot be written into {path.name}",
                      hint="pick them on the run directory, .onnx or .xml, then build the engine from that .onnx")


def check_length(recording: Path, detector: KeywordDetector) -> None:
    """A recording must hold one window of the model, and the smoothing must fit in it."""
    info = audio_info(recording)  # an unreadable file: the reason, named
    seconds = info.frames / info.samplerate
    window = detector.window / detector.sample_rate
    if seconds < window:
        raise DataError(f"{recording.name} lasts {seconds:.2f} s, less than one {window:.2f} s window of the model",
                        hint="evaluate on a recording of at least a few minutes")
    smoothing_s = detector.settings.smoothing * detector.hop_seconds
    if smoothing_s > seconds:
        raise ConfigError(f"--smoothing {detector.settings.smoothing} averages over {smoothing_s:.1f} s, longer than "
                          f"the recording ({seconds:.1f} s)", hint="e.g. --smoothing 6 (0.6 s at a 100 ms hop)")


def evaluate_stream(artifact: str | Path, recording: str | Path, settings: StreamEvalSettings | None = None,
                    progress: Callable[[float], object] | None = None, **options: Any) -> StreamReport:
    """Detect the keywords of `recording` with the artifact's streaming settings (hop,
    smoothing and refractory period may be overridden) and compare with its keyword times. With
    `target_fa_per_hour`, first pick the thresholds (`pick`: one common threshold, or one
    per keyword) and, unless given, the smoothing and refractory period for that rate on this
    recording (which must not be a test recording) and write them into the artifact's card.
    `settings` (or its fields as keyword options): StreamEvalSettings."""
    s = StreamEvalSettings.of(settings, **options)
    backend, device, threads, precision_hint, share = s.backend, s.device, s.threads, s.precision_hint, s.share
    threads = threads or 1  # a hop's work is too small to split: more threads only spin (as predict on a recording)
    hop_ms, smoothing, refractory_ms, plot = s.hop_ms, s.smoothing, s.refractory_ms, s.plot
    target_fa_per_hour, pick = s.target_fa_per_hour, s.pick
    recording, path = Path(recording), Path(artifact)
    if not recording.is_file():
        raise DataError(f"recording {recording} does not exist" if not recording.exists() else
                        f"{recording} is not a regular file", hint="check the path of the recording (a WAV or FLAC)")
    audio_info(recording)  # a file that is not audio: the reason, named, before anything else
    reference = read_reference(recording)
    if not reference.keywords:
        raise DataError(f"the keyword times of {recording.name} list no keyword: missed keywords cannot be counted",
                        hint="evaluate on a recording in which keywords are said (`edgetl data keywords DIR "
                             "--stream-minutes 5` writes one)")
    if target_fa_per_hour is not None and reference.split == "test":
        raise ConfigError(f"{recording.name} is a test recording: thresholds picked on it would flatter the test figures",
                          hint="pick them on the validation recording (e.g. _streams_/val.wav), then evaluate on the test one")
    with open_runner(path, backend=backend, device=device, threads=threads, precision_hint=precision_hint) as runner:
        card = runner.card
        detector_settings = StreamingSettings.of(card).replace(hop_ms=hop_ms, smoothing=smoothing,
                                                               refractory_ms=refractory_ms)
        detector = KeywordDetector(runner, detector_settings, record=True, share=share)
        check_length(recording, detector)
        unknown = sorted({s.label for s in reference.keywords} - set(card.labels))
        if unknown:
            raise DataError(f"{recording.name} lists keywords the model does not know: {', '.join(unknown)}",
                            hint=f"the model's labels are {', '.join(card.labels)}")
        detections = detect_file(detector, recording, chunk_seconds=detector.hop_seconds if s.live else None,
                                 progress=progress)
        backend_name, precision = runner.backend, runner.inference_precision
    probs, hop, window = detector.probabilities(), detector.hop_seconds, detector.window / detector.sample_rate
    hours = detector.seconds_heard / 3600
    written = None
    if target_fa_per_hour is not None:
        detector_settings = pick_operating_point(
            probs, card.labels, detector_settings, reference.keywords, hours, hop, window, target_fa_per_hour, pick,
            smoothings=(detector_settings.smoothing,) if smoothing is not None else None,
            refractories=(detector_settings.refractory_ms,) if refractory_ms is not None else None)
        card.streaming = detector_settings.to_dict()
        written = write_streaming(path, card)
        detections = replay(probs, card.labels, detector_settings, hop, window)
    m = match(detections, reference.keywords, window, _slack(detector_settings, hop))
    n = len(reference.keywords)
    frr, fa_h = _figures(m, n, hours)
    per_keyword = {}
    for label in card.labels:
        if never_fires(label):
            continue
        mine = [s for s in reference.keywords if s.label == label]
        per_keyword[label] = {"threshold": detector_settings.threshold_of(label), "said": len(mine),
                              "detected": sum(1 for s, _ in m.hits if s.label == label),
                              "false_accepts": sum(1 for d in m.false_accepts if d.label == label)}
    det = det_curve(probs, card.labels, detector_settings, reference.keywords, hours, hop, window)
    delays = [d.time - s.end for s, d in m.hits]
    false_list = [{**d.to_dict(), "heard": reference.heard(d.start, d.time)} for d in m.false_accepts]
    report = StreamReport(
        artifact=str(path), recording=str(recording), backend=backend_name, inference_precision=precision,
        hours=hours, settings=detector_settings.to_dict(), keywords=n, detected=len(m.hits), false_rejects=len(m.misses),
        frr=frr, false_accepts=len(m.false_accepts), fa_per_hour=fa_h,
        mean_delay=float(np.mean(delays)) if delays else None, real_time_factor=detector.real_time_factor, live=s.live,
        shared=detector.sharing if detector.shared is None else
        f"{detector.sharing} ({detector.shared.reused / max(1, detector.shared.reused + detector.shared.computed):.0%})",
        per_keyword=per_keyword, false_accept_list=false_list, det=det, thresholds_written=written)
    if plot:
        report.plot = str(plot_det(report, plot))
    return report


def plot_det(report: StreamReport, path: str | Path) -> Path:
    """FRR against false accepts per hour, one point per common threshold, and the
    operating point of the card's thresholds."""
    from edgetl.bench.report import pyplot
    from edgetl.core.outputs import REPORT_SOFTWARE, write_atomic

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    floor = 0.5 / report.hours  # where "no false accept" is drawn on the log axis
    xs = [max(p["fa_per_hour"], floor) for p in report.det]
    ax.plot(xs, [100 * p["frr"] for p in report.det], "o-", ms=3, label="one threshold for every keyword")
    ax.plot([max(report.fa_per_hour, floor)], [100 * report.frr], "r*", ms=14, label="the card's thresholds")
    ax.set_xscale("log")
    ax.axvline(floor, color="gray", lw=0.8, ls=":")
    ax.text(floor, ax.get_ylim()[1] * 0.97, " none", fontsize=7, color="gray", va="top")
    ax.set(xlabel="false accepts per hour (log)", ylabel="false rejects (%)",
           title=f"{Path(report.artifact).name} on {Path(report.recording).name} "
                 f"({report.hours * 60:.0f} min, {report.keywords} keywords)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": f"{REPORT_SOFTWARE} evaluate --stream"})
    plt.close(fig)
    return write_atomic(path, buf.getvalue())
