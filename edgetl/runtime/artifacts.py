"""The artifact contract: each kind of artifact edgetl writes, how it is recognised, where
its card lives, how the card is read and written, and which backend loads it.

| kind     | on disk                                   | the card                               |
|----------|-------------------------------------------|----------------------------------------|
| run      | folder with `edgetl.json` and `model.pt`  | `edgetl.json`                          |
| onnx     | `.onnx`                                   | `metadata_props["edgetl"]` (JSON)      |
| openvino | `.xml` + `.bin`                           | `rt_info` `<edgetl><card value=JSON>`  |
| tensorrt | `.engine` / `.plan`                       | `MODEL.engine.json` beside the engine  |
| bundle   | folder with `bundle.json`, or its `.zip`  | `edgetl.json` (checksummed, read-only) |

Cards are always JSON, never evaluated. Reading a card needs the library of its kind
(onnxruntime for ONNX, openvino for an IR) and never torch; writing into an ONNX file
needs `onnx`. The backend table (runtime/backends.py) names the kind each backend loads; a
bundle (runtime/bundle.py) holds one model per target; open_runner opens the one a backend
asks for.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgetl.core.atomic import replacing
from edgetl.core.card import CARD_FILENAME, ModelCard
from edgetl.core.errors import ArtifactError, BackendUnavailable
from edgetl.core.outputs import register_output_kind
from edgetl.runtime.bundle import Bundle, is_bundle

ONNX_CARD_KEY = "edgetl"  # metadata_props key of an ONNX file
OPENVINO_CARD_KEY = ["edgetl", "card"]  # rt_info path of an OpenVINO IR


def _library(name: str, extra: str, what: str) -> Any:
    """Import `name`, or say which install brings it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise BackendUnavailable(f"{what} needs {name}, which is not installed", hint=f"pip install {extra}") from None


# ---------------------------------------------------------------- run directories

def _run_card(path: Path) -> ModelCard:
    return ModelCard.load(path)


def _write_run_card(path: Path, card: ModelCard) -> None:
    card.save(path)


def _is_run(path: Path) -> bool:
    return (path / CARD_FILENAME).is_file()


# ---------------------------------------------------------------- ONNX

def card_from_onnx_metadata(meta: dict[str, str], path: Path) -> ModelCard:
    """The card in an ONNX model's metadata (as onnxruntime's custom_metadata_map gives it)."""
    if ONNX_CARD_KEY not in meta:
        raise ArtifactError(f"{path} carries no edgetl model card", hint="export it with `edgetl export`")
    return ModelCard.from_json(meta[ONNX_CARD_KEY], where=f"card of {path}")


# ONNX Runtime's threads wait for work by sleeping, not spinning: on a 2-core AMD EPYC (AVX2;
# Lite0 at 224 px, batch 1, three rounds of benchmarks/threads.py --passive), two spinning
# threads beside one busy process took 17.8-30.6 ms, two sleeping ones 12.7-15.4 ms and one
# thread 13.5-16.7 ms; idle, two threads took 8.6-12.0 ms spinning and 9.2-9.8 ms sleeping.
SPINNING = False


def session_options(threads: int | None) -> Any:
    """ONNX Runtime session options as edgetl always sets them: `threads` intra-op threads
    (one when None: never the library's every core), no inter-op pool, and waiting threads
    that sleep (SPINNING)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    apply_threads(opts, threads)
    return opts


def apply_threads(opts: Any, threads: int | None) -> None:
    """edgetl's thread rules on ONNX Runtime options (session_options; also the options the
    quantization libraries make, quantize/threads.py). The waiting threads' setting is made
    once: ONNX Runtime warns on stderr when a session option is set again (e.g. on options
    quantize/threads.py already made)."""
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads or 1, 1
    key, value = "session.intra_op.allow_spinning", "1" if SPINNING else "0"
    try:
        if opts.get_session_config_entry(key) == value:
            return
    except RuntimeError:  # not set yet
        pass
    opts.add_session_config_entry(key, value)


def onnx_session(path_or_bytes: str | Path | bytes, opts: Any = None, providers: list[Any] | None = None) -> Any:
    """An ONNX Runtime session; a damaged or non-ONNX file is an ArtifactError."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes),
                                    opts or session_options(1), providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for a damaged file
        if isinstance(path_or_bytes, bytes):
            raise
        raise ArtifactError(f"cannot load {path_or_bytes}: {' '.join(str(exc).split())[:400]}",
                            hint="the file is damaged or not ONNX: export it again with `edgetl export`") from None


