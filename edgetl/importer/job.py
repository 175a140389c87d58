"""Import a model edgetl did not train: the graph's signature checked against what the
user says of it (labels, preprocessing), one card written, then the folder OUT holds the
model as `edgetl export` would have left a run: `model.onnx` (ONNX, TorchScript and
torch.export sources; TorchScript and torch.export go through the exporter behind the
parity gate) and `model.xml` (OpenVINO IR, converted from the ONNX model when OpenVINO is
installed, or the source itself), each carrying the card, and `edgetl.json`. Every later
command takes OUT, or its model files, as it takes a run.

What cannot be read from the graph is asked for by name (importer/settings.py); what is
read is checked: a batch dimension, the layout against the shape, three channels, the
number of labels against the output's size, one output chosen among several, and a
softmax at the end (turned into an identity, so that probabilities are not softmaxed
twice). Each written model is compared with the source on real samples (`data`) or on
generated photos before anything is moved into place."""
from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core import progress
from edgetl.core.card import CARD_FILENAME, ModelCard, build_fingerprint
from edgetl.core.errors import ArtifactError, ConfigError, DataError
from edgetl.core.outputs import check_output, publish, temp_dir_beside
from edgetl.core.threads import using_threads
from edgetl.importer.graph import TORCH_SUFFIXES, Graph, load_torch, read_graph, read_onnx, run_ir, run_onnx
from edgetl.importer.settings import ImportSettings, parse_size, parse_triple
from edgetl.modality.audio import AudioPreprocessing
from edgetl.modality.image import ImagePreprocessing
from edgetl.runtime.bundle import sha256
from edgetl.runtime.signature import TensorSpec
from edgetl.task import Task
from edgetl.task import get as get_task
from edgetl.task.classification import softmax

Reference = Callable[[np.ndarray], list[np.ndarray]]  # the source model: inputs -> its outputs
CHECK_SAMPLES = 32  # generated photos the import is checked on when no data set is given


@dataclasses.dataclass
class ImportResult:
    out: Path
    card: ModelCard
    models: list[Path]
    parity: list[dict[str, Any]]
    assumed: list[str]  # what was taken as a default rather than read or given, for the user to confirm
    accuracy: float | None = None


def import_model(model: Any, out: str | Path, settings: ImportSettings | None = None, overwrite: bool = False,
                 **options: Any) -> ImportResult:
    """Import `model` (a path, or an nn.Module) into the folder `out`; see the module
    docstring. `settings` (or its fields as keyword options): ImportSettings."""
    s = ImportSettings.of(settings, **options)
    if s.task == "detection" and s.decoder is None:
        s = s.replace(decoder="yolov8")  # the one layout edgetl decodes
    labels = read_labels(s.labels) if s.labels or s.task != "detection" else []
    source_path = None if _is_module(model) else Path(model).expanduser()
    out = check_output(out, "run", overwrite, {"model": source_path, "data set": s.data})
    with using_threads(s.threads) as threads:
        tmp = temp_dir_beside(out)
        try:
            graph, reference = _source(model, source_path, s, tmp, threads)
            labels = labels or _metadata_names(graph)
            result = _import(graph, reference, source_path, labels, s, tmp, out, threads)
            publish({tmp: out}, "run", overwrite)
            result.models = [out / m.name for m in result.models]
            return result
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def read_labels(text: str | None) -> list[str]:
    """--labels: a,b,c, or a file with one label per line (blank lines ignored)."""
    if not text:
        raise ConfigError("an imported classifier needs its labels, in the order of its outputs",
                          hint="pass --labels cat,dog,... or --labels labels.txt (one per line)")
    path = Path(str(text)).expanduser()
    if path.is_file():
        try:
            labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the labels file {path}: {exc}", hint="one label per line, UTF-8") from None
    else:
        if "," not in str(text) and ("/" in str(text) or str(text).endswith(".txt")):
            raise ConfigError(f"--labels {text}: no such file", hint="check the path, or give the labels as a,b,c")
        labels = [part.strip() for part in str(text).split(",") if part.strip()]
    return labels


