"""The task contract (edgetl/task) over every registered task, as test_modality does over
modalities: what a label is, decoding, the metric, agreement, what predict shows, what
the evaluate report lists as mistakes."""
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


class _Truth:
    def __init__(self, boxes, classes):
        self.boxes, self.classes = np.asarray(boxes, np.float32), np.asarray(classes, np.int64)


def detector_outputs(truths: list[_Truth], classes: np.ndarray, n_labels: int, rng, score: float = 0.9,
                     anchors: int = 16) -> np.ndarray:
    """[N, 4 + labels, anchors] in the YOLOv8 layout: each true box on one anchor with
    `score` for `classes` (per image), the other anchors faint noise."""
    out = np.zeros((len(truths), 4 + n_labels, anchors), np.float32)
    out[:, :4] = rng.uniform(10, 20, (len(truths), 4, anchors))
    out[:, 4:] = rng.uniform(0, 0.0005, (len(truths), n_labels, anchors))  # below any decoding threshold
    for i, (truth, c) in enumerate(zip(truths, classes)):
        for j, (x0, y0, x1, y1) in enumerate(truth.boxes):
            out[i, :4, j] = ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
            out[i, 4 + c, j] = score - 0.01 * j
    return out


def classification_example(rng, n: int = 40):
    truths = rng.integers(0, len(LABELS), n)
    return outputs_for(truths, len(LABELS), rng), outputs_for((truths + 1) % len(LABELS), len(LABELS), rng), truths, \
        [LABELS[t] for t in truths]


def detection_example(rng, n: int = 40):
    """One object per image: the right outputs find it with its label, the wrong ones with
    another and less sure (so half right ranks the right ones first: AP 0.5 per class)."""
    classes = rng.integers(0, len(LABELS), n)
    truths = []
    for c in classes:
        x0, y0 = rng.uniform(0, 200, 2)
        truths.append(_Truth([[x0, y0, x0 + rng.uniform(20, 60), y0 + rng.uniform(20, 60)]], [c]))
    right = detector_outputs(truths, classes, len(LABELS), rng)
    wrong = detector_outputs(truths, (classes + 1) % len(LABELS), len(LABELS), rng, score=0.5)
    return right, wrong, truths, [LABELS[c] for c in classes]


EXAMPLES = {"classification": classification_example, "keywords": classification_example,
            "detection": detection_example}


@pytest.mark.parametrize("name", tasks.names())
def test_every_task_keeps_the_contract(name):
    task = tasks.get(name)
    assert task.name == name and task.metric and task.head_kind
    assert name in EXAMPLES, f"a new task needs an example of right and wrong outputs here: {name}"
    rng = np.random.default_rng(0)
    right, wrong, truths, first_labels = EXAMPLES[name](rng)

    perfect, poor = task.score(right, truths, LABELS), task.score(wrong, truths, LABELS)
    assert perfect.value == pytest.approx(1.0) and poor.value == 0.0 and perfect.n == 40
    assert perfect.name == task.metric
    json.dumps(perfect.details)  # plain JSON, for --json and the card
    half = np.where((np.arange(40) % 2 == 0)[:, None, None] if right.ndim == 3 else (np.arange(40) % 2 == 0)[:, None],
                    right, wrong)
    assert task.score(half, truths, LABELS).value == pytest.approx(0.5, abs=0.01)

    assert task.agree(right, right.copy()).all() and not task.agree(right, wrong).any()
    assert task.agree(right, half).mean() == pytest.approx(0.5)

    shown = task.top(right, LABELS, k=3)
    assert len(shown) == 40 and all(1 <= len(s) <= 3 for s in shown)
    assert [s[0][0] for s in shown] == first_labels
    assert all(0 <= p <= 1 and all(b <= a for a, b in zip([q for _, q in s], [q for _, q in s][1:]))
               for s in shown for _, p in s)

    files = [f"sample{i}" for i in range(40)]
    photo = [lambda boxes: boxes] * 40
    assert task.mistakes(right, truths, LABELS, files, photo, limit=100) == []  # nothing wrong, nothing listed
    listed = task.mistakes(half, truths, LABELS, files, photo, limit=100)
    assert sorted(m["file"] for m in listed) == sorted(files[1::2])  # the wrong half, each once
    assert len(task.mistakes(half, truths, LABELS, files, photo, limit=5)) == 5
    json.dumps(listed)  # report.json and --json
    assert task.mistakes_key and task.mistakes_title and task.mistakes_order and task.mistakes_columns

    with pytest.raises(ArtifactError):
        task.check_labels(["cat", "cat"])
    task.check_labels(LABELS)


@pytest.mark.parametrize("name", tasks.names())
def test_every_task_checks_a_devices_answers_against_the_packaged_ones(name):
    """A bundle records each reference file's answer in the task's form; a device that
    predicts the same passes, one that predicts otherwise or whose scores moved beyond the
    tolerance fails, saying what differs."""
    task, rng = tasks.get(name), np.random.default_rng(1)
    right, wrong, _, _ = EXAMPLES[name](rng, n=6)
    photo = [lambda boxes: boxes] * 6  # input pixels are the file's
    packaged = [task.reference_answer(s, LABELS) for s in task.shown(right, LABELS, len(LABELS), photo)]
    json.dumps(packaged)  # bundles store them as JSON
    bumped = right.copy()
    if right.ndim == 2:
        bumped[np.arange(6), right.argmax(1)] += 0.1  # the top label a little surer
    else:
        bumped[:, 4:] *= 1.02  # every object a little surer
    for outputs, same, failure in ((right.copy(), True, None), (wrong, False, "packaged"), (bumped, True, "moved")):
        checks = [task.check_answer(a, s, LABELS, tolerance=1e-3)
                  for a, s in zip(packaged, task.shown(outputs, LABELS, len(LABELS), photo), strict=True)]
        assert all(c.same == same for c in checks), (name, failure)
        if failure is None:
            assert all(c.failure is None and c.diff <= 1e-3 for c in checks)
        else:
            assert all(c.failure and failure in c.failure for c in checks), [c.failure for c in checks]


def test_a_classifier_needs_two_labels_and_shows_them_all():
    rng = np.random.default_rng(0)
    right, _, _, _ = classification_example(rng)
    for name in ("classification", "keywords"):
        with pytest.raises(ArtifactError):
            tasks.get(name).check_labels(["cat"])
        assert len(tasks.get(name).top(right, LABELS, k=10)[0]) == len(LABELS)  # k beyond the labels: all of them
        assert np.array_equal(tasks.get(name).predictions(right), right.argmax(1))
    tasks.get("detection").check_labels(["cat"])  # one class of objects is a detector


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
