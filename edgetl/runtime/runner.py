"""The Runner contract: one artifact loaded for one backend, numpy in, numpy out."""
from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.core.card import ModelCard
from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.runtime.settings import PRECISION_HINTS, InferenceSettings  # noqa: F401  (what runners are asked)

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; the runtime also runs on 3.10


def check_finite(logits: np.ndarray, what: str) -> None:
    """A model whose scores are NaN or infinite gives no answer at all (argmax of NaN is
    class 0): an error that names the model and how many samples, never a result."""
    bad = ~np.isfinite(logits).all(axis=tuple(range(1, logits.ndim)))
    if bad.any():
        raise ArtifactError(f"{what} outputs NaN or infinite scores for {int(bad.sum())} of {len(logits)} samples",
                            hint="the model is broken, not the input (a run that diverged, or an export or INT8 model "
                                 "that overflows): `edgetl export RUN` names the cause in its parity check; train "
                                 "again if the run itself does")


# Operations a quantized value passes through unchanged in kind: quantizers (NNCF's
# FakeQuantize, ONNX Runtime's Q/DQ pairs) are placed before them, in both spellings.
INFER_BYTES = 8 << 20  # input bytes per call of infer_all (a 320-px photo is 1.2 MB, a 224-px one 0.6 MB)
QUANTIZATION_AGNOSTIC = {"Concat", "MaxPool", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Slice", "StridedSlice",
                         "Flatten"}


def quantizer_before(node: Any, kind: Callable[[Any], str], sources: Callable[[Any], list[Any]],
                     is_quantizer: Callable[[Any], bool], ranges: Callable[[Any], tuple[Any, ...]]) -> Any:
    """The quantizer every value of `node`'s output last went through: `node` itself, or
    found through quantization-agnostic operations (on each input of a concatenation, the
    same ranges), e.g. the speech embedding's windows sliced from quantized frames, or a
    pooling's output. A part of an INT8 model cut there is fed the values without that
    rounding and must round them alike for the layers after the cut to compute as in the
    whole model. None when there is no such quantizer, or its ranges differ between paths
    or are not one per tensor. The graph is a backend's: `kind(node)` its operation's
    name, `sources(node)` the nodes making its inputs (None where none does),
    `is_quantizer(node)`, and `ranges(quantizer)` a comparable tuple, empty when not per
    tensor."""
    def walk(n: Any) -> list[Any] | None:
        if n is None:
            return None
        if is_quantizer(n):
            return [n]
        if kind(n) not in QUANTIZATION_AGNOSTIC:
            return None
        inputs = sources(n) if kind(n) == "Concat" else sources(n)[:1]
        found = [walk(i) for i in inputs]
        paths = [f for f in found if f is not None]
        return None if not found or len(paths) < len(found) else [q for f in paths for q in f]
    found = walk(node)
    if not found:
        return None
    first = ranges(found[0])
    return found[0] if first and all(ranges(q) == first for q in found[1:]) else None