def _metadata_names(graph: Graph) -> list[str]:
    """A detector's class names from the ONNX metadata Ultralytics writes (`names`:
    "{0: 'person', 1: 'bicycle'}"), read as text, never evaluated."""
    import re

    props = {p.key: p.value for p in graph.model.metadata_props} if graph.format == "onnx" else {}
    names = re.findall(r"(\d+)\s*:\s*(?:'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\")", props.get("names", ""))
    labels = [single or double for _, single, double in sorted(names, key=lambda n: int(n[0]))]
    if not labels or [int(i) for i, _, _ in sorted(names, key=lambda n: int(n[0]))] != list(range(len(labels))):
        raise ConfigError("an imported detector needs its class names, in the order of its scores, and the model's "
                          "metadata holds none", hint="pass --labels person,car,... or --labels names.txt")
    progress.info(f"class names from the model's metadata: {', '.join(labels)}")
    return labels


def _is_module(model: Any) -> bool:
    return hasattr(model, "forward") and hasattr(model, "eval")


def _source(model: Any, path: Path | None, s: ImportSettings, tmp: Path, threads: int) -> tuple[Graph, Reference]:
    """The graph to edit and a function computing the source's outputs (the reference every
    written model is compared with)."""
    if path is None or path.suffix.lower() in TORCH_SUFFIXES:
        return _from_torch(model, path, s, tmp, threads)
    graph = read_graph(path)
    progress.info(f"read {path.name}: {graph.source_format}, inputs " + ", ".join(_shown(i) for i in graph.inputs)
                  + "; outputs " + ", ".join(_shown(o) for o in graph.outputs))
    run = run_onnx(graph.model, threads) if graph.format == "onnx" else run_ir(graph.model, threads)
    return graph, run


