"""edgetl: transfer learning to the edge.

The public Python API mirrors the CLI. Heavy modules (torch, timm) are imported
only by the functions that need them, so `import edgetl` stays light on devices.
"""
from __future__ import annotations

from edgetl._version import __version__
from edgetl.core.allocator import configure_allocator
from edgetl.core.errors import EdgeTLError

configure_allocator()  # before torch: how batch buffers come back (EDGETL_MALLOC, core/allocator.py)


def list_backbones(modality: str | None = None):
    """Registered backbones as BackboneInfo records (see edgetl.backbones)."""
    from edgetl.backbones import list_backbones as _list

    return _list(modality)


def finetune(data, backbone: str, out, **options):
    """Fine-tune `backbone` on the folder data set `data`; returns the RunResult. With
    target_data=DIR and adapt="adabn"|"coral"|"dann"|"auto", adapted to unlabelled data."""
    from edgetl.finetune import finetune as _finetune

    return _finetune(data, backbone, out, **options)


def adapt(run, target_data, out=None, overwrite: bool = False):
    """AdaBN on an existing run (BatchNorm statistics of `target_data`); the new run's path."""
    from edgetl.finetune.adaptation import adabn_run

    return adabn_run(run, target_data, out, overwrite=overwrite)


def evaluate(artifact, data, settings=None, **options):
    """Accuracy, per-class accuracy and confusion matrix of an artifact on a data split;
    `settings` (or its fields as keyword options): EvaluateSettings."""
    from edgetl.evaluate.accuracy import evaluate as _evaluate

    return _evaluate(artifact, data, settings, **options)


def import_model(model, out, settings=None, overwrite: bool = False, **options):
    """Give a model trained elsewhere (a path to .onnx, .xml, TorchScript .pt, torch.export
    .pt2, or an nn.Module) a card in the folder `out`; an ImportResult. `settings` (or its
    fields as keyword options): ImportSettings (labels, mean, std, input_size, ...)."""
    from edgetl.importer import import_model as _import

    return _import(model, out, settings, overwrite=overwrite, **options)


def export(run, out=None, **options):
    """ONNX (and OpenVINO IR with openvino=True) of a run, behind the parity gate."""
    from edgetl.export import export_run

    return export_run(run, out, **options)


def quantize(model, target: str, **options):
    """INT8 of an exported FP32 ONNX model for openvino, onnxruntime or tensorrt."""
    from edgetl.quantize import quantize as _quantize

    return _quantize(model, target, **options)


def bench(artifacts, **options):
    """Accuracy, latency, size and memory of every artifact on every backend and batch
    size (run directories expand to their checkpoint and exported files); a BenchReport."""
    from edgetl.bench.harness import bench as _bench

    return _bench(artifacts, **options)


def predict(artifact, files, **options):
    """Top-k labels and scores of raw image or audio files through any artifact (torch-free)."""
    from edgetl.runtime.predict import predict as _predict

    return _predict(artifact, files, **options)


def evaluate_stream(artifact, recording, **options):
    """Keyword detection on a long recording with its keyword times beside it: false
    rejects, false accepts per hour, delay, real-time factor, DET curve (torch-free)."""
    from edgetl.evaluate.stream import evaluate_stream as _evaluate_stream

    return _evaluate_stream(artifact, recording, **options)


def package(run, out, settings=None, **options):
    """A run as a deployment bundle (a folder, or a .zip with zip_file=True); `settings` (or
    its fields as keyword options): PackageSettings."""
    from edgetl.deploy.package import package as _package

    return _package(run, out, settings, **options)


def verify(bundle, backend: str | None = None):
    """Check a bundle on this machine: checksums, then its reference files through each
    target it can run (a TensorRT target's engine built for this GPU first, where TensorRT
    is); a TargetCheck per target, skipped ones with the reason (torch-free)."""
    from edgetl.deploy.tensorrt_engine import verify_on_device

    return verify_on_device(bundle, backend=backend)


def doctor() -> dict:
    """What this machine can run and why not (what `edgetl doctor --json` prints; torch-free)."""
    from edgetl.runtime.doctor import doctor as _doctor

    return _doctor()


def run(recipe, out=None, **options):
    """A recipe (YAML) from data to bundle, every unchanged stage reused; a PipelineResult.
    options: rerun_from="quantize", force=True, overrides=["finetune.epochs=3"]."""
    from edgetl.pipeline.run import run_recipe

    return run_recipe(recipe, out, **options)


def make_digits(out, settings=None, **options):
    """Write scikit-learn's handwritten digits as an image folder data set; `settings` (or
    its fields as keyword options): edgetl.data.settings.DigitsSettings."""
    from edgetl.data.digits import make_digits as _make

    return _make(out, settings, **options)


def make_digit_scenes(out, settings=None, **options):
    """Write the built-in detection set (real digits on real photos, with their boxes) in
    the YOLO layout; `settings` (or its fields as keyword options):
    edgetl.data.settings.DigitScenesSettings."""
    from edgetl.data.digit_scenes import make_digit_scenes as _make

    return _make(out, settings, **options)


def make_keywords(out, settings=None, **options):
    """Write spoken keywords synthesized with espeak-ng as an audio folder data set, split
    by voice; `settings` (or its fields as keyword options):
    edgetl.data.settings.KeywordsSettings."""
    from edgetl.data.keywords import make_keywords as _make

    return _make(out, settings, **options)


__all__ = ["EdgeTLError", "__version__", "adapt", "bench", "evaluate", "evaluate_stream", "export", "finetune",
           "import_model", "doctor", "list_backbones",
           "make_digit_scenes", "make_digits", "make_keywords", "package", "predict", "quantize", "run", "verify"]
