"""The audio modality: odd files, resampling, the log-mel front-end against openWakeWord's
ONNX files, the keywords data set, and a speech model through finetune, export,
evaluate and INT8 with its front-end in float."""
from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
from click.testing import CliRunner
from conftest import assert_refused

from edgetl.cli import cli
from edgetl.core.errors import DataError
from edgetl.modality import decode_split
from edgetl.modality.audio import AudioPreprocessing, fit_window, read_audio

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (make test installs it with apt-get where it can)")


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


def odd_audio_files(folder) -> dict[str, str]:
    """Files users feed a speech tool, by name -> what should happen ("ok" or a reason)."""
    folder.mkdir(parents=True, exist_ok=True)
    stereo = np.stack([tone(440, 44100), tone(440, 44100)], axis=1)
    sf.write(folder / "stereo_44k_float.wav", stereo, 44100, subtype="FLOAT")
    sf.write(folder / "phone_8k.wav", tone(440, 8000), 8000, subtype="PCM_16")
    sf.write(folder / "eight_bit.wav", tone(440, 16000), 16000, subtype="PCM_U8")
    sf.write(folder / "twentyfour_bit.wav", tone(440, 48000), 48000, subtype="PCM_24")
    sf.write(folder / "thirtytwo_bit.wav", tone(440, 22050), 22050, subtype="PCM_32")
    sf.write(folder / "long_3s.flac", tone(440, 16000, 3.0), 16000, subtype="PCM_16")
    sf.write(folder / "short.ogg", tone(440, 16000, 0.3), 16000, format="OGG", subtype="VORBIS")
    sf.write(folder / "UPPER.WAV", tone(440, 16000), 16000)
    sf.write(folder / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    good = (folder / "phone_8k.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(good[:30])  # a header cut short
    (folder / "not_audio.wav").write_bytes(b"this is a text file, not a recording\n" * 20)
    (folder / "notes.txt").write_text("not a clip")
    return {"stereo_44k_float.wav": "ok", "phone_8k.wav": "ok", "eight_bit.wav": "ok", "twentyfour_bit.wav": "ok",
            "thirtytwo_bit.wav": "ok", "long_3s.flac": "ok", "short.ogg": "ok", "UPPER.WAV": "ok",
            "silent.wav": "silent", "empty.wav": "empty", "truncated.wav": "cannot read",
            "not_audio.wav": "cannot read"}


def test_odd_audio_files_decode_to_one_window_or_are_named_in_one_warning(tmp_path, caplog):
    from edgetl.data.folders import open_folder

    expected = {}
    for cls in ("a", "b"):
        expected = odd_audio_files(tmp_path / cls)
    splits = open_folder(tmp_path, val_split=0.0, modality="audio")
    assert len(splits["train"]) == 2 * len(expected)  # notes.txt is not a clip; suffixes in any case
    pre = AudioPreprocessing()
    with caplog.at_level(logging.WARNING, logger="edgetl"):
        waves, labels = decode_split(splits["train"], pre)
    good = [n for n, what in expected.items() if what == "ok"]
    assert waves.shape == (2 * len(good), 16000) and waves.dtype == np.float32
    assert list(np.bincount(labels)) == [len(good), len(good)]
    for wave in waves:  # every good file holds the same 440 Hz tone, whatever its rate or format
        assert abs(peak_hz(wave[np.abs(wave) > 0] if (np.abs(wave) > 0).sum() > 2000 else wave) - 440) < 20
    warnings = [r.getMessage() for r in caplog.records]
    bad = [n for n, what in expected.items() if what != "ok"]
    assert len(warnings) == 1 and f"skipped {2 * len(bad)} unreadable, empty or silent clip(s)" in warnings[0]
    for name, reason in expected.items():
        if reason != "ok":
            with pytest.raises(DataError, match=reason):
                read_audio(tmp_path / "a" / name)


def test_a_class_left_without_readable_clips_is_an_error(tmp_path):
    from edgetl.data.folders import open_folder

    for cls in ("yes", "no"):
        (tmp_path / cls).mkdir()
        sf.write(tmp_path / cls / "ok.wav", tone(300, 16000), 16000)
    (tmp_path / "no" / "ok.wav").write_bytes(b"RIFF....garbage")
    with pytest.raises(DataError, match="no readable audio clips left for class\\(es\\) no"):
        decode_split(open_folder(tmp_path, val_split=0.0, modality="audio")["train"], AudioPreprocessing())


@pytest.mark.parametrize("rate, freq", [(8000, 1000.0), (44100, 3000.0), (48000, 7000.0), (11025, 2500.0)])
def test_resampling_keeps_a_tones_frequency_and_level(tmp_path, rate, freq):
    path = tmp_path / "t.wav"
    sf.write(path, tone(freq, rate, 2.0), rate, subtype="PCM_16")
    wave = read_audio(path)
    assert len(wave) == pytest.approx(32000, abs=2)
    assert abs(peak_hz(wave) - freq) < 5
    assert np.sqrt(np.mean(wave[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_resampling_filters_what_the_target_rate_cannot_hold(tmp_path):
    """A 10 kHz tone in a 48 kHz file is above 16 kHz's Nyquist frequency: an
    anti-aliasing resampler removes it instead of folding it down to 6 kHz."""
    path = tmp_path / "high.wav"
    sf.write(path, tone(10000, 48000) + tone(1000, 48000, amplitude=0.1), 48000, subtype="FLOAT")
    wave = read_audio(path)
    spectrum = np.abs(np.fft.rfft(wave))
    folded = spectrum[int(6000 * len(wave) / 16000)]
    kept = spectrum[int(1000 * len(wave) / 16000)]
    assert folded < kept / 100


def test_longer_clips_give_their_loudest_window_and_shorter_are_centred():
    wave = np.zeros(48000, np.float32)
    wave[30000:34000] = 0.8
    window = fit_window(wave, 16000, 160)
    assert len(window) == 16000 and np.isclose(np.abs(window).sum(), 0.8 * 4000)
    short = fit_window(np.ones(4000, np.float32), 16000, 160)
    assert short[:6000].sum() == 0 and short[6000:10000].sum() == 4000 and short[10000:].sum() == 0


@needs_espeak
def test_frontend_matches_openwakewords_melspectrogram_onnx(tmp_path):
    """On synthesized speech, within 1e-3 of `melspectrogram.onnx` followed by x/10 + 2
    (the package feeds it samples at int16 scale) with the ONNX file's floor (80 dB under
    the loudest value); with edgetl's fixed floor, alike wherever neither floor binds."""
    import onnxruntime as ort
    import torch

    from edgetl.backbones.frontend import LogMel
    from edgetl.backbones.speech import embedding_onnx_file

    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-gb+f3", "-w", str(path), "turn the lights off in the kitchen"], check=True)
    wave = read_audio(path)
    session = ort.InferenceSession(str(embedding_onnx_file().with_name("melspectrogram.onnx")))
    reference = np.squeeze(session.run(None, {"input": wave[None] * 32768})[0]) / 10 + 2
    with torch.no_grad():
        ours = LogMel(floor_db=None)(torch.from_numpy(wave)[None])[0].numpy()
        fixed = LogMel()(torch.from_numpy(wave)[None])[0].numpy()
    assert ours.shape == reference.shape == fixed.shape and ours.shape[1] == 32
    assert np.abs(ours - reference).max() < 1e-3
    assert reference.max() - reference.min() > 5  # real speech, not a flat spectrum
    floors = max(reference.min(), fixed.min())
    assert fixed.min() == pytest.approx(LogMel().floor_db / 10 + 2)  # the fixed floor, in feature units
    sound = reference > floors + 0.01
    assert sound.mean() > 0.5 and np.abs(fixed[sound] - reference[sound]).max() < 1e-3


@needs_espeak
def test_speech_embedding_reproduces_the_packaged_onnx_model(tmp_path):
    import onnxruntime as ort
    import torch

    from edgetl.backbones import build_backbone
    from edgetl.backbones.speech import embedding_onnx_file

    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+m3", "-w", str(path), "stop the music now please"], check=True)
    model = build_backbone("speech_embedding").features.eval()
    with torch.no_grad():
        mel = model.frontend(torch.from_numpy(read_audio(path))[None])
        windows = torch.stack([mel[0, s:s + 76] for s in (0, 8, 16)])
        ours = model.embedding(windows).numpy()
    session = ort.InferenceSession(str(embedding_onnx_file()))
    reference = session.run(None, {session.get_inputs()[0].name: windows[..., None].numpy()})[0].reshape(3, 96)
    assert np.abs(ours - reference).max() < 1e-3 * np.abs(reference).max()


# ---------------------------------------------------------------- the keywords data set

def test_keywords_are_split_by_voice_with_noise_and_unknown_words(keywords):
    marker = json.loads((keywords / "edgetl-data.json").read_text())
    voices = {split: set(v) for split, v in marker["voices"].items()}
    assert voices["train"] and voices["val"] and voices["test"]
    assert not (voices["train"] & voices["val"]) and not (voices["train"] & voices["test"])
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (keywords / split).iterdir()) == ["_unknown_", "no", "stop", "yes"]
        heard = {"+".join(f.stem.split("_")[1:3]) for f in (keywords / split).rglob("*.wav")}  # WORD_ACCENT_VARIANT_N
        assert heard == voices[split]
    unknown_words = {f.name.split("_")[0] for f in (keywords / "train" / "_unknown_").glob("*.wav")}
    assert unknown_words and not unknown_words & {"yes", "no", "stop"}
    # as many _unknown_ clips per voice and take as keywords, mostly running speech
    from edgetl.data.keywords import unknown_clips

    clips = list((keywords / "train" / "_unknown_").glob("*.wav"))
    running = [f for f in clips if f.name.startswith("speech_")]
    assert len(clips) == len(voices["train"]) * marker["takes"] * 3 == len(list((keywords / "train").rglob("*.wav"))) / 2
    assert len(running) == len(voices["train"]) * marker["takes"] * unknown_clips(3)[1] > len(clips) / 2
    for n in (2, 3, 10, 35):
        words, speech = unknown_clips(n)
        assert words + speech == max(3, n) and 1 <= words < speech
    info = sf.info(next((keywords / "train" / "yes").glob("*.wav")))
    assert (info.samplerate, info.frames, info.channels) == (16000, 16000, 1)
    assert len(list((keywords / "_background_noise_").glob("*.wav"))) == 4


def test_background_noise_is_not_a_class_and_is_what_training_mixes_in(keywords):
    import torch

    from edgetl.data.folders import open_folder
    from edgetl.finetune.inputs import training_input
    from edgetl.finetune.settings import FinetuneSettings

    splits = open_folder(keywords, modality="audio")
    assert "_background_noise_" not in splits.classes and "_unknown_" in splits.classes
    pre = AudioPreprocessing()
    cfg = FinetuneSettings.from_options(noise_snr_db=(10.0, 10.0), noise_prob=1.0, shift_ms=0, gain_db=0)
    transform = training_input(pre, "cpu", cfg, keywords)
    assert transform.noise_source.startswith("4 file(s)")
    clean = torch.from_numpy(decode_split(splits["val"], pre)[0][:8])
    noisy = transform.augmented(clean, torch.Generator().manual_seed(0))
    added = noisy - clean
    snr = 10 * torch.log10(clean.pow(2).mean(1) / added.pow(2).mean(1))
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.5)  # the requested SNR, clip by clip
    assert not torch.equal(transform.model_input(clean), noisy)
    assert torch.equal(transform.model_input(clean), clean)  # evaluation sees the clips as they are


def test_held_out_voices_fix_the_val_and_test_voices_and_train_on_the_rest(tmp_path):
    from edgetl.data.keywords import split_voices

    voices = [f"v{i}" for i in range(50)]
    split = split_voices(voices, seed=0, held_out=6)
    assert [len(split[k]) for k in ("val", "test", "train")] == [6, 6, 38]
    assert sorted(sum(split.values(), [])) == sorted(voices)  # disjoint, and every voice used
    assert [len(split_voices(voices, seed=0)[k]) for k in ("val", "test")] == [8, 8]  # 15% each by default
    for bad in ("0", "25"):
        result = CliRunner().invoke(cli, ["data", "keywords", str(tmp_path / "kw"), "--voices", "50",
                                          "--held-out-voices", bad])
        assert_refused(result, f"--held-out-voices {bad} does not fit 50 voices")
        assert not (tmp_path / "kw").exists()


def test_missing_espeak_names_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = CliRunner().invoke(cli, ["data", "keywords", str(tmp_path / "kw"), "--voices", "3"])
    assert_refused(result, "espeak-ng is not installed", "apt-get install espeak-ng")
    assert not (tmp_path / "kw").exists()


# ---------------------------------------------------------------- a speech model end to end

def test_speech_model_exports_through_the_parity_gate_and_evaluates_the_same_everywhere(speech_run, keywords):
    from edgetl.core.card import ModelCard
    from edgetl.evaluate.accuracy import evaluate
    from edgetl.export import export_run

    card = ModelCard.load(speech_run)
    assert card.modality == "audio" and card.input["shape"] == [None, 16000]
    assert card.preprocessing["sample_rate"] == 16000
    result = export_run(speech_run, openvino=True)
    assert all(p.passed and p.agreement == 1.0 for p in result.parity)
    assert _stored_dft_kernels(result.onnx) == [] and _stored_dft_kernels(result.openvino) == []
    accuracies = {a: evaluate(a, keywords, split="test").accuracy for a in (speech_run, result.onnx, result.openvino)}
    assert len(set(accuracies.values())) == 1, accuracies
    assert accuracies[speech_run] > 1 / len(card.labels)  # better than chance on voices never heard


def test_bench_measures_a_speech_run_on_the_clips_like_evaluate(speech_run, keywords, tmp_path):
    from edgetl.evaluate.accuracy import evaluate
    from edgetl.export import export_run

    if not (speech_run / "model.onnx").exists():
        export_run(speech_run)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["-q", "bench", str(speech_run / "model.onnx"), "--data", str(keywords),
                                      "--split", "test", "--batch-sizes", "1", "--iters", "3", "--warmup", "0",
                                      "--threads", "1", "--json-file", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["p50_ms"] > 0
    assert rows[0]["accuracy"] == pytest.approx(evaluate(speech_run / "model.onnx", keywords, split="test").accuracy)


def test_predict_gives_the_same_answer_on_every_backend_from_raw_clips(speech_run, keywords, tmp_path):
    from edgetl.export import export_run
    from edgetl.runtime.predict import predict

    if not (speech_run / "model.xml").exists():
        export_run(speech_run, openvino=True, overwrite=True)
    stereo = tmp_path / "stereo_44k.wav"  # a clip as a phone or a DAW would save it
    wave, rate = sf.read(next((keywords / "test" / "yes").glob("*.wav")))
    sf.write(stereo, np.stack([wave, wave], 1), rate)
    files = sorted((keywords / "test").rglob("*.wav"))[:12] + [stereo]
    answers = {a: predict(speech_run / a if a else speech_run, files, top_k=3)
               for a in ("", "model.onnx", "model.xml")}
    reference = answers[""]
    assert all(r.ok for r in reference)
    for artifact, results in answers.items():
        assert [r.labels[0] for r in results] == [r.labels[0] for r in reference], artifact
        assert np.allclose([r.scores for r in results], [r.scores for r in reference], atol=1e-4), artifact


def test_predict_takes_phone_audio_and_names_what_it_cannot_use(speech_run, keywords, tmp_path):
    """8 kHz mono and 44.1 kHz stereo clips are resampled like training data; a WAV with a
    header and no samples, an empty file, an image and a folder each get their own remedy."""
    from edgetl.runtime.predict import predict

    wave, rate = sf.read(next((keywords / "test" / "yes").glob("*.wav")))
    phone = tmp_path / "phone_8k.wav"
    sf.write(phone, soxr.resample(wave, rate, 8000), 8000)
    header_only = tmp_path / "header_only.wav"
    sf.write(header_only, np.zeros(0), 16000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"\xff\xd8\xff")
    results = predict(speech_run, [phone, header_only, empty, image, tmp_path])
    assert results[0].ok and results[0].labels
    errors = [(r.error, r.hint) for r in results[1:]]
    assert all(e and h for e, h in errors), errors
    assert "header_only.wav" in errors[0][0] and "empty" in errors[1][0]
    assert "takes audio clips" in errors[2][0] and "is a folder" in errors[3][0] and "/*" in errors[3][1]
    refused = CliRunner().invoke(cli, ["-q", "predict", str(speech_run), str(image)])
    assert_refused(refused, "takes audio clips")
    assert ".wav" in refused.stderr.splitlines()[-1]  # the hint names what the model takes


def _frontend_inputs_dequantized(onnx_path) -> list[str]:
    import onnx

    model = onnx.load(str(onnx_path))
    producers = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.name.startswith("frontend/")
            and any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input)]


def _stored_dft_kernels(model) -> list[str]:
    """Weights of an ONNX or OpenVINO model as large as the front-end's DFT kernels (the
    export generates them in the graph instead)."""
    size = 514 * 512
    if model.suffix == ".xml":
        import openvino as ov

        return [op.get_friendly_name() for op in ov.Core().read_model(str(model)).get_ops()
                if op.get_type_name() == "Constant" and op.get_output_partial_shape(0).is_static
                and math.prod(op.get_output_shape(0)) >= size]
    import onnx

    return [i.name for i in onnx.load(str(model)).graph.initializer if math.prod(i.dims) >= size]


@pytest.mark.parametrize("target", ["openvino", "onnxruntime", "tensorrt"])
def test_int8_speech_model_keeps_its_frontend_in_float_within_the_bound(speech_run, target):
    """What is checked here is where quantization happens; the bound is loose because the
    model is a 6-epoch fine-tune on 24 validation clips (one answer is 4 pt, and its
    top-1 margins are small). benchmarks/speech.py measures the drop on a real-sized set."""
    from edgetl.export import export_run
    from edgetl.quantize import quantize

    onnx_path = speech_run / "model.onnx"
    if not onnx_path.exists():
        export_run(speech_run)
    result = quantize(onnx_path, target, max_drop=0.2, overwrite=True)
    assert result.fp32_accuracy - result.int8_accuracy <= 0.2 + 1e-9
    assert _stored_dft_kernels(result.out) == []  # generated in the graph, on every target
    stored = result.out.with_suffix(".bin") if target == "openvino" else result.out
    if target != "tensorrt":  # TensorRT's Q/DQ model keeps float weights behind its Q/DQ pairs
        assert stored.stat().st_size < 500_000  # INT8 weights only: the DFT took 1 MB
    if target == "openvino":
        import openvino as ov

        model = ov.Core().read_model(str(result.out))
        fq_fed = [op.get_friendly_name() for op in model.get_ops() if op.get_friendly_name().startswith("frontend/")
                  and any(i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs())]
        quantized = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        assert quantized > 0 and fq_fed == []
    else:
        import onnx

        graph = onnx.load(str(result.out)).graph
        assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 0
        assert _frontend_inputs_dequantized(result.out) == []
        assert any(n.name.startswith("frontend/") and n.op_type == "Conv" for n in graph.node)


def test_a_folder_of_the_other_modality_is_named_as_such(tmp_path, tiny_digits):
    for cls in ("yes", "no"):
        (tmp_path / "kw" / cls).mkdir(parents=True)
        for i in range(3):
            sf.write(tmp_path / "kw" / cls / f"{i}.wav", tone(300 + 100 * i, 16000), 16000)
    runner = CliRunner()
    result = runner.invoke(cli, ["finetune", str(tmp_path / "kw"), "--backbone", "resnet18", "--weights", "none",
                                 "--out", str(tmp_path / "run")])
    assert_refused(result, "holds audio clips, but this model or backbone takes images")
    result = runner.invoke(cli, ["finetune", str(tiny_digits), "--backbone", "kws_cnn", "--out", str(tmp_path / "r2")])
    assert_refused(result, "holds images, but this model or backbone takes audio clips")
    result = runner.invoke(cli, ["finetune", str(tmp_path / "kw"), "--backbone", "kws_cnn", "--input-size", "64",
                                 "--out", str(tmp_path / "r3")])
    assert_refused(result, "--input-size applies to image backbones")
    assert not any(p.name.startswith(("run", "r2", "r3")) for p in tmp_path.iterdir())


@pytest.mark.parametrize("name", ["wav2vec2_base", "hubert_base"])
def test_self_supervised_speech_backbones_follow_the_contract(name):
    import torch

    from edgetl.backbones import build_backbone

    b = build_backbone(name, "none")
    assert b.modality == "audio" and b.feature_dim == 768 and len(b.stages) == 14
    staged = [id(p) for s in b.stages for p in s.parameters()]
    assert len(staged) == len(set(staged)) and set(staged) == {id(p) for p in b.features.parameters()}
    with torch.no_grad():
        assert b.features.eval()(torch.zeros(2, 16000)).shape == (2, 768)


def test_self_supervised_weights_come_from_torch_hubs_cache_or_fail_offline_with_the_path(tmp_path, monkeypatch):
    import torch

    from edgetl.backbones import build_backbone
    from edgetl.core.errors import WeightsUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailable) as exc:
        build_backbone("wav2vec2_base")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "wav2vec2_fairseq_base_ls960.pth"
    assert str(cached) in exc.value.message and "download.pytorch.org/torchaudio" in exc.value.hint
    trained = build_backbone("wav2vec2_base", "none").features.model
    cached.parent.mkdir(parents=True)
    torch.save(trained.state_dict(), cached)  # torchaudio's own checkpoint layout
    for weights in ("default", str(cached)):
        loaded = build_backbone("wav2vec2_base", weights).features.model
        assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), loaded.state_dict().values()))


