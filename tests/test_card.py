import json

import pytest

from edgetl.core.card import SCHEMA_VERSION, ModelCard
from edgetl.core.errors import ArtifactError


def _card(**kw):
    base = dict(labels=["cat", "dog"], modality="image",
                input={"name": "input", "shape": [None, 3, 32, 32], "dtype": "float32"},
                preprocessing={"kind": "image", "size": [32, 32]})
    base.update(kw)
    return ModelCard(**base)


def test_roundtrip_through_file(tmp_path):
    card = _card(metrics={"val_accuracy": 0.5})
    path = card.save(tmp_path)
    loaded = ModelCard.load(tmp_path)
    assert path.name == "edgetl.json"
    assert loaded == card
    assert loaded.num_classes == 2
    assert "edgetl" in loaded.build and "created" in loaded.build


def test_card_from_newer_schema_is_refused():
    data = _card().to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ArtifactError, match="upgrade|newer|reads up to"):
        ModelCard.from_json(json.dumps(data))


@pytest.mark.parametrize("text, match", [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object"),
                                         ('{"labels": ["a"]}', "lacks the fields")])
def test_bad_card_text(text, match):
    with pytest.raises(ArtifactError, match=match):
        ModelCard.from_json(text)


def test_missing_card(tmp_path):
    with pytest.raises(ArtifactError, match="no model card"):
        ModelCard.load(tmp_path)


def test_unknown_fields_are_ignored_not_evaluated():
    data = _card().to_dict()
    data["__import__('os').system('echo hacked')"] = 1
    assert ModelCard.from_dict(data).labels == ["cat", "dog"]
