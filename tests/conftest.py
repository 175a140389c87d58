"""Shared fixtures: small real data (scikit-learn digits), odd image files, tiny runs."""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Nothing in the tests may download; the registry fails fast with a clear error instead.
os.environ["EDGETL_OFFLINE"] = "1"
# Decoded samples and features go to a cache of the test session, not the user's.
os.environ.setdefault("EDGETL_CACHE_DIR", tempfile.mkdtemp(prefix="edgetl-test-cache-"))


def _digit_images(size: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = (255 - d.images * (255 / 16)).clip(0, 255).astype(np.uint8)
    return [Image.fromarray(p, "L").resize((size, size), Image.Resampling.BICUBIC) for p in pixels], d.target


def write_digit_folder(root: Path, classes=(0, 1, 2), per_split=(("train", 16), ("val", 8)), size: int = 32,
                       offset: int = 0, domain: str | None = None) -> Path:
    """Real digits as a folder data set; `domain` re-renders them shifted (data digits --domain)."""
    images, target = _digit_images(size)
    if domain:
        from edgetl.data.domains import digit_domain

        shift, rng = digit_domain(domain), np.random.default_rng(1)
        images = [shift(np.asarray(im), rng) for im in images]
    for c in classes:
        idx = np.flatnonzero(target == c)[offset:]
        start = 0
        for split, n in per_split:
            folder = root / split / str(c)
            folder.mkdir(parents=True, exist_ok=True)
            for i in idx[start:start + n]:
                images[i].save(folder / f"d{i:04d}.png")
            start += n
    return root


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory) -> Path:
    """3 classes of real handwritten digits: 16 train and 8 val images each, 32 px."""
    return write_digit_folder(tmp_path_factory.mktemp("tiny") / "digits")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_digits) -> Path:
    """A finished linear-probe run of the packaged EfficientNet-Lite0 on tiny_digits."""
    from edgetl import finetune

    out = tmp_path_factory.mktemp("runs") / "lite0"
    finetune(tiny_digits, "efficientnet_lite0", out, strategy="linear-probe", epochs=3, input_size=32,
             batch_size=8, lr=1e-2)
    return out


def odd_image_bytes() -> dict[str, bytes]:
    """Files users really feed a tool, keyed by file name."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), "RGB")
    files = {}

    def save(name, img, fmt, **kw):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        files[name] = buf.getvalue()

    save("gray.png", rgb.convert("L"), "PNG")
    save("palette.png", rgb.convert("P"), "PNG")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: must come out white
    save("transparent.png", rgba, "PNG")
    save("cmyk.jpg", rgb.convert("CMYK"), "JPEG")
    save("UPPER.JPG", rgb, "JPEG")
    save("image.jpeg", rgb, "JPEG")
    save("bitmap.bmp", rgb, "BMP")
    save("web.webp", rgb, "WEBP")
    save("sixteen.png", Image.fromarray((np.arange(1200).reshape(40, 30) * 50).astype(np.uint16)), "PNG")
    files["corrupt.jpg"] = b"\xff\xd8\xff\xe0 this is not a jpeg"
    files["truncated.png"] = files["gray.png"][:40]
    files["notes.txt"] = b"not an image, ignored"
    return files


def pytest_collection_modifyitems(config, items):
    """`tensorrt` tests run only where TensorRT imports and a CUDA device exists."""
    import importlib.util

    reason = None
    if importlib.util.find_spec("tensorrt") is None:
        reason = "tensorrt is not installed"
    else:
        import torch

        if not torch.cuda.is_available():
            reason = "no CUDA device for TensorRT"
    if reason:
        for item in items:
            if item.get_closest_marker("tensorrt"):  # the marker, not a parameter named tensorrt
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def quant_digits(tmp_path_factory) -> Path:
    """4 classes of real digits, 24 train and 20 val images each, 32 px: enough
    validation images for accuracy drops to mean something."""
    return write_digit_folder(tmp_path_factory.mktemp("quant") / "digits", classes=(0, 1, 2, 3),
                              per_split=(("train", 24), ("val", 20)))


@pytest.fixture(scope="session")
def quant_onnx(tmp_path_factory, quant_digits) -> Path:
    """The FP32 ONNX export of a linear-probe EfficientNet-Lite0 run on quant_digits."""
    from edgetl import finetune
    from edgetl.export import export_run

    run = tmp_path_factory.mktemp("quant_run") / "lite0"
    finetune(quant_digits, "efficientnet_lite0", run, strategy="linear-probe", epochs=4, input_size=32,
             batch_size=16, lr=1e-2)
    return export_run(run, run / "model.onnx").onnx


def assert_refused(result, *words) -> None:
    """A CLI result that is one clear user error: exit 2, error and hint lines, no traceback,
    and each of `words` in the message."""
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "hint:" in result.output and "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def bf16_possible() -> bool:
    """Whether OpenVINO can compute in bf16 here: the CPU has AVX-512 BF16 or AMX and
    oneDNN is not capped below them (ONEDNN_MAX_CPU_ISA=AVX2 makes an AVX-512 machine run
    the test suite as an AVX2-only one would)."""
    import os

    from edgetl.runtime.machine import cpu_flags

    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"}) and "ONEDNN_MAX_CPU_ISA" not in os.environ


def made_once(tmp_path_factory, name: str, make) -> Path:
    """A folder slow to make (`make(path)`), made once per test session even across
    pytest-xdist's workers (whose session fixtures are each their own): the first worker
    to ask makes it under a lock, the others wait and read it. Read-only: a fixture that
    hands it to tests that may write copies it first."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the workers' common folder
    where = shared / f"made-once-{name}"
    with FileLock(str(where) + ".lock"):
        if not (where / ".made").exists():
            shutil.rmtree(where, ignore_errors=True)
            make(where)
            (where / ".made").touch()
    return where


# ---------------------------------------------------------------- speech (each test module gets its own copy)

def _speech_made(tmp_path_factory) -> Path:
    """Spoken keywords and a run trained on them (72 s of training), made once for all workers."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it with apt-get where it can)")

    def make(out: Path) -> None:
        from edgetl import finetune
        from edgetl.data.keywords import make_keywords

        make_keywords(out / "keywords", words=["yes", "no", "stop"], unknown=True, voices=12, takes=3, seed=1,
                      stream_minutes=1.0)
        finetune(out / "keywords", "speech_embedding", out / "run", strategy="full", epochs=8, batch_size=16, lr=1e-2,
                 backbone_lr_scale=0.1, label_smoothing=0.0)

    return made_once(tmp_path_factory, "speech", make)


@pytest.fixture(scope="module")
def keywords(tmp_path_factory):
    return Path(shutil.copytree(_speech_made(tmp_path_factory) / "keywords", tmp_path_factory.mktemp("kw") / "keywords"))


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory, keywords):
    """A copy of the run (its card names the shared keywords as its data: the same files as `keywords`)."""
    return Path(shutil.copytree(_speech_made(tmp_path_factory) / "run", tmp_path_factory.mktemp("speech") / "run"))
