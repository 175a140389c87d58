"""The Preprocessing contract, over every registered modality: what a card records
reads back as the same preprocessing, the dummy input matches the input spec, and a real
file read -> prepare -> normalize gives that shape in float32, as calling it does."""
from __future__ import annotations

import numpy as np
import pytest

from edgetl import modality
from edgetl.core.card import ModelCard


def _digit_png(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = (255 - load_digits().images[0] * (255 / 16)).clip(0, 255).astype(np.uint8)
    path = tmp_path / "digit.png"
    Image.fromarray(pixels, "L").resize((40, 30)).save(path)  # grayscale, not square: the recipe fixes both
    return path


def _stereo_wav(tmp_path):
    import soundfile as sf

    t = np.arange(int(44100 * 1.6)) / 44100  # 44.1 kHz stereo, longer than the window
    wave = 0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t)
    path = tmp_path / "sweep.wav"
    sf.write(path, np.stack([wave, 0.5 * wave], axis=1), 44100, subtype="PCM_16")
    return path


# one real file per modality; a modality registered without one fails below
EXAMPLES = {"image": _digit_png, "audio": _stereo_wav}


def test_every_registered_modality_has_an_example_here():
    assert set(modality.names()) == set(EXAMPLES)


@pytest.mark.parametrize("name", modality.names())
def test_the_card_round_trips_the_preprocessing(name):
    pre = modality.get(name).preprocessing()
    card = ModelCard(labels=["a", "b"], modality=name, input=pre.input_spec(), preprocessing=pre.to_dict())
    again = modality.preprocessing_of(ModelCard.from_json(card.to_json()))
    assert again == pre and again.kind == name


@pytest.mark.parametrize("name", modality.names())
def test_the_dummy_input_matches_the_input_spec(name):
    pre = modality.get(name).preprocessing()
    spec = pre.input_spec()
    x = pre.dummy_input(3)
    assert spec["shape"][0] is None and list(x.shape) == [3, *spec["shape"][1:]]
    assert x.dtype == np.dtype(spec["dtype"]) == np.float32


@pytest.mark.parametrize("name", modality.names())
def test_a_real_file_becomes_one_model_input(name, tmp_path):
    pre = modality.get(name).preprocessing()
    path = EXAMPLES[name](tmp_path)
    assert path.suffix in modality.get(name).suffixes
    cached = pre.prepare(pre.read(path))
    assert cached.shape == tuple(pre.cache_shape) and cached.dtype == np.dtype(pre.cache_dtype)
    x = pre.normalize(cached[None])
    assert x.dtype == np.float32 and list(x.shape) == [1, *pre.input_spec()["shape"][1:]]
    assert np.isfinite(x).all() and np.abs(x).max() > 0
    np.testing.assert_array_equal(pre(path), x[0])
