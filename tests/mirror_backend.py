"""A backend that is not edgetl's, made as a contributor would add one: this Runner
module and one row in the backend table (tests/test_artifacts.py adds the row). It runs
ONNX models through ONNX Runtime under its own name and counts its calls, so a test can
tell that every stage really went through it."""
from __future__ import annotations

import numpy as np

from edgetl.runtime.onnxruntime_runner import OnnxRuntimeRunner


class MirrorRunner(OnnxRuntimeRunner):
    backend = "mirror"
    calls = 0

    def compute(self, batch: np.ndarray) -> np.ndarray:
        type(self).calls += 1
        return super().compute(batch)