def read_onnx_card(path: Path) -> ModelCard:
    """The card of an ONNX model, read through ONNX Runtime (no `onnx` package needed): a
    session that only reads the metadata, so one thread and no graph optimization."""
    import onnxruntime as ort

    opts = session_options(1)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return card_from_onnx_metadata(onnx_session(path, opts).get_modelmeta().custom_metadata_map, path)


def set_onnx_card(model_proto: Any, card: ModelCard) -> None:
    """Replace (not append) the card in an ONNX ModelProto's metadata_props."""
    for prop in list(model_proto.metadata_props):
        if prop.key == ONNX_CARD_KEY:
            model_proto.metadata_props.remove(prop)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = ONNX_CARD_KEY, card.to_json()


def _write_onnx_card(path: Path, card: ModelCard) -> None:
    onnx = _library("onnx", "onnx", "writing the card of an ONNX model")

    proto = onnx.load(str(path))
    set_onnx_card(proto, card)
    with replacing(path) as tmp:
        onnx.save(proto, str(tmp))


def _onnx_holds_card(path: Path) -> bool:
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX at all, or onnx not installed: not provably ours
        return False
    return any(p.key == ONNX_CARD_KEY for p in model.metadata_props)


# ---------------------------------------------------------------- OpenVINO IR

def card_from_openvino_model(model: Any, path: Path) -> ModelCard:
    if not model.has_rt_info(OPENVINO_CARD_KEY):
        raise ArtifactError(f"{path} carries no edgetl model card", hint="export it with `edgetl export --openvino`")
    return ModelCard.from_json(model.get_rt_info(OPENVINO_CARD_KEY).astype(str), where=f"card of {path}")


def _openvino_card(path: Path) -> ModelCard:
    ov = _library("openvino", "'edgetl[openvino]'", f"reading {path.name}")

    return card_from_openvino_model(ov.Core().read_model(str(path)), path)


def _write_openvino_card(path: Path, card: ModelCard) -> None:
    ov = _library("openvino", "'edgetl[openvino]'", f"writing the card of {path.name}")

    model = ov.Core().read_model(str(path))
    model.set_rt_info(card.to_json(), OPENVINO_CARD_KEY)
    with replacing(path, companions=(".bin",)) as tmp:
        ov.save_model(model, str(tmp), compress_to_fp16=False)  # weights are already in their precision


