"""The thread count of the sessions quantization libraries open on their own.

edgetl's runners take `threads` (runtime/backends.py), but NNCF compiles OpenVINO models
with a fresh `ov.Core()` and ONNX Runtime's calibrator makes its own session, both at
the libraries' default (every core; see edgetl/core/threads.py for what that costs on a busy
machine). While a quantization runs, `library_threads(n)` gives both `n` threads: an
OpenVINO CPU compilation that names no thread count gets INFERENCE_NUM_THREADS n, and
ONNX Runtime's SessionOptions start with n intra-op threads and one inter-op thread
(a session that sets its own keeps them). torch, for QAT, is set by its own stage.
"""
from __future__ import annotations

import contextlib
import functools

from edgetl.runtime.artifacts import apply_threads


@contextlib.contextmanager
def library_threads(n: int):
    import onnxruntime

    patches = []
    try:
        import openvino as ov

        original = ov.Core.compile_model

        @functools.wraps(original)
        def compile_model(self, model, device_name=None, config=None, **kw):
            if str(device_name or "").upper().startswith("CPU"):
                config = {"INFERENCE_NUM_THREADS": n, **(config or {})}
            return original(self, model, device_name, config, **kw)

        patches.append((ov.Core, "compile_model", original, compile_model))
    except ImportError:  # no OpenVINO: only the ONNX Runtime targets
        pass

    class SessionOptions(onnxruntime.SessionOptions):
        def __init__(self):
            super().__init__()
            apply_threads(self, n)

    patches.append((onnxruntime, "SessionOptions", onnxruntime.SessionOptions, SessionOptions))
    for owner, name, _, new in patches:
        setattr(owner, name, new)
    try:
        yield n
    finally:
        for owner, name, old, _ in reversed(patches):
            setattr(owner, name, old)