def _from_torch(model: Any, path: Path | None, s: ImportSettings, tmp: Path, threads: int) -> tuple[Graph, Reference]:
    """A TorchScript or torch.export file, or an nn.Module, exported to ONNX; the module is the reference."""
    import torch

    from edgetl.export.onnx_export import DEFAULT_OPSET, export_onnx
    from edgetl.finetune.training import set_torch_threads

    set_torch_threads(threads)
    module, kind = load_torch(path) if path is not None else (model.eval(), "nn.Module")
    size = parse_size(s.input_size)
    if size is None:
        raise ConfigError(f"a {kind} model does not say its input size", hint="pass --input-size N (or HxW)")
    layout = (s.layout or "nchw").upper()
    shape = [None, 3, *size] if layout == "NCHW" else [None, *size, 3]
    provisional = ModelCard(labels=[], modality="image", input={"name": "input", "shape": shape, "dtype": "float32",
                                                                  "layout": layout}, preprocessing={})
    progress.info(f"exporting the {kind} model to ONNX ({'x'.join('N' if d is None else str(d) for d in shape)})")
    onnx_path = tmp / "source.onnx"
    info = export_onnx(module, provisional, onnx_path, s.opset or DEFAULT_OPSET)
    graph = read_onnx(onnx_path, kind)
    onnx_path.unlink()
    graph.export = info  # type: ignore[attr-defined]

    def reference(x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            got = module(torch.from_numpy(np.ascontiguousarray(x)))
        if isinstance(got, (tuple, list)):
            return [g.float().numpy() for g in got]
        return [got.float().numpy()]
    return graph, reference


def _import(graph: Graph, reference: Reference, path: Path | None, labels: list[str], s: ImportSettings, tmp: Path, out: Path,
            threads: int) -> ImportResult:
    assumed: list[str] = []
    if _is_audio(graph):
        model_input, layout = _checked_audio_input(graph, s)
        scores = _checked_output(graph, s, labels)
        rate, window = s.sample_rate, model_input.shape[1]
        if rate is None or window is None:  # _checked_audio_input refused both
            raise ConfigError("a waveform model needs --sample-rate and --window", hint="pass both")
        pre: ImagePreprocessing | AudioPreprocessing = AudioPreprocessing(sample_rate=rate, window=window)
    else:
        model_input, layout = _checked_input(graph, s)
        scores = _checked_output(graph, s, labels)
        pre = _preprocessing(model_input, layout, s, assumed)
    task = get_task(s.task)
    index = [o.name for o in graph.outputs].index(scores.name)
    graph.keep_output(scores.name)
    card = ModelCard(labels=labels, modality=pre.kind, task=s.task, preprocessing=pre.to_dict(),
                     input={"name": model_input.name, "shape": list(model_input.shape), "dtype": model_input.dtype,
                            "layout": layout})
    task.check_labels(labels)
    x = _check_inputs(card, pre, s.data)
    expected = _batched(lambda b: reference(b)[index], x, model_input.shape[0])
    want = task.output_shape(labels)
    if expected.ndim != 1 + len(want) or expected.shape[1] != want[0]:
        per = f"{want[0]} x anchors (4 box values + {len(labels)} class scores)" if task.decodes else f"{want[0]} scores"
        raise ConfigError(f"output {scores.name} gives {'x'.join(map(str, expected.shape[1:])) or 'a scalar'} per "
                          f"sample, but {len(labels)} labels need {per}",
                          hint="pick the output with --output, or pass the labels in the order of the model's scores")
    probabilities = not task.decodes and bool(np.all(expected >= -1e-6) and np.all(expected <= 1 + 1e-6)
                                              and np.allclose(expected.sum(axis=1), 1.0, atol=1e-3))
    stripped = probabilities and graph.softmax_at_end()
    if stripped:
        graph.strip_softmax()
        progress.info("the model ends in a softmax: its output is taken before it (edgetl applies softmax where it "
                      "shows probabilities, so it is not applied twice)")
    elif probabilities:
        assumed.append(f"output {scores.name} looks like probabilities (each row sums to 1) without a softmax edgetl "
                       "can remove: predict shows softmax of them")
    slimmed = _slim(graph)
    card.source = {"imported": {**_record(graph, path, scores.name, stripped), "slimmed": slimmed},
                   "preprocessing_from": "import options", **({"data": str(Path(s.data).resolve())} if s.data else {})}
    if getattr(graph, "export", None):
        card.source["imported"]["export"] = graph.export  # type: ignore[attr-defined]
    card.build = build_fingerprint()
    models, parity = _write_models(graph, card, tmp, x, expected, stripped, threads)
    accuracy = None
    if s.data:
        from edgetl.evaluate.accuracy import evaluate

        progress.info(f"scoring the imported model on the val split of {s.data}")
        accuracy = evaluate(models[0], s.data, split="val", threads=threads).accuracy
        card.metrics[f"val_{task.metric}"] = accuracy
    card.metrics["parity"] = parity[0]
    _write_cards(models, card, parity)
    card.save(tmp / CARD_FILENAME)
    return ImportResult(out, card, models, parity, assumed, accuracy)


def _slim(graph: Graph) -> bool:
    """An ONNX graph simplified as `edgetl export` simplifies its own (onnxslim: constant
    shapes folded, e.g. a TF-style "same" padding computed at run time becomes the
    convolution's own, which also leaves INT8 fewer operations to quantize); the written
    model is compared with the source after. Kept as it is where onnxslim fails."""
    if graph.format != "onnx":
        return False
    try:
        import onnxslim

        graph.model = onnxslim.slim(graph.model)
    except Exception as exc:  # the graph as it came still works
        import logging

        logging.getLogger("edgetl").warning("onnxslim could not simplify the graph (%s); kept as it is",
                                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
    return True


def _is_audio(graph: Graph) -> bool:
    """A model of one input shaped (batch, samples): a waveform classifier."""
    return len(graph.inputs) == 1 and len(graph.inputs[0].shape) == 2


def _checked_audio_input(graph: Graph, s: ImportSettings) -> tuple[TensorSpec, str]:
    """A waveform input: float, (batch, samples), at the sample rate the user names."""
    spec = graph.inputs[0]
    if spec.dtype not in ("float32", "float16"):
        raise ArtifactError(f"input {spec.name} is {spec.dtype} ({_dims(spec.shape)}); edgetl feeds audio as float "
                            "samples in [-1, 1]", hint="export the model with a float32 waveform input")
    if s.sample_rate is None:
        raise ConfigError(f"input {spec.name} ({_dims(spec.shape)}) takes a waveform: edgetl needs the sample rate "
                          "the model was trained at", hint="pass --sample-rate, e.g. --sample-rate 16000")
    samples = spec.shape[1]
    if s.window is not None and samples is not None and s.window != samples:
        raise ConfigError(f"--window {s.window}, but the model takes {samples} samples ({_dims(spec.shape)})",
                          hint="leave --window out: the graph says it")
    samples = samples or s.window
    if samples is None:
        raise ConfigError(f"input {spec.name} ({_dims(spec.shape)}) leaves its number of samples open",
                          hint=f"pass --window N, e.g. --window {s.sample_rate} for one second")
    for flag, given in (("--mean", s.mean), ("--std", s.std), ("--input-size", s.input_size), ("--layout", s.layout)):
        if given is not None:
            raise ConfigError(f"{flag} applies to image models; input {spec.name} takes a waveform",
                              hint=f"drop {flag}")
    return TensorSpec(spec.name, (spec.shape[0], samples), spec.dtype), "NT"


def _checked_input(graph: Graph, s: ImportSettings) -> tuple[TensorSpec, str]:
    """The image input, its layout (NCHW/NHWC) and size, checked against what was given."""
    if len(graph.inputs) != 1:
        raise ArtifactError(f"the model takes {len(graph.inputs)} inputs ({', '.join(i.name for i in graph.inputs)}); "
                            "an image classifier takes one", hint="export the model with one image input")
    spec = graph.inputs[0]
    for flag, value in (("--sample-rate", s.sample_rate), ("--window", s.window)):
        if value is not None:
            raise ConfigError(f"{flag} applies to waveform models; input {spec.name} is {_dims(spec.shape)}",
                              hint=f"drop {flag}")
    if spec.dtype not in ("float32", "float16", "uint8"):
        raise ArtifactError(f"input {spec.name} is {spec.dtype}; edgetl feeds images as float32 or uint8",
                            hint="export the model with a float32 (or uint8) image input")
    shape = list(spec.shape)
    if len(shape) == 3 and 3 in (shape[0], shape[2]):
        raise ArtifactError(f"input {spec.name} is {_dims(shape)}: the model has no batch dimension",
                            hint="export it with one, e.g. torch.onnx.export with an input of shape 1x3xHxW "
                                 "(and dynamic_axes for a dynamic batch)")
    if len(shape) != 4:
        raise ArtifactError(f"input {spec.name} is {_dims(shape)}, not an image batch (N, C, H, W or N, H, W, C) or "
                            "a waveform batch (N, samples)", hint="import image or waveform classifiers")
    channels_first, channels_last = shape[1] == 3, shape[3] == 3
    given = s.layout.upper() if s.layout else None
    if given == "NCHW" and shape[1] not in (3, None):
        raise ConfigError(f"--layout nchw, but input {spec.name} is {_dims(shape)}"
                          + (": the model takes NHWC" if channels_last else f" ({shape[1]} channels)"),
                          hint="pass --layout nhwc" if channels_last else "edgetl feeds RGB images (3 channels)")
    if given == "NHWC" and shape[3] not in (3, None):
        raise ConfigError(f"--layout nhwc, but input {spec.name} is {_dims(shape)}"
                          + (": the model takes NCHW" if channels_first else f" ({shape[3]} channels)"),
                          hint="pass --layout nchw" if channels_first else "edgetl feeds RGB images (3 channels)")
    if given is None:
        if channels_first == channels_last:
            raise ConfigError(f"input {spec.name} is {_dims(shape)}: its shape does not say whether channels come "
                              "first or last", hint="pass --layout nchw or --layout nhwc")
        given = "NCHW" if channels_first else "NHWC"
    size_axes = (2, 3) if given == "NCHW" else (1, 2)
    graph_size = tuple(shape[a] for a in size_axes)
    asked = parse_size(s.input_size)
    if asked and None not in graph_size and asked != graph_size:
        raise ConfigError(f"--input-size {s.input_size}, but the model takes {graph_size[0]}x{graph_size[1]} "
                          f"({_dims(shape)})", hint="leave --input-size out: the graph says it")
    size = asked or graph_size
    if None in size:
        raise ConfigError(f"input {spec.name} is {_dims(shape)}: its height and width are left open",
                          hint="pass --input-size N (or HxW), the size the model was trained at")
    shape[size_axes[0]], shape[size_axes[1]] = size
    shape[1 if given == "NCHW" else 3] = 3
    if isinstance(shape[0], int) and shape[0] > 1:
        progress.info(f"input {spec.name} has a static batch of {shape[0]}: every command runs it {shape[0]} at a time")
    return TensorSpec(spec.name, tuple(shape), spec.dtype), given


def _preprocessing(spec: TensorSpec, layout: str, s: ImportSettings, assumed: list[str]) -> ImagePreprocessing:
    height, width = spec.shape[2:4] if layout == "NCHW" else spec.shape[1:3]
    if height is None or width is None:  # _checked_input filled them in or refused
        raise ConfigError(f"input {spec.name} leaves its height and width open", hint="pass --input-size N (or HxW)")
    size = (height, width)
    mean, std = parse_triple(s.mean, "--mean"), parse_triple(s.std, "--std")
    detector = s.task == "detection"
    if detector and spec.dtype != "uint8" and mean is None and std is None:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        assumed.append("0-1 pixels without normalisation, as Ultralytics' detectors take them (--mean/--std otherwise)")
    if spec.dtype == "uint8":
        if mean is not None or std is not None:
            raise ConfigError(f"input {spec.name} takes uint8 pixels: its normalisation is inside the graph, so "
                              "--mean and --std do not apply", hint="leave --mean and --std out")
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    elif mean is None or std is None:
        raise ConfigError(f"input {spec.name} takes {spec.dtype} values: edgetl needs the normalisation the model "
                          f"was trained with ({'--mean' if mean is None else '--std'} is missing)",
                          hint="e.g. ImageNet's --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225; plain 0-1 pixels: "
                               "--mean 0 --std 1; 0-255 pixels: --pixel-range 255 --mean 0 --std 1")
    else:
        mean = tuple(m / s.pixel_range for m in mean)  # type: ignore[assignment]
        std = tuple(v / s.pixel_range for v in std)  # type: ignore[assignment]
    if s.color == "rgb":
        assumed.append("RGB channel order (--color bgr for models trained on OpenCV's BGR)")
    resizing = s.resize or ("letterbox" if detector else "crop")
    if s.resize is None and resizing == "crop":
        assumed.append(f"photos resized to {s.crop_pct:g} crop of the shorter side, then centre-cropped "
                       "(--resize stretch to resize whole photos)")
    if s.resize is None and resizing == "letterbox":
        assumed.append("photos letterboxed: fitted whole, grey borders (--resize stretch to resize them whole)")
    resize = round(min(size) / s.crop_pct) if resizing == "crop" else max(size)
    crop = {"crop": "center", "stretch": "stretch", "letterbox": "letterbox"}[resizing]
    return ImagePreprocessing(size=size, resize=max(resize, min(size)), interpolation=s.interpolation, mean=mean,
                              std=std, crop=crop, channels=s.color.upper(),
                              layout=layout, dtype="uint8" if spec.dtype == "uint8" else "float32")


def _checked_output(graph: Graph, s: ImportSettings, labels: list[str]) -> TensorSpec:
    names = [o.name for o in graph.outputs]
    if s.output is not None and s.output not in names:
        raise ConfigError(f"--output {s.output}: the model's outputs are {', '.join(names)}",
                          hint=f"pass one of them, e.g. --output {names[0]}")
    if s.output is None and len(names) > 1:
        raise ConfigError(f"the model has {len(names)} outputs ({', '.join(_shown(o) for o in graph.outputs)}); "
                          "which one holds the class scores?", hint=f"pass --output NAME, e.g. --output {names[0]}")
    spec = next(o for o in graph.outputs if o.name == (s.output or names[0]))
    if s.task == "detection":
        if spec.shape and (len(spec.shape) != 3 or spec.shape[1] not in (None, 4 + len(labels))):
            raise ConfigError(f"output {spec.name} is {_dims(spec.shape)}; a {s.decoder} detector of {len(labels)} "
                              f"classes outputs N x {4 + len(labels)} x anchors (box, then one score per class)",
                              hint="pass the labels in the order of the model's scores, or pick the output with "
                                   "--output" if len(spec.shape) == 3 else "export the model without NMS in the graph "
                                   "(Ultralytics: nms=False)")
        return spec
    if spec.shape and (len(spec.shape) != 2 or (spec.shape[1] is not None and spec.shape[1] != len(labels))):
        if len(spec.shape) == 2:
            raise ConfigError(f"output {spec.name} holds {spec.shape[1]} class scores, but {len(labels)} labels are "
                              "given", hint=f"pass {spec.shape[1]} labels, in the order of the model's outputs")
        raise ConfigError(f"output {spec.name} is {_dims(spec.shape)}, not one score per class (N, classes)",
                          hint="pick the output of class scores with --output" if len(names) > 1 else
                               "import a classifier whose output is (batch, classes)")
    return spec


def _check_inputs(card: ModelCard, pre: ImagePreprocessing | AudioPreprocessing, data: str | Path | None) -> np.ndarray:
    """What the written models are compared with the source on: real validation samples
    of `data`, else generated ones (seeded noise at every pixel value, or noise at a
    tenth of full scale)."""
    if data:
        from edgetl.export.parity import parity_inputs

        return parity_inputs(card, data)[0]
    rng = np.random.default_rng(0)
    if pre.kind == "audio":
        return pre.normalize((0.1 * rng.standard_normal((CHECK_SAMPLES, *pre.cache_shape))).clip(-1, 1))
    pixels = rng.integers(0, 256, (CHECK_SAMPLES, *pre.cache_shape), dtype=np.uint8)
    return pre.normalize(pixels)


def _batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, static: int | None) -> np.ndarray:
    step = static if isinstance(static, int) else 16
    out = []
    for start in range(0, len(x) - len(x) % step if isinstance(static, int) else len(x), step):
        out.append(np.asarray(fn(x[start:start + step]), np.float32))
    if not out:
        raise DataError(f"fewer check samples ({len(x)}) than the model's static batch ({static})",
                        hint="pass --data with more validation samples")
    return np.concatenate(out)


def _write_models(graph: Graph, card: ModelCard, tmp: Path, x: np.ndarray, expected: np.ndarray, stripped: bool,
                  threads: int) -> tuple[list[Path], list[dict[str, Any]]]:
    """model.onnx (and model.xml converted from it, when OpenVINO is installed), or the IR
    itself; each compared with the source before the import counts as done."""
    from edgetl.export.parity import ParityError

    models = []
    if graph.format == "onnx":
        import onnx

        from edgetl.runtime.artifacts import set_onnx_card

        set_onnx_card(graph.model, card)
        onnx.save(graph.model, str(tmp / "model.onnx"))
        models.append(tmp / "model.onnx")
        try:
            import openvino  # noqa: F401
        except ImportError:
            pass
        else:
            from edgetl.export.openvino_ir import export_openvino

            export_openvino(models[0], tmp / "model.xml", card)
            models.append(tmp / "model.xml")
    else:
        import openvino as ov

        from edgetl.runtime.artifacts import OPENVINO_CARD_KEY

        graph.model.set_rt_info(card.to_json(), OPENVINO_CARD_KEY)
        ov.save_model(graph.model, str(tmp / "model.xml"), compress_to_fp16=False)
        models.append(tmp / "model.xml")
    parity = [compare_with_source(m, x, expected, stripped, threads, get_task(card.task)) for m in models]
    failed = [p for p in parity if not p["passed"]]
    if failed:
        raise ParityError("the imported model does not compute what the source computes: " + "; ".join(
            f"{p['artifact']} on {p['backend']}: {', '.join(p['failures'])}" for p in failed),
            hint="the graph may hold operations a backend computes differently; report the model")
    return models, parity


def compare_with_source(model: Path, x: np.ndarray, expected: np.ndarray, stripped: bool, threads: int,
                        task: Task | None = None) -> dict[str, Any]:
    """The written model's scores against the source's (its softmax where the import took
    it out): max-abs difference relative to the scores' range, and agreement (a
    classifier's top-1 with ties counted as agreement; otherwise as the task compares)."""
    from edgetl.export.parity import Tolerance
    from edgetl.runtime import open_runner

    with open_runner(model, threads=threads) as runner:
        got = runner.infer_all(x[:len(expected)], 16, finite=False)
        backend = runner.backend
    got = softmax(got.astype(np.float64)) if stripped else got
    tolerance = Tolerance.for_precision("fp32")
    max_abs = float(np.abs(got - expected).max()) if len(got) else 0.0
    span = float(expected.max() - expected.min()) or 1.0
    # a tie in the source's scores (an untrained head's equal probabilities) is no disagreement
    if task is not None and task.decodes:
        agreement = float(task.agree(got, expected).mean()) if len(got) else 1.0
    else:
        picked = expected[np.arange(len(got)), got.argmax(1)] if len(got) else expected[:0, 0]
        agreement = float((picked >= expected.max(1) - tolerance.rel_max_abs * span).mean()) if len(got) else 1.0
    failures = []
    if not np.isfinite(got).all():
        failures.append("NaN or infinite scores")
    elif max_abs / span > tolerance.rel_max_abs:
        failures.append(f"max-abs {max_abs:.2e} ({max_abs / span:.1e} of the range, allowed {tolerance.rel_max_abs:g})")
    if agreement < tolerance.min_agreement:
        failures.append(f"top-1 agreement {agreement:.1%}")
    return {"artifact": model.name, "backend": backend, "n": int(len(got)), "max_abs": max_abs,
            "rel_max_abs": max_abs / span, "agreement": agreement, "softmax_removed": stripped, "failures": failures,
            "passed": not failures}


def _write_cards(models: list[Path], card: ModelCard, parity: list[dict[str, Any]]) -> None:
    from edgetl.runtime.artifacts import write_card

    for model, check in zip(models, parity):
        write_card(model, dataclasses.replace(card, metrics={**card.metrics, "parity": check}))


def _record(graph: Graph, path: Path | None, output: str, stripped: bool) -> dict[str, Any]:
    record: dict[str, Any] = {"file": str(path.resolve()) if path else None, "format": graph.source_format,
              "inputs": [i.to_dict() for i in graph.inputs], "output": output, "softmax_removed": stripped}
    if path is not None and path.is_file():
        record["sha256"] = sha256(path)
    return record


def _dims(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape) or "a scalar"


def _shown(spec: TensorSpec) -> str:
    return f"{spec.name} {_dims(spec.shape)} {spec.dtype}"


__all__ = ["ImportResult", "ImportSettings", "compare_with_source", "import_model", "read_labels"]
