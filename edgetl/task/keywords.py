"""Keyword spotting: classification of audio windows, where labels that start with an
underscore (`_unknown_`, `_silence_`) are what a model says when nobody says a keyword and
never fire. On a clip it is classification; on a recording the streaming detector
(runtime/streaming.py) decides, hop by hop, from the same outputs."""
from __future__ import annotations

from edgetl.core.errors import ArtifactError
from edgetl.task.classification import Classification
from edgetl.task.registry import register


def never_fires(label: str) -> bool:
    return label.startswith("_")


class KeywordSpotting(Classification):
    name = "keywords"

    def check_labels(self, labels: list[str]) -> None:
        super().check_labels(labels)
        if all(never_fires(label) for label in labels):
            raise ArtifactError(f"a keyword spotter needs at least one keyword, got only {labels}",
                                hint="labels that start with _ never fire: add a folder per keyword")


KEYWORDS = register(KeywordSpotting())

__all__ = ["KEYWORDS", "KeywordSpotting", "never_fires"]
