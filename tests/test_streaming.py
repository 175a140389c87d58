"""Keyword detection on streams: the detector's decision and timing, chunking, long
recordings with keyword times, evaluate --stream, thresholds in the card, and predict
on recordings longer than the model's window."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import assert_refused

from edgetl.cli import cli
from edgetl.core.card import ModelCard
from edgetl.core.errors import ConfigError
from edgetl.modality.audio import AudioPreprocessing, read_audio
from edgetl.runtime.runner import Runner
from edgetl.runtime.streaming import KeywordDetector, StreamingSettings, Trigger, detect_file, replay

RATE = 16000


# ---------------------------------------------------------------- the decision, on known probabilities

def test_trigger_smooths_fires_once_per_keyword_and_never_for_underscore_labels():
    labels = ["_unknown_", "go", "stop"]
    settings = StreamingSettings(hop_ms=100, smoothing=2, threshold=0.6, thresholds={"stop": 0.85}, refractory_ms=300)
    p = lambda *v: np.array(v, np.float32)  # noqa: E731
    script = [p(1, 0, 0)] * 3 + [p(0, 1, 0)] * 4 + [p(1, 0, 0)] * 3 + [p(0, 0.2, 0.8)] * 4 + [p(0, 0, 1)] * 3
    trigger = Trigger(labels, settings)
    fired = [(i, labels[j]) for i, probs in enumerate(script) if (j := trigger.step(probs, i)) is not None]
    # go: the mean of [0, 1] is 0.5 < 0.6, of [1, 1] is 1: fires at hop 4, once while it stays high.
    # stop at 0.8 stays under its own 0.85 and fires when its mean reaches 0.9 (hop 14: [0.8, 1]).
    # _unknown_ is certain for whole stretches and never fires.
    assert fired == [(4, "go"), (14, "stop")]


def test_refractory_period_and_rearming():
    labels = ["a", "b"]
    settings = StreamingSettings(hop_ms=100, smoothing=1, threshold=0.5, refractory_ms=500)
    high_a, high_b, low = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, 0.0])
    script = [high_a, low, high_b, low, low, low, high_b, high_b, low, high_a]
    got = replay(np.stack(script), labels, settings, hop_seconds=0.1, window_seconds=1.0)
    # b at hop 2 falls inside a's refractory period (hops 1-5); b at hop 6 fires; hop 7 is
    # the same utterance (never fell under); a at hop 9 is inside b's refractory period.
    assert [(d.label, round(d.time, 1)) for d in got] == [("a", 0.1), ("b", 0.7)]


@pytest.mark.parametrize("smoothing,refractory_ms", [(1, 0), (3, 300), (5, 1000)])
def test_replay_decides_as_the_live_trigger_hop_by_hop(smoothing, refractory_ms):
    """replay skips the hops where no keyword is over its threshold; it must still make
    every decision the live Trigger makes."""
    rng = np.random.default_rng(smoothing)
    labels = ["_unknown_", "a", "b", "c"]
    # stretches of 1-8 hops, each led by one label, with noisy scores
    leaders = np.repeat(rng.integers(0, 4, 600), rng.integers(1, 9, 600))[:3000]
    probs = rng.dirichlet([0.5] * 4, size=len(leaders)) + 2.0 * np.eye(4)[leaders] * rng.random((len(leaders), 1))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    settings = StreamingSettings(hop_ms=100, smoothing=smoothing, threshold=0.5, thresholds={"c": 0.7},
                                 refractory_ms=refractory_ms)
    trigger = Trigger(labels, settings)
    live = [(i, labels[j]) for i, p in enumerate(probs) if (j := trigger.step(p, i)) is not None]
    got = replay(probs, labels, settings, hop_seconds=0.1, window_seconds=1.0)
    assert len(live) > 20 and {lab for _, lab in live} == {"a", "b", "c"}
    assert [(round(d.time / 0.1) - 1, d.label) for d in got] == live


def test_threshold_candidates_sit_just_over_the_scores_peaks():
    """A model whose keyword scores all lie between 0.90 and 0.95 (label smoothing) needs
    thresholds between them; each candidate over a peak leaves that peak out."""
    from edgetl.evaluate.stream import THRESHOLDS, candidate_thresholds

    curve = np.zeros(400)
    peaks = np.linspace(0.905, 0.945, 9)
    curve[20::40][:9] = peaks
    candidates = candidate_thresholds(curve)
    between = candidates[(candidates > 0.9) & (candidates < 0.95)]
    assert len(between) >= len(peaks) > len(THRESHOLDS[(THRESHOLDS > 0.9) & (THRESHOLDS < 0.95)])
    for p in peaks:
        over = candidates[candidates > p].min()
        assert over - p <= 2e-6 and (curve >= over).sum() == (curve > p).sum()
    assert candidates.max() <= 1 and set(THRESHOLDS) <= set(candidates)


def test_operating_point_holds_the_target_with_the_fewest_misses():
    """Keywords `a` (0.8 for 8 hops) and `b` (0.6), one `b` said right after an `a`, and
    bursts of 3 hops that are neither (`a` at 1.0, `b` at 0.7). No false accept is
    allowed. One common threshold can pass both keywords only once 6 hops of smoothing
    flatten the bursts under 0.6; a threshold per keyword can with 4. Either way the `b`
    after the `a` is lost to a refractory period of 1 s, not to one of 0.5 s."""
    from edgetl.evaluate.stream import Said, match, pick_operating_point

    hop, window, hours = 0.1, 1.0, 60 / 3600
    labels = ["_unknown_", "a", "b"]
    probs = np.zeros((600, 3), np.float32)
    probs[:, 0] = 1.0
    said = []
    for label, level, starts in (("a", 0.8, (5, 15, 40)), ("b", 0.6, (25, 35, 40.8))):
        for t in starts:
            probs[round(t / hop):round(t / hop) + 8] = [1 - level, level, 0] if label == "a" else [1 - level, 0, level]
            said.append(Said(label, t, t + 0.5))
    probs[450:453] = [0, 1.0, 0]  # not keywords
    probs[520:523] = [0.3, 0, 0.7]
    base = StreamingSettings(hop_ms=100, smoothing=3, threshold=0.5, refractory_ms=1000)

    def errors(s):
        m = match(replay(probs, labels, s, hop, window), said, window, s.smoothing * hop)
        return len(m.misses), len(m.false_accepts)

    common = pick_operating_point(probs, labels, base, said, hours, hop, window, target_fa_per_hour=0.5)
    assert (common.smoothing, common.refractory_ms, common.thresholds) == (6, 500, {})
    assert 0.5 < common.threshold <= 0.6 and errors(common) == (0, 0)
    assert errors(common.replace(smoothing=4)) != (0, 0)  # the shorter smoothing alone would not do
    assert errors(common.replace(refractory_ms=1000)) == (1, 0)  # nor the longer refractory period
    per_keyword = pick_operating_point(probs, labels, base, said, hours, hop, window, 0.5, pick="per-keyword")
    assert (per_keyword.smoothing, per_keyword.refractory_ms) == (4, 500) and errors(per_keyword) == (0, 0)
    assert 0.75 < per_keyword.thresholds["a"] <= 0.8 and 0.525 < per_keyword.thresholds["b"] <= 0.6
    fixed = pick_operating_point(probs, labels, base, said, hours, hop, window, 0.5, smoothings=(4,),
                                 refractories=(1000,))
    assert (fixed.smoothing, fixed.refractory_ms) == (4, 1000) and 0.75 < fixed.threshold <= 0.8
    assert errors(fixed) == (3, 0)  # every b is missed


@pytest.mark.parametrize("bad", [dict(hop_ms=0), dict(smoothing=0), dict(threshold=1.5),
                                 dict(thresholds={"yes": 0}), dict(refractory_ms=-1), dict(smoothing=1.5)])
def test_invalid_streaming_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        StreamingSettings(**bad)


# ---------------------------------------------------------------- timing, with a model that cannot be wrong

class BurstRunner(Runner):
    """A model in numpy that is right by construction: 'up' when the window holds a whole
    burst of +0.5 samples, 'down' for a whole burst of -0.5, else '_unknown_'."""

    backend = "numpy"
    burst = 4000  # samples (250 ms)

    def __init__(self):
        card = ModelCard(labels=["_unknown_", "down", "up"], modality="audio",
                         input=AudioPreprocessing().input_spec(), preprocessing=AudioPreprocessing().to_dict())
        super().__init__(Path("bursts"), card)
        self.calls = 0

    @classmethod
    def load(cls, path, device="cpu", threads=None, precision_hint="f32"):
        return cls()

    def compute(self, batch):
        self.calls += 1
        up = (batch == 0.5).sum(axis=1) >= self.burst
        down = (batch == -0.5).sum(axis=1) >= self.burst
        return np.stack([np.where(up | down, 0.0, 8.0), 12.0 * down, 12.0 * up], axis=1).astype(np.float32)


def burst_stream(events: list[tuple[str, float]], seconds: float) -> np.ndarray:
    wave = np.random.default_rng(0).normal(0, 0.01, int(seconds * RATE)).astype(np.float32)
    for label, at in events:
        start = int(at * RATE)
        wave[start:start + BurstRunner.burst] = 0.5 if label == "up" else -0.5
    return wave


@pytest.mark.parametrize("smoothing", [1, 3])
def test_detections_come_in_order_within_a_hop_of_when_the_window_first_holds_the_keyword(smoothing):
    events = [("up", 1.23), ("down", 3.61), ("up", 6.07), ("up", 8.5)]
    wave = burst_stream(events, 11.0)
    settings = StreamingSettings(hop_ms=100, smoothing=smoothing, threshold=0.5, refractory_ms=1000)
    got = KeywordDetector(BurstRunner(), settings).feed(wave)
    assert [d.label for d in got] == [label for label, _ in events]
    lag = (math.ceil(smoothing / 2) - 1) * 0.1  # hops until the mean of ones and zeros reaches 0.5
    for d, (_, at) in zip(got, events):
        end = at + BurstRunner.burst / RATE
        assert end + lag <= d.time + 1e-9 < end + lag + 0.1  # the first hop whose window holds the burst
        assert d.start == pytest.approx(d.time - 1.0)


def test_chunk_size_does_not_change_the_detections():
    wave = burst_stream([("up", 0.4), ("down", 2.2), ("down", 5.9)], 8.0)
    whole = KeywordDetector(BurstRunner()).feed(wave)
    assert len(whole) == 3
    for chunk in (1, 160, 320, 1234, 16000):
        detector = KeywordDetector(BurstRunner())
        got = [d for i in range(0, len(wave), chunk) for d in detector.feed(wave[i:i + chunk])]
        assert [(d.label, d.time, d.score) for d in got] == [(d.label, d.time, d.score) for d in whole], chunk
        assert detector.hops == len(wave) // detector.hop and detector.real_time_factor > 0


def test_windows_without_sound_are_not_shown_to_the_model():
    runner = BurstRunner()
    detector = KeywordDetector(runner, record=True)
    detector.feed(np.zeros(3 * RATE, np.float32))
    assert runner.calls == 0 and detector.probabilities().shape == (30, 3) and not detector.probabilities().any()


def test_an_image_model_or_a_hop_longer_than_the_window_is_refused(tiny_run):
    from edgetl.runtime import open_runner

    with open_runner(tiny_run) as runner, pytest.raises(ConfigError, match="needs an audio model"):
        KeywordDetector(runner)
    with pytest.raises(ConfigError, match="longer than the model's"):
        KeywordDetector(BurstRunner(), StreamingSettings(hop_ms=1500))


def test_recordings_are_read_in_blocks_resampled_and_mixed_to_mono(tmp_path):
    import soxr

    wave = (0.3 * np.sin(np.arange(3 * RATE) / RATE * 2 * np.pi * 440)).astype(np.float32)
    stereo = soxr.resample(wave, RATE, 44100)
    path = tmp_path / "stereo_44k.wav"
    sf.write(path, np.stack([stereo, stereo], 1), 44100, subtype="FLOAT")
    from edgetl.modality.audio import read_audio_stream

    blocks = list(read_audio_stream(path, RATE, block_seconds=0.7))
    assert len(blocks) > 4
    joined = np.concatenate(blocks)
    assert abs(len(joined) - len(wave)) <= 2
    assert np.abs(joined[1000:-1000] - read_audio(path)[1000:len(joined) - 1000]).max() < 1e-3


# ---------------------------------------------------------------- the keywords data set's streams

def test_keyword_streams_use_unheard_voices_and_list_the_keyword_times(keywords):
    marker = json.loads((keywords / "edgetl-data.json").read_text())
    for split in ("val", "test"):
        doc = json.loads((keywords / "_streams_" / f"{split}.json").read_text())
        info = sf.info(keywords / "_streams_" / f"{split}.wav")
        assert (info.samplerate, info.channels) == (RATE, 1) and doc["seconds"] == pytest.approx(60, abs=0.01)
        assert doc["keywords"] and {k["label"] for k in doc["keywords"]} <= {"yes", "no", "stop"}
        assert {k["voice"] for k in doc["keywords"]} <= set(marker["voices"][split])
        starts = [k["start"] for k in doc["keywords"]]
        assert starts == sorted(starts) and all(k["start"] < k["end"] < doc["seconds"] for k in doc["keywords"])
        # the other speech is listed too, in order, never overlapping a keyword, and holds no keyword
        speech = doc["speech"]
        assert speech and [s["start"] for s in speech] == sorted(s["start"] for s in speech)
        assert not any(s["start"] < k["end"] and k["start"] < s["end"] for s in speech for k in doc["keywords"])
        assert not {w for s in speech for w in s["text"].split()} & {"yes", "no", "stop"}
        rows = (keywords / "_streams_" / f"{split}.csv").read_text().splitlines()
        assert rows[0] == "label,start,end,voice" and len(rows) == len(doc["keywords"]) + 1
        wave = read_audio(keywords / "_streams_" / f"{split}.wav", max_seconds=3600)
        rms = lambda a, b, wave=wave: np.sqrt(np.mean(wave[int(a * RATE):int(b * RATE)] ** 2))  # noqa: E731
        # each keyword follows at least 0.3 s of noise alone, and mostly stands out of it
        ratios = [rms(k["start"], k["end"]) / rms(k["start"] - 0.25, k["start"]) for k in doc["keywords"]]
        assert np.median(ratios) > 2
    from edgetl.data.folders import open_folder

    assert "_streams_" not in open_folder(keywords, modality="audio").classes


def test_filler_speech_holds_no_keyword_nor_a_word_that_sounds_like_one():
    from edgetl.data.streams import filler_words

    words = filler_words(["yes", "no", "right", "go"])
    assert len(words) > 200
    assert not {"yes", "no", "right", "go", "know", "write", "going"} & set(words)


# ---------------------------------------------------------------- a real speech model on a stream

@pytest.fixture(scope="module")
def stream_model(speech_run):
    from edgetl.export import export_run

    result = export_run(speech_run, openvino=True)
    return result.onnx, result.openvino


def _noise(rng, seconds: float) -> np.ndarray:
    return rng.normal(0, 0.003, int(seconds * RATE)).astype(np.float32)


def confident_clips(run, keywords, onnx_model, tmp_path, n: int = 5):
    """Training clips named right with the most confidence that the detector also names
    right when each is said alone between two seconds of noise, each of yes, no and stop
    at least once: the joined-recording test is about the detector (chunks, windows,
    refractory between words, timing), not about how well a tiny model generalizes."""
    from edgetl.runtime import open_runner
    from edgetl.runtime.predict import predict

    files = sorted(f for w in ("yes", "no", "stop") for f in (keywords / "train" / w).glob("*.wav"))
    right = sorted((r for r in predict(run, files, top_k=1) if f"/{r.labels[0]}/" in r.file),
                   key=lambda r: -r.scores[0])
    rng, picked = np.random.default_rng(0), []
    with open_runner(onnx_model, threads=1) as runner:
        for r in right:
            word = r.file.split("/")[-2]
            missing = {"yes", "no", "stop"} - {f.split("/")[-2] for f in picked}
            if len(picked) >= n and not missing:
                break
            if word not in missing and len(picked) >= n - len(missing):
                continue  # keep room for the words still missing
            path = tmp_path / "alone.wav"
            sf.write(path, np.concatenate([_noise(rng, 2.0), read_audio(r.file), _noise(rng, 2.0)]), RATE,
                     subtype="PCM_16")
            if [d.label for d in detect_file(KeywordDetector(runner), path)] == [word]:
                picked.append(r.file)
    assert {f.split("/")[-2] for f in picked} == {"yes", "no", "stop"}, "the model detects none of a word alone"
    return picked


def test_keyword_clips_joined_with_noise_are_detected_in_order_where_they_were_said(speech_run, keywords,
                                                                                   stream_model, tmp_path):
    clips = confident_clips(speech_run, keywords, stream_model[0], tmp_path)
    rng = np.random.default_rng(3)
    parts, said, t = [], [], 0
    for f in clips:
        gap = _noise(rng, rng.uniform(2.0, 3.0))  # a window apart
        wave = read_audio(f)
        voiced = np.flatnonzero(np.abs(wave) > 0.1 * np.abs(wave).max())
        parts += [gap, wave]
        t += len(gap)
        said.append((f.split("/")[-2], (t + voiced[0]) / RATE, (t + voiced[-1]) / RATE))
        t += len(wave)
    parts.append(_noise(rng, 2.0))
    path = tmp_path / "joined.wav"
    sf.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
    from edgetl.runtime import open_runner

    for artifact in stream_model:
        with open_runner(artifact, threads=1) as runner:
            detector = KeywordDetector(runner)
            got = detect_file(detector, path, chunk_seconds=0.02)  # 20 ms, as a microphone callback
        assert [d.label for d in got] == [w for w, _, _ in said], (artifact, got)
        for d, (_, start, end) in zip(got, said):
            assert start <= d.time <= end + 1.0 + 0.3  # fired while the window held the word
        assert 0 < detector.real_time_factor < 1


def test_evaluate_stream_counts_errors_and_writes_thresholds_picked_on_validation(speech_run, keywords,
                                                                                  stream_model, tmp_path):
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(stream_model[0].read_bytes())
    streams = keywords / "_streams_"
    runner = CliRunner()
    plot = tmp_path / "det.png"
    result = runner.invoke(cli, ["--quiet", "evaluate", str(onnx_path), "--stream", str(streams / "val.wav"),
                                 "--target-fa-per-hour", "60", "--thresholds", "per-keyword", "--plot", str(plot),
                                 "--json"])
    assert result.exit_code == 0, result.output
    picked = json.loads(result.output.splitlines()[-1])
    doc = json.loads((streams / "val.json").read_text())
    assert picked["keywords"] == len(doc["keywords"]) == picked["detected"] + picked["false_rejects"]
    assert picked["fa_per_hour"] == pytest.approx(picked["false_accepts"] / picked["hours"])
    assert set(picked["settings"]["thresholds"]) == {"yes", "no", "stop"}  # _unknown_, _silence_ never fire
    assert picked["thresholds_written"] == str(onnx_path)
    from PIL import Image

    assert Image.open(plot).size[0] > 300
    det = picked["det"]
    assert [p["threshold"] for p in det] == sorted(p["threshold"] for p in det)
    assert det[-1]["fa_per_hour"] <= det[0]["fa_per_hour"]  # a higher threshold never accepts more

    from edgetl.runtime.artifacts import read_onnx_card

    assert read_onnx_card(onnx_path).streaming["thresholds"] == picked["settings"]["thresholds"]
    result = runner.invoke(cli, ["--quiet", "evaluate", str(onnx_path), "--stream", str(streams / "test.wav"), "--json"])
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output.splitlines()[-1])
    assert measured["settings"]["thresholds"] == picked["settings"]["thresholds"]  # read back from the card
    assert measured["per_keyword"]["yes"]["threshold"] == picked["settings"]["thresholds"]["yes"]
    assert measured["hours"] == pytest.approx(1 / 60, rel=0.01)

    result = runner.invoke(cli, ["--quiet", "evaluate", str(onnx_path), "--stream", str(streams / "val.wav"),
                                 "--target-fa-per-hour", "60", "--json"])  # one common threshold: the default
    assert result.exit_code == 0, result.output
    common = json.loads(result.output.splitlines()[-1])
    assert common["settings"]["thresholds"] == {} and common["fa_per_hour"] <= 60
    assert {k["threshold"] for k in common["per_keyword"].values()} == {common["settings"]["threshold"]}
    assert read_onnx_card(onnx_path).streaming == common["settings"]


def test_false_accepts_are_listed_with_what_was_said_when_they_fired(keywords, stream_model, tmp_path):
    from edgetl.evaluate.stream import evaluate_stream
    from edgetl.export import write_artifact_card
    from edgetl.runtime.artifacts import read_onnx_card

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(stream_model[0].read_bytes())
    card = read_onnx_card(onnx_path)
    card.streaming = {"threshold": 0.05, "thresholds": {}}  # low enough to fire on other speech
    write_artifact_card(onnx_path, card)
    recording = keywords / "_streams_" / "test.wav"
    report = evaluate_stream(onnx_path, recording)
    assert report.false_accepts > 0 and len(report.false_accept_list) == report.false_accepts
    doc = json.loads(recording.with_suffix(".json").read_text())
    said = sorted([(s["start"], s["end"], s["text"]) for s in doc["speech"]]
                  + [(k["start"], k["end"], f"[{k['label']}]") for k in doc["keywords"]])
    for d in report.false_accept_list:
        inside = [text for start, end, text in said if start < d["time"] and end > d["start"]]
        assert d["heard"] == " / ".join(inside)
    assert any(d["heard"] for d in report.false_accept_list)  # most windows hold speech
    result = CliRunner().invoke(cli, ["evaluate", str(onnx_path), "--stream", str(recording)])
    assert result.exit_code == 0, result.output
    assert "false accepts (" in result.output and "heard" in result.output and "read in blocks" in result.output
    live = evaluate_stream(onnx_path, recording, live=True)  # one hop per call, as a microphone feeds it
    assert live.live and not report.live
    assert (live.false_accept_list, live.per_keyword) == (report.false_accept_list, report.per_keyword)
    assert [p["frr"] for p in live.det] == [p["frr"] for p in report.det]


def test_stream_evaluation_refuses_what_cannot_be_measured(speech_run, keywords, stream_model, tmp_path, tiny_run):
    streams = keywords / "_streams_"
    runner = CliRunner()
    test_wav = str(streams / "test.wav")
    result = runner.invoke(cli, ["evaluate", str(stream_model[0]), "--stream", test_wav, "--target-fa-per-hour", "1"])
    assert_refused(result, "test recording", "validation recording")
    lonely = tmp_path / "lonely.wav"
    sf.write(lonely, np.zeros(RATE * 3, np.float32) + 0.01, RATE)
    assert_refused(runner.invoke(cli, ["evaluate", str(stream_model[0]), "--stream", str(lonely)]),
                   "no keyword times", "label,start,end")
    (tmp_path / "other.csv").write_text("label,start,end\nhello,1.0,1.5\n")
    sf.write(tmp_path / "other.wav", np.zeros(RATE * 3, np.float32) + 0.01, RATE)
    assert_refused(runner.invoke(cli, ["evaluate", str(stream_model[0]), "--stream", str(tmp_path / "other.wav")]),
                   "does not know: hello")
    assert_refused(runner.invoke(cli, ["evaluate", str(tiny_run), "--stream", test_wav]), "needs an audio model")
    assert_refused(runner.invoke(cli, ["evaluate", str(stream_model[0])]), "either --data")
    assert_refused(runner.invoke(cli, ["evaluate", str(stream_model[0]), "--data", str(keywords), "--hop-ms", "50"]),
                   "--hop-ms apply to --stream")
    for bad in (["--hop-ms", "0"], ["--smoothing", "0"], ["--target-fa-per-hour", "-1"]):
        assert_refused(runner.invoke(cli, ["evaluate", str(stream_model[0]), "--stream", test_wav, *bad]),
                       "must be")
    assert_refused(runner.invoke(cli, ["evaluate", str(stream_model[0]), "--stream", test_wav, "--refractory-ms", "-1"]),
                   "refractory_ms cannot be negative")
    assert_refused(runner.invoke(cli, ["evaluate", str(stream_model[0]), "--stream", test_wav, "--thresholds",
                                       "per-keyword"]), "--thresholds chooses", "--target-fa-per-hour")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    (tmp_path / "notes.csv").write_text("label,start,end\n")
    assert_refused(runner.invoke(cli, ["evaluate", str(stream_model[0]), "--stream", str(not_audio)]),
                   "cannot read audio")


def test_predict_lists_the_keywords_of_a_recording_alike_on_every_backend(speech_run, keywords, stream_model):
    from edgetl.runtime.predict import predict

    test_wav = keywords / "_streams_" / "test.wav"
    clip = next((keywords / "test" / "yes").glob("*.wav"))
    answers = [predict(a, [test_wav, clip]) for a in (speech_run, *stream_model)]
    for stream, single in answers:
        assert stream.ok and stream.detections is not None and single.detections is None
        assert [d["label"] for d in stream.detections] == stream.labels
        times = [d["time"] for d in stream.detections]
        assert times == sorted(times) and all(0 < t <= 60.0 for t in times)
    reference = answers[0][0]
    assert reference.detections  # a minute of speech with keywords in it
    for stream, _ in answers[1:]:
        assert [(d["label"], d["time"]) for d in stream.detections] == \
            [(d["label"], d["time"]) for d in reference.detections]


def test_a_stream_computes_each_frame_and_window_once_and_scores_as_the_whole_model(stream_model, keywords):
    """Per backend: scored part by part (each log-mel frame once, as its audio arrives;
    one new embedding per hop) the stream gets the scores and detections of the whole
    model run on every window, live (one hop per call) and from a file's blocks; the
    embedding's stages compute each of their columns once."""
    from edgetl.runtime import open_runner

    test_wav = keywords / "_streams_" / "test.wav"
    for artifact in stream_model:
        with open_runner(artifact, threads=1) as runner:
            assert runner.card.parts["tensors"] and runner.card.streaming["hop_ms"] == 80  # one embedding step
            assert len(runner.card.parts.get("stages", [])) == 4  # cut after its 3 poolings along the frames (export)
            shared, whole = KeywordDetector(runner, record=True), KeywordDetector(runner, record=True, share=False)
            blocks = KeywordDetector(runner, record=True)
            found = {d: [(x.label, x.time) for x in detect_file(d, test_wav, chunk_seconds=0.08)] for d in (shared, whole)}
            found[blocks] = [(x.label, x.time) for x in detect_file(blocks, test_wav)]
            at_100 = KeywordDetector(runner, StreamingSettings(hop_ms=100))
        heard = np.flatnonzero(shared.probabilities().sum(axis=1) > 0)  # hops whose window was shown to the model
        runs = 1 + int((np.diff(heard) > 1).sum())
        firsts = [((h + 1) * shared.hop - shared.window) // 160 for h in heard]  # each heard window's first frame
        frames = {f for first in firsts for f in range(first, first + 97)}
        for detector in (shared, blocks):
            parts = detector.shared
            assert parts is not None and whole.shared is None and parts.incremental, detector.sharing
            assert found[detector] == found[whole] and found[detector]
            assert np.allclose(detector.probabilities(), whole.probabilities(), atol=1e-5, rtol=0)
            assert parts.reused + parts.computed == 3 * len(heard)  # three windows each
            assert len(heard) <= parts.computed <= len(heard) + 2 * runs  # one new embedding per hop
            assert parts.frames_computed == len(frames)  # every frame of the stream computed once
            assert parts.columns_computed == _columns_needed(parts, firsts)  # and every column of every stage
        assert shared.shared.frontend_calls == shared.shared.embed_calls == len(heard)  # one call per hop heard
        # from blocks: one front-end call and one embedding pass per batch of hops, not per hop
        assert blocks.shared.frontend_calls == blocks.shared.embed_calls <= len(heard) / 16
        assert at_100.shared is None and "multiple of 1280 samples" in at_100.sharing


def test_int8_models_stream_as_their_whole_model(stream_model, keywords, tmp_path):
    """INT8 for ONNX Runtime (QDQ, through the embedding's stages) and OpenVINO
    (FakeQuantize: the windows the front-end's frames make are quantized in the part as
    in the whole model; no cuts between quantized layers, which OpenVINO computes apart
    differently; the front-end's element-wise tail on the per-window side, which OpenVINO
    folds anew in each compiled graph) score a recording read in blocks as the whole model
    scores each window, and detect the same keywords at the same times."""
    from edgetl.quantize import quantize
    from edgetl.runtime import open_runner
    from edgetl.runtime.artifacts import read_card

    test_wav = keywords / "_streams_" / "test.wav"
    for target, suffix in (("onnxruntime", ".onnx"), ("openvino", ".xml")):
        int8 = quantize(stream_model[0], target, calib=keywords, samples=48, out=tmp_path / f"m.int8{suffix}").out
        if target == "onnxruntime":  # the three windows of the same frames are rounded alike
            import onnx

            graph = onnx.load(str(int8)).graph
            made = {o: n for n in graph.node for o in n.output}
            windows = made[read_card(int8).parts["tensors"]["windows"]]
            assert len({tuple(made[i].input[1:]) for i in windows.input}) == 1
        with open_runner(int8, threads=1) as runner:
            shared, whole = KeywordDetector(runner, record=True), KeywordDetector(runner, record=True, share=False)
            found = [[(d.label, round(d.time, 3)) for d in detect_file(det, test_wav)] for det in (shared, whole)]
        assert shared.shared is not None and bool(shared.shared.stages) == runner.int8_cuts_exact
        apart = np.abs(shared.probabilities() - whole.probabilities()).max(axis=1)
        spread = (target, np.percentile(apart, [50, 90, 99]))
        if target == "openvino":  # frames, windows and quantizers as in the whole graph: the same scores
            assert apart.max() <= 1e-4, spread
        else:  # a frame computed from other samples of a block may differ by a float rounding that
            # flips a quantization level: rare hops apart, never most of them
            assert (apart <= 1e-4).mean() >= 0.95, spread
        assert found[0] == found[1] and found[0], target


def _columns_needed(parts, firsts: list[int]) -> list[int]:
    """How many distinct columns each of the embedding's stages has to compute for windows
    starting at the frames `firsts`: the embeddings of their windows, and back through
    the stages, the columns those depend on."""
    needed = [set() for _ in parts.stages]
    needed[-1] = {(f + s - parts.origin) // parts.step for f in firsts for s in parts.starts}
    for k in range(len(parts.stages) - 1, 0, -1):
        stride, width = parts.stages[k]["stride"], parts.stages[k]["width"]
        needed[k - 1] = {c for i in needed[k] for c in range(i * stride, i * stride + width)}
    return [len(n) for n in needed]


def test_a_model_without_a_fixed_floor_streams_each_whole_window(stream_model, keywords, tmp_path):
    """A card without `floor_db` (models made before the fixed floor): the front-end runs on
    every whole window and an embedding is reused only when its frames are the same."""
    import shutil

    from edgetl.runtime import open_runner
    from edgetl.runtime.artifacts import read_card, write_card

    old = tmp_path / "old.onnx"
    shutil.copyfile(stream_model[0], old)
    card = read_card(old)
    card.parts = {k: v for k, v in card.parts.items() if k not in ("floor_db", "frame_context")}
    write_card(old, card)
    with open_runner(old, threads=1) as runner:
        detector = KeywordDetector(runner, record=True)
        detect_file(detector, keywords / "_streams_" / "test.wav", chunk_seconds=0.08)
    parts = detector.shared
    heard = int((detector.probabilities().sum(axis=1) > 0).sum())
    assert parts is not None and not parts.incremental and detector.sharing == "embeddings of overlapping windows reused"
    assert parts.frontend_calls == heard and parts.frames_computed == 97 * heard


def test_stream_evaluation_refuses_recordings_and_settings_that_measure_nothing(stream_model, tmp_path):
    """A recording shorter than a window, one without keywords, smoothing longer than the
    recording and a missing recording are each named, never reported as FRR 0% or 100%."""
    runner = CliRunner()
    model = str(stream_model[0])

    def recording(name: str, seconds: float, keywords: str) -> str:
        sf.write(tmp_path / f"{name}.wav", np.random.default_rng(0).uniform(-0.1, 0.1, int(RATE * seconds))
                 .astype(np.float32), RATE)
        (tmp_path / f"{name}.csv").write_text("label,start,end\n" + keywords)
        return str(tmp_path / f"{name}.wav")

    short = recording("short", 0.5, "yes,0.1,0.4\n")
    assert_refused(runner.invoke(cli, ["evaluate", model, "--stream", short]), "lasts 0.50 s, less than one")
    silent_of_keywords = recording("none", 3.0, "")
    assert_refused(runner.invoke(cli, ["evaluate", model, "--stream", silent_of_keywords]), "list no keyword")
    three = recording("three", 3.0, "yes,1.0,1.5\n")
    assert_refused(runner.invoke(cli, ["evaluate", model, "--stream", three, "--smoothing", "100"]),
                   "longer than the recording")
    assert_refused(runner.invoke(cli, ["evaluate", model, "--stream", three, "--smoothing", "100000"]),
                   "--smoothing must be at least 1 and at most 100")
    assert_refused(runner.invoke(cli, ["evaluate", model, "--stream", str(tmp_path / "gone.wav")]),
                   "gone.wav does not exist")
    assert_refused(runner.invoke(cli, ["evaluate", model, "--stream", three, "--threads", "0"]), "--threads")


def test_predict_listens_to_a_recording_on_one_thread_and_says_its_real_time_factor(stream_model, keywords,
                                                                                   monkeypatch):
    """A hop's work is too small to split: on a recording, predict opens the model with one
    thread unless --threads says otherwise (a clip keeps the default), and reports the
    real-time factor."""
    import sys

    from edgetl.runtime.predict import predict

    predict_module = sys.modules["edgetl.runtime.predict"]  # edgetl.runtime.predict is also the function's name
    opened = []

    def spy(*args, **kwargs):
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    real_open = predict_module.open_runner
    monkeypatch.setattr(predict_module, "open_runner", spy)
    monkeypatch.setattr("edgetl.core.threads.usable_cores", lambda: 8)  # the default would be 4
    recording = keywords / "_streams_" / "test.wav"
    clip = next((keywords / "test").rglob("*.wav"))
    for files, expected in (([recording], 1), ([clip], 4)):
        result = predict(stream_model[0], files)
        assert opened[-1]._opts.intra_op_num_threads == expected, files  # read back from ONNX Runtime
    assert predict(stream_model[0], [recording], threads=2) and opened[-1]._opts.intra_op_num_threads == 2
    stream = predict(stream_model[0], [recording])[0]
    assert stream.detections is not None and 0 < stream.real_time_factor < 1
    assert result[0].real_time_factor is None  # a clip is not a stream
    cli_result = CliRunner().invoke(cli, ["predict", str(stream_model[0]), str(recording)])
    assert cli_result.exit_code == 0 and "real-time factor" in cli_result.output
