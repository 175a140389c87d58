"""A model's own signature, for models edgetl did not make: the inputs and outputs the
graph declares (names, shapes with their dynamic dimensions, dtypes), the card such a
model runs under (no labels, no preprocessing: latency and agreement only, as trtexec and
benchmark_app measure any model), and the inputs generated for it. Torch-free."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from edgetl.core.card import ModelCard
from edgetl.core.errors import ConfigError

BARE = "none"  # card.source["card"] of a model that carries no edgetl card


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # an int per static dimension, None per dynamic one
    dtype: str  # numpy's name: float32, float16, uint8, int64, ...

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def bare_card(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> ModelCard:
    """The card a model without one runs under: its first input as the card's input, every
    input and output recorded, no labels and no task."""
    first = inputs[0]
    return ModelCard(labels=[], modality="", task="", input=first.to_dict(), preprocessing={},
                     source={"card": BARE, "inputs": [i.to_dict() for i in inputs],
                             "outputs": [o.to_dict() for o in outputs]})


def is_bare(card: ModelCard) -> bool:
    return card.source.get("card") == BARE


def parse_shapes(texts: Iterable[str] | None) -> dict[str, tuple[int, ...]]:
    """--shape NAME:1x3x224x224 (repeatable) -> {NAME: (1, 3, 224, 224)}."""
    shapes = {}
    for text in texts or ():
        name, sep, dims = str(text).rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise ConfigError(f"--shape takes NAME:DIMS with positive sizes, e.g. input:1x3x224x224, got {text!r}",
                              hint="one --shape per input whose shape the model leaves open")
        shapes[name] = shape
    return shapes


def input_shapes(inputs: list[TensorSpec], shapes: dict[str, tuple[int, ...]],
                 batch: int) -> dict[str, tuple[int, ...]]:
    """Each input's shape for one call: the --shape given for it, else the model's own with
    a dynamic first dimension taken as the batch; any other dynamic dimension must be
    given (an error that names it)."""
    unknown = set(shapes) - {i.name for i in inputs}
    if unknown:
        raise ConfigError(f"--shape names {', '.join(sorted(unknown))}, which the model does not take",
                          hint=f"its inputs: {', '.join(i.name for i in inputs)}")
    out = {}
    for spec in inputs:
        if spec.name in shapes:
            given = shapes[spec.name]
            if len(given) != len(spec.shape) or any(d is not None and d != g for d, g in zip(spec.shape, given)):
                raise ConfigError(f"--shape {spec.name}:{'x'.join(map(str, given))} does not fit the model's "
                                  f"{_shown(spec.shape)}", hint="change only the dimensions shown as ?")
            out[spec.name] = given
            continue
        shape = list(spec.shape)
        if shape and shape[0] is None:
            shape[0] = batch
        open_dims = [i for i, d in enumerate(shape) if d is None]
        if open_dims:
            raise ConfigError(f"input {spec.name} ({_shown(spec.shape)}) leaves dimension {open_dims[0]} open",
                              hint=f"give it: --shape {spec.name}:"
                                   + "x".join(str(batch if i == 0 else 224) if d is None else str(d)
                                              for i, d in enumerate(spec.shape)))
        out[spec.name] = tuple(d for d in shape if d is not None)  # all of them, the open ones refused above
    return out


def generated_inputs(inputs: list[TensorSpec], shapes: dict[str, tuple[int, ...]],
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for timing and comparing backends, the same for every backend (seeded): floats
    from a normal distribution, uint8 uniform over 0-255, other integers zero (indices,
    lengths: the one value every model takes)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape, dtype = shapes[spec.name], np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.uint8:
            feeds[spec.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            feeds[spec.name] = np.zeros(shape, dtype)
    return feeds


GENERATED = "normal floats, uniform uint8, zeros for other integers (seed 0): the same on every backend"


def _shown(shape: tuple[int | None, ...]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


__all__ = ["BARE", "GENERATED", "TensorSpec", "bare_card", "generated_inputs", "input_shapes", "is_bare",
           "parse_shapes"]
