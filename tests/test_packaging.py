"""The extras bring what their commands import, with pins that fit each other."""
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _bound(requirements: list[str], name: str) -> tuple[int | None, int | None]:
    """(lowest major allowed, first major excluded) of `name`'s requirement."""
    spec = next(r for r in requirements if re.match(rf"{re.escape(name)}\b", r) and not r[len(name)].isalnum()
                and r[len(name)] != "-")
    low = re.search(r">=\s*(\d+)", spec)
    high = re.search(r"<\s*(\d+)", spec)
    return (int(low.group(1)) if low else None, int(high.group(1)) if high else None)


def test_the_tensorrt_extra_pins_one_cuda_major_and_brings_what_build_engine_imports():
    tensorrt = _extras()["tensorrt"]
    wheel = next(r for r in tensorrt if r.startswith("tensorrt"))
    cuda_major = int(re.match(r"tensorrt-cu(\d+)", wheel).group(1))  # the wheel names its CUDA major
    low, high = _bound(tensorrt, f"nvidia-cuda-runtime-cu{cuda_major}")
    assert low == cuda_major and high == cuda_major + 1, tensorrt  # the runtime of TensorRT's CUDA major
    assert not any(r.startswith(("cuda-python", "cuda-bindings")) for r in tensorrt)  # no binding to mismatch
    assert _bound(tensorrt, "tensorrt-cu12")[1] == 11  # 11 drops the weakly typed FP16 build
    imported = {"onnx"}  # quantize/tensorrt_engine.py reads the QDQ model with onnx
    assert imported <= {re.split(r"[<>=!~\[ ]", r)[0] for r in tensorrt}