def test_silence_class_is_made_from_background_noise(keywords, tmp_path, tiny_digits):
    from edgetl import finetune
    from edgetl.core.card import ModelCard
    from edgetl.evaluate.accuracy import evaluate

    r = finetune(keywords, "kws_cnn", tmp_path / "run", epochs=1, batch_size=16, silence_class=True)
    card = ModelCard.load(r.out)
    assert card.labels == sorted(["_silence_", "_unknown_", "no", "stop", "yes"])
    counts = card.source["train_counts"]
    assert counts["_silence_"] == round(sum(v for k, v in counts.items() if k != "_silence_") / 4)
    report = evaluate(r.out, keywords, split="test")  # the folder has no _silence_: evaluated without it
    assert report.n == sum(1 for _ in (keywords / "test").rglob("*.wav")) and report.per_class["_silence_"] is None
    result = CliRunner().invoke(cli, ["finetune", str(tiny_digits), "--backbone", "resnet18", "--weights", "none",
                                      "--silence-class", "--out", str(tmp_path / "img")])
    assert_refused(result, "--silence-class applies to audio data")


def test_predict_skips_unreadable_clips_pipes_and_impossible_rates_and_goes_on(speech_run, keywords, tmp_path):
    """Among several files, what cannot be read is named with its reason and the rest is
    predicted: a corrupt WAV, a header that declares 1 Hz (not a 50 s recording), and a
    named pipe, which is never opened (it would wait forever for a writer)."""
    import os

    good = next((keywords / "val" / "yes").glob("*.wav"))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")
    one_hz = tmp_path / "one-hz.wav"
    sf.write(one_hz, np.random.default_rng(0).uniform(-0.5, 0.5, 50).astype(np.float32), 1)
    pipe = tmp_path / "pipe.wav"
    os.mkfifo(pipe)
    out = subprocess.run([sys.executable, "-m", "edgetl", "predict", str(speech_run), str(good), str(broken), str(one_hz),
                          str(pipe), "--json", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows[0]["error"] is None and rows[0]["labels"]
    assert "cannot read audio" in rows[1]["error"]
    assert "1 Hz" in rows[2]["error"] and not rows[2].get("detections")
    assert "not a regular file" in rows[3]["error"]
