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


GOOD = {"labels": ["cat", "dog"], "modality": "image", "input": {"shape": [None, 3, 32, 32]}, "preprocessing": {}}


@pytest.mark.parametrize("field, value, named", [
    ("labels", "cat,dog", "labels must be a list of names"), ("labels", [], "labels must be a list of names"),
    ("labels", ["cat", 3], "labels must be a list of names"), ("modality", 5, "modality must be a name"),
    ("task", "", "task must be a name"), ("precision", "int4", "precision must be one of fp32, fp16, int8"),
    ("input", "x", "input must be an object"), ("source", [], "source must be an object"),
    ("metrics", None, "metrics must be an object"), ("input", {"shape": [None, 3, -1, 32]}, "input.shape must be"),
    ("input", {"shape": "1x3x32x32"}, "input.shape must be"),
])
def test_a_card_with_a_field_of_the_wrong_type_is_named_by_that_field(field, value, named):
    """A card another tool or version wrote: each field is checked for its type when read,
    so a wrong one is one error naming it, not a traceback wherever it is first used."""
    ModelCard.from_dict(dict(GOOD), where="m/edgetl.json")  # the good one reads
    with pytest.raises(ArtifactError, match=f"m/edgetl.json: {named}"):
        ModelCard.from_dict({**GOOD, field: value}, where="m/edgetl.json")
