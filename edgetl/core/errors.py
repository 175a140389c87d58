"""User-facing errors: one message a user can act on, plus a hint.

The CLI turns every EdgeTLError into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import re

# A message names what the user gave; a value of megabytes (a 10 MB option, a YAML alias
# bomb) is named by its start and its length, not printed whole.
_LONG_WORD = re.compile(r"\S{201,}")


def _bounded(text: str) -> str:
    if len(text) <= 200:
        return text
    return _LONG_WORD.sub(lambda m: f"{m.group()[:80]}...({len(m.group()):,} characters)", text)


class EdgeTLError(Exception):
    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        message, hint = _bounded(message), None if hint is None else _bounded(hint)
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:  # pickled whole (a stage run in another process): the hint too
        return type(self), (self.message, self.hint)


class DataError(EdgeTLError):
    """A data set folder, image or audio file that cannot be used."""


class BackboneError(EdgeTLError):
    """Unknown backbone name or one that cannot be built."""


class WeightsUnavailable(BackboneError):
    """Pretrained weights are neither cached nor downloadable."""


class ArtifactError(EdgeTLError):
    """A run directory, model file or card that is missing, damaged or mismatched."""


class BackendUnavailable(EdgeTLError):
    """A backend whose package is not installed or whose device is absent."""


class ConfigError(EdgeTLError):
    """Options that contradict each other or are out of range."""


class TrainingDiverged(EdgeTLError):
    """The loss became NaN or infinite: nothing is written."""