def _openvino_holds_card(path: Path) -> bool:
    """Read as text (no runtime): the card sits in the IR's rt_info as <edgetl><card value=...>,
    which OpenVINO writes after the layers, at the end of the file (an INT8 detector's .xml
    is over a megabyte: its head alone does not hold it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
            f.seek(0, 2)
            f.seek(max(0, f.tell() - (4 << 20)))
            tail = f.read()
    except OSError:
        return False
    return any(marker in part for part in (head, tail) for marker in (b"<edgetl>", b"<edgetl "))


# ---------------------------------------------------------------- TensorRT engines

def engine_card_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def read_engine_card(path: Path) -> ModelCard:
    card_path = engine_card_path(path)
    if not card_path.is_file():
        raise ArtifactError(f"{path} has no card beside it ({card_path.name})",
                            hint="build engines with `edgetl build-engine`, which writes both")
    return ModelCard.load(card_path)


def _write_engine_card(path: Path, card: ModelCard) -> None:
    card.save(engine_card_path(path))


# ---------------------------------------------------------------- bundles

def _bundle_card(path: Path) -> ModelCard:
    return Bundle.open(path).card


def _write_bundle_card(path: Path, card: ModelCard) -> None:
    raise ArtifactError(f"{path} is a bundle: its files are checksummed and never changed in place",
                        hint="change the run (or its exported model), then package it again")


# ---------------------------------------------------------------- the table

@dataclasses.dataclass(frozen=True)
class ArtifactKind:
    name: str
    suffixes: tuple[str, ...]  # its files' suffixes
    folder: bool  # whether it can be a folder
    what: str  # how messages name it
    read_card: Callable[[Path], ModelCard]
    write_card: Callable[[Path, ModelCard], None]
    holds_card: Callable[[Path], bool]  # cheap, without a runtime: is this provably an edgetl artifact?


KINDS: dict[str, ArtifactKind] = {k.name: k for k in (  # a folder is the first folder kind that holds a card
    ArtifactKind("bundle", (".zip",), True, "a bundle made by `edgetl package` (folder or .zip)", _bundle_card,
                 _write_bundle_card, is_bundle),
    ArtifactKind("run", (), True, "a run directory made by `edgetl finetune`", _run_card, _write_run_card, _is_run),
    ArtifactKind("onnx", (".onnx",), False, "an ONNX model", read_onnx_card, _write_onnx_card, _onnx_holds_card),
    ArtifactKind("openvino", (".xml",), False, "an OpenVINO IR (.xml + .bin)", _openvino_card, _write_openvino_card,
                 _openvino_holds_card),
    ArtifactKind("tensorrt", (".engine", ".plan"), False, "a TensorRT engine (+ its .json card)", read_engine_card,
                 _write_engine_card, lambda p: engine_card_path(p).is_file()),
)}


def kind_of(path: str | Path) -> ArtifactKind:
    """The kind of artifact at `path`; ArtifactError names what edgetl takes when it is none."""
    path = Path(path)
    known = ", ".join(k.what for k in KINDS.values())
    if path.is_dir():
        for kind in KINDS.values():
            if kind.folder and kind.holds_card(path):
                return kind
        raise ArtifactError(f"{path} is a folder without a model card ({CARD_FILENAME})",
                            hint="pass a run directory made by `edgetl finetune`, or a bundle")
    if not path.exists():
        raise ArtifactError(f"{path} does not exist",
                            hint="check the path: a run directory, .onnx, .xml, .engine or a bundle")
    for kind in KINDS.values():
        if path.suffix.lower() in kind.suffixes:
            return kind
    raise ArtifactError(f"{path} is not an artifact edgetl knows ({path.suffix or 'no suffix'})", hint=f"pass {known}")


def read_card(path: str | Path) -> ModelCard:
    """The card of any artifact, read the way its kind stores it."""
    return kind_of(path).read_card(Path(path))


def write_card(path: str | Path, card: ModelCard) -> None:
    """Replace the card of any artifact, stored the way its kind stores it."""
    kind_of(path).write_card(Path(path), card)


def is_edgetl_artifact(path: str | Path) -> bool:
    """A file or folder that provably carries an edgetl card (no runtime loaded)."""
    path = Path(path)
    for kind in KINDS.values():
        fits = kind.folder if path.is_dir() else path.is_file() and path.suffix.lower() in kind.suffixes
        if fits and kind.holds_card(path):
            return True
    return False


# what may be replaced with --overwrite: a model file that provably carries an edgetl card
# (writers name these kinds by the constants, which imports this module and so registers them)
MODEL_OUTPUT, BUNDLE_OUTPUT = "model", "bundle"
register_output_kind(MODEL_OUTPUT, "a model file with an edgetl card", lambda p: p.is_file() and is_edgetl_artifact(p))
register_output_kind(BUNDLE_OUTPUT, "a bundle written by edgetl package", is_bundle)


__all__ = ["BUNDLE_OUTPUT", "KINDS", "MODEL_OUTPUT", "ONNX_CARD_KEY", "OPENVINO_CARD_KEY", "ArtifactKind",
           "card_from_onnx_metadata", "card_from_openvino_model", "engine_card_path", "is_edgetl_artifact", "kind_of",
           "onnx_session", "read_card", "read_engine_card", "read_onnx_card", "set_onnx_card", "write_card"]