class Runner(abc.ABC):
    """Loads one artifact for one backend. `infer` takes a float32 batch laid out as
    the card's input spec and returns the logits as float32 numpy.

    `inference_precision` is what the backend really computes the model's float
    operations in, read back from the backend where it can say (INT8 layers stay INT8)."""

    backend: str = ""
    # Whether a part cut between two quantized layers of an INT8 model computes the layers
    # after the cut as the whole model does (where not, only the front-end, per-window and
    # head parts are cut, at tensors a stream must cut at anyway).
    int8_cuts_exact: bool = True
    # on a runner opened from a bundle (runtime/backends.py): the bundle and its target
    bundle: Any = None
    target: str | None = None

    def __init__(self, path: Path, card: ModelCard, device: str = "cpu", threads: int | None = None):
        self.path, self.card, self.device, self.threads = Path(path), card, device, threads
        self.inference_precision = "f32"

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision_hint: str = "f32", bare: bool = False) -> Runner:
        """Open the artifact at `path` (of a kind this backend loads, runtime/artifacts.py)
        on `device` with `threads` CPU threads, the float parts computed in
        `precision_hint`; the card comes from the artifact itself. `bare=True`: a model
        without a card runs too, under the card of its own signature (runtime/signature.py;
        latency and agreement only), where the backend can read one. Every backend in the
        table implements it (tests/test_artifacts.py)."""
        raise NotImplementedError(f"{cls.__name__} does not load artifacts")

    @classmethod
    def facts(cls, gpu: dict[str, Any]) -> dict[str, Any]:
        """What `edgetl doctor` says of this backend beyond installed and version: its
        devices, precisions, accelerators, read from the library (`gpu`: doctor's GPU
        facts). Called only when the backend is installed."""
        return {}

    @classmethod
    def resolve_device(cls, device: str) -> str:
        """`auto`: the accelerator this backend can use on this machine, else the CPU, decided
        here and never by the library (OpenVINO's own AUTO plugin may pick a GPU or NPU and
        another precision). Any other device is the one asked for."""
        return "cpu" if device == "auto" else device

    @property
    def input_spec(self) -> dict[str, Any]:
        return self.card.input

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for `batch`, checked against the card's input spec first (in
        one place for every backend): a float array of another width is cast, any other
        dtype, another rank or another size along a static axis is a DataError that names
        the card's shape."""
        return self.compute(self.checked_input(batch))

    @abc.abstractmethod
    def compute(self, batch: np.ndarray) -> np.ndarray:
        """The backend's own call: `batch` already fits the card's input (contiguous)."""

    @property
    def signature(self) -> tuple[list[Any], list[Any]]:
        """The model's inputs and outputs as TensorSpecs (runtime/signature.py): what the
        backend read from the graph, else the card's input."""
        from edgetl.runtime.signature import TensorSpec

        specs: tuple[list[Any], list[Any]] | None = getattr(self, "_signature", None)
        if specs is not None:
            return specs
        spec = self.card.input
        return [TensorSpec(spec.get("name", "input"), tuple(spec.get("shape") or ()), spec.get("dtype", "float32"))], []

    def infer_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every input by name, every output by name: a model of several inputs or outputs
        (a model edgetl did not make). Backends that run such models implement it."""
        raise ConfigError(f"{self.backend} runs {self.path.name} through its card's one input only",
                          hint="use onnxruntime or openvino for a model of several inputs")

    def checked_input(self, batch: Any) -> np.ndarray:
        batch = np.asarray(batch)
        if (batch.shape, batch.dtype) == getattr(self, "_last_checked", None):  # a benchmark's loop: checked once
            return np.ascontiguousarray(batch)
        spec = self.input_spec
        want = np.dtype(spec.get("dtype", "float32"))
        shape = spec.get("shape") or []
        batch = np.asarray(batch)
        shown = "x".join("N" if d is None or isinstance(d, str) else str(d) for d in shape)
        if batch.dtype != want and not (batch.dtype.kind == want.kind == "f"):
            raise DataError(f"{self.path.name} takes {want} input shaped {shown}, got {batch.dtype}",
                            hint=f"pass {want} arrays (the card's input: {shown})")
        fits = batch.ndim == len(shape) and all(not isinstance(d, int) or d == n for d, n in zip(shape, batch.shape))
        if shape and not fits:
            raise DataError(f"{self.path.name} takes input shaped {shown} ({want}), got "
                            f"{'x'.join(map(str, batch.shape)) or 'a scalar'}",
                            hint=f"shape the batch as the card says: {shown} (N: any size)")
        if batch.dtype == want:
            self._last_checked = (batch.shape, batch.dtype)
        return np.ascontiguousarray(batch, dtype=want)

    def infer_all(self, x: np.ndarray, batch: int, finite: bool = True) -> np.ndarray:
        """Logits for every sample, `batch` per call (fewer when `batch` samples would be
        more than INFER_BYTES of input: memory bounded by the call, not the request). The last chunk is padded to exactly
        `batch` (static-batch models and TensorRT profiles accept only that) and the
        padding dropped from the result. A model of a static batch takes that batch
        whatever `batch` asks. A NaN or infinite score is an ArtifactError (`finite=False`:
        returned as it is, for a check that reports it itself)."""
        from edgetl.task import task_of

        static = (self.input_spec.get("shape") or [None])[0]
        # a memory budget per call, not only a count: 64 photos at 320 px in one call took
        # 1.4 GB in ONNX Runtime against 0.3 GB in calls of 8, at the same speed
        per_sample = max(1, x[0].nbytes if len(x) else 1)
        batch = static if isinstance(static, int) else max(1, min(batch, INFER_BYTES // per_sample))
        task = task_of(self.card)
        expected = task.output_shape(list(self.card.labels))
        out = []
        for start in range(0, len(x), batch):
            chunk = x[start:start + batch]
            pad = batch - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            got = self.infer(chunk)
            if len(got) != len(chunk):  # a backend that cannot run the model may answer with nothing
                raise ArtifactError(f"{self.backend} returned {len(got)} results for a batch of {len(chunk)} "
                                    f"({self.path.name}, {self.inference_precision})",
                                    hint="run it in f32 (the default precision), or on another backend")
            if got.ndim != len(expected) + 1 or any(e is not None and e != g for e, g in zip(expected, got.shape[1:])):
                raise ArtifactError(f"{self.path.name} outputs {got.shape[1:]} scores per sample but its card names "
                                    f"{len(self.card.labels)} labels"
                                    + ("" if task.name != "detection" else " (a detector: 4 box values and one score "
                                       "per label, per location)"),
                                    hint="the card belongs to another model: export this run again")
            out.append(got[:batch - pad])
        logits = np.concatenate(out) if out else np.zeros((0, *(e or 0 for e in expected)), np.float32)
        if finite:
            check_finite(logits, f"{self.path.name} ({self.backend}, {self.inference_precision})")
        return logits

    def part(self, inputs: list[str], outputs: list[str], any_length: bool = False) -> Callable[..., Any] | None:
        """The model's sub-graph from the tensors named `inputs` to those named `outputs`,
        compiled like the whole model, as a function of numpy arrays (in the order of
        `inputs`) that returns the `outputs`; None when the backend cannot run a part of
        a model (then only the whole model runs). `any_length`: the inputs may have any
        size along every axis, e.g. a front-end fed a stream's newest samples only."""
        return None

    def window_parts(self, tensors: dict[str, str], any_length: bool = False
                     ) -> tuple[Callable[..., Any] | None, Callable[..., Any] | None]:
        """The two parts a stream of windows is scored through before the head: the
        front-end (the model's input to the frames it keeps, per frame) and the per-window
        module (a batch of windows of those frames to their embeddings); None for either
        that the backend cannot cut. `tensors` are the card's `parts.tensors`. Here the
        frames are the `features` tensor itself; a backend that computes a cut through an
        element-wise chain differently from the whole model (OpenVINO) keeps other frames."""
        name = self.card.input.get("name", "input")
        return (self.part([name], [tensors["features"]], any_length=any_length),
                self.part([tensors["windows"]], [tensors["embeddings"]]))

    def close(self) -> None:  # noqa: B027  (most backends free their session with the object)
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
