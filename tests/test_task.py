"""The task contract (edgetl/task) over every registered task, as test_modality does over
modalities: what a label is, decoding, the metric, agreement, what predict shows."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgetl import task as tasks
from edgetl.core.card import ModelCard
from edgetl.core.errors import ArtifactError

LABELS = ["_unknown_", "cat", "dog", "espresso"]


def outputs_for(truths: np.ndarray, n_labels: int, rng) -> np.ndarray:
    """Raw outputs whose prediction is `truths`, with noise under the margin."""
    out = rng.normal(0, 0.3, (len(truths), n_labels)).astype(np.float32)
    out[np.arange(len(truths)), truths] += 3.0
    return out


@pytest.mark.parametrize("name", tasks.names())
def test_every_task_keeps_the_contract(name):
    task = tasks.get(name)
    assert task.name == name and task.metric and task.head_kind
    rng = np.random.default_rng(0)
    truths = rng.integers(0, len(LABELS), 40)
    right = outputs_for(truths, len(LABELS), rng)
    wrong = outputs_for((truths + 1) % len(LABELS), len(LABELS), rng)

    assert np.array_equal(task.predictions(right), truths)
    perfect, poor = task.score(right, truths, LABELS), task.score(wrong, truths, LABELS)
    assert perfect.value == 1.0 and poor.value == 0.0 and perfect.n == 40 and perfect.name == task.metric
    json.dumps(perfect.details)  # plain JSON, for --json and the card
    half = np.where((np.arange(40) % 2 == 0)[:, None], right, wrong)
    assert task.score(half, truths, LABELS).value == pytest.approx(0.5)

    assert task.agree(right, right * 2).all() and not task.agree(right, wrong).any()
    assert task.agree(right, half).mean() == pytest.approx(0.5)

    shown = task.top(right, LABELS, k=3)
    assert len(shown) == 40 and all(len(s) == 3 for s in shown)
    assert all(s[0][0] == LABELS[t] for s, t in zip(shown, truths))
    scores = np.array([[p for _, p in s] for s in shown])
    assert (np.diff(scores, axis=1) <= 0).all() and ((scores >= 0) & (scores <= 1)).all()
    assert len(task.top(right, LABELS, k=10)[0]) == len(LABELS)  # k beyond the labels: all of them

    with pytest.raises(ArtifactError):
        task.check_labels(["cat"])
    with pytest.raises(ArtifactError):
        task.check_labels(["cat", "cat"])
    task.check_labels(LABELS)


def test_keyword_spotting_needs_a_keyword_and_classification_does_not():
    only_unknown = ["_unknown_", "_silence_"]
    tasks.get("classification").check_labels(only_unknown)
    with pytest.raises(ArtifactError, match="at least one keyword"):
        tasks.get("keywords").check_labels(only_unknown)


def test_a_card_names_its_task_and_an_unknown_one_is_a_clear_error():
    card = ModelCard(labels=["a", "b"], modality="image", input={}, preprocessing={})
    assert tasks.task_of(card).name == "classification"  # cards written before the field
    card.task = "keywords"
    assert tasks.task_of(card).name == "keywords"
    card.task = "segmentation"
    with pytest.raises(ArtifactError, match="unknown task 'segmentation'") as err:
        tasks.task_of(card)
    assert "classification" in err.value.hint
