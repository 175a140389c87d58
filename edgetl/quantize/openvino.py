"""OpenVINO INT8 IR with NNCF post-training quantization, optionally accuracy-controlled:
NNCF ranks the quantized operations by their effect on the validation metric and reverts
the worst to float until the drop holds. The weights' bit width follows the CPU the IR is
made for (quantize/cpu.py), through NNCF's overflow fix."""
from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import numpy as np

from edgetl.core import progress
from edgetl.core.errors import BackendUnavailable, ConfigError
from edgetl.data.samples import Samples
from edgetl.export.onnx_export import in_frontend
from edgetl.quantize.cpu import CpuTarget, cpu_target
from edgetl.quantize.settings import NncfOptions


class _SearchLog(logging.Handler):
    """NNCF reports its accuracy control only in its log: the operations it reverted to
    float (kept for the card) and each step of a search that can take many minutes on a
    detector (every candidate compiled and validated), said here as progress lines."""

    def __init__(self, metric_title: str = "metric"):
        super().__init__(logging.INFO)
        self.metric_title = metric_title
        self.nodes: list[str] = []
        self.total = self.reverted = self.last = 0
        self.drop = float("nan")
        self.searching = False

    def emit(self, record):
        message = record.getMessage()
        number = re.search(r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)", message)
        if "were reverted back to the floating-point precision" in message:
            self.nodes = [line.strip() for line in message.splitlines()[1:] if line.strip()]
        elif message.startswith("Accuracy drop: ") and number:
            self.drop = float(number[1])
        elif message.startswith("Total number of quantized operations") and number:  # said when the search starts
            self.total, self.searching = int(number[1]), True
            progress.info(f"  INT8 with all {self.total} operations quantized loses {100 * self.drop:.2f} pt of "
                          f"{self.metric_title}: ranking them to keep some in float (each one compiled and validated)")
        elif message.startswith("Reverted ") and number:
            self.last = int(number[1])
            self.reverted += self.last
        elif message.startswith("Accuracy drop with the new quantization scope") and number:
            progress.info(f"  {self.reverted} of {self.total} operations in float: drop {100 * float(number[1]):.2f} pt")
        elif message.startswith("Re-calculating ranking scores"):  # the last step made it worse: undone
            self.reverted -= self.last
            progress.info("  that made it worse: quantized again, ranking the rest anew")
        elif message.startswith("Algorithm completed: achieved") and number and self.searching:
            progress.info(f"  {self.reverted} of {self.total} operations in float: drop {100 * float(number[1]):.2f} pt, "
                          "within the bound")


@contextlib.contextmanager
def _nncf_log(metric_title: str = "metric"):
    """Capture NNCF's search (_SearchLog), keep its INFO lines off the terminal."""
    logger = logging.getLogger("nncf")
    capture = _SearchLog(metric_title)
    levels = [(h, h.level) for h in logger.handlers]
    old_level = logger.level
    for handler, _ in levels:
        handler.setLevel(logging.WARNING)
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)
        for handler, level in levels:
            handler.setLevel(level)


def _metric_fn(task, labels: list[str]):
    """NNCF's validation function: the task's metric (accuracy, a detector's mAP) of a
    compiled model on (input, truth) items, what accuracy control bounds."""
    def metric(compiled, data) -> float:
        output = compiled.output(0)
        outputs, truths = [], []
        for x, truth in data:
            outputs.append(np.asarray(compiled(x)[output]))
            truths.append(truth)
        if not outputs:
            return 0.0
        stacked = np.concatenate(outputs)
        return float(task.score(stacked, np.asarray(truths) if np.isscalar(truths[0]) else truths, labels).value)
    return metric


class _Labelled:
    """(input, truth) pairs of validation samples, preprocessed as NNCF reads them (it
    iterates more than once), never all in memory."""

    def __init__(self, samples: Samples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        labels = self.samples.labels
        for i in range(len(self.samples)):
            truth = labels[i]
            yield self.samples.x[i:i + 1], int(truth) if isinstance(labels, np.ndarray) else truth


def import_nncf():
    """nncf, imported without torch's "No CUDA runtime is found" warning, which NNCF's
    torch extensions trigger on every machine without CUDA and which is no user's concern."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf

    return nncf


def quantize_openvino(src: Path, dst: Path, calibration: Samples, options: NncfOptions,
                      validation: Samples | None = None, max_drop: float | None = None,
                      cpu: CpuTarget | None = None, task=None, labels: list[str] | None = None
                      ) -> tuple[list[str], int]:
    """Write INT8 IR `dst` (.xml + .bin) from the float ONNX (or IR) `src` for the CPU kind `cpu`
    (default: portable); returns the operations kept in float by accuracy control, which
    bounds the drop of `task`'s metric of `labels` (needed with `max_drop`), and how many
    operations its search weighed (0 when INT8 held the bound with none in float)."""
    try:
        import openvino as ov

        nncf = import_nncf()
    except ImportError:
        raise BackendUnavailable("NNCF and OpenVINO are needed for --target openvino",
                                 hint="pip install 'edgetl[openvino]'") from None
    options.check()
    model = ov.Core().read_model(str(src))
    names = {op.get_friendly_name() for op in model.get_ops()}
    unknown = [n for n in options.ignored if n not in names]
    if unknown:
        raise ConfigError(f"--ignore names no operation of the model: {', '.join(unknown)}",
                          hint="use the node names of the ONNX graph (e.g. from Netron)")
    cpu = cpu or cpu_target(None)
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(cpu.overflow_fix))
    # A speech model's log-mel front-end (nodes exported as "frontend/...") stays float.
    frontend = sorted(n for n in names if in_frontend(n))
    ignored = [*options.ignored, *frontend]
    kwargs = dict(
        preset=nncf.QuantizationPreset.MIXED if options.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(calibration), fast_bias_correction=options.fast_bias_correction,
        model_type=nncf.ModelType.TRANSFORMER if options.model_type == "transformer" else None,
        ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
    )
    calib = nncf.Dataset(list(calibration.batches(1)))
    with _nncf_log(task.metric_title if task is not None else "metric") as log, progress.library_progress():
        if max_drop is None:
            quantized = nncf.quantize(model, calib, advanced_parameters=advanced, **kwargs)
        else:
            # NNCF compiles the models it validates with an explicit f32 inference precision.
            val = nncf.Dataset(_Labelled(validation), lambda item: item[0])
            metric = _metric_fn(task, labels)  # the task's metric of the card's labels
            # one ranking worker: each compiles with --threads threads (quantize/threads.py), and
            # NNCF's own count (half the logical CPUs) would multiply them on a larger machine;
            # the task says on how many samples a candidate is ranked
            restorer = nncf.AdvancedAccuracyRestorerParameters(num_ranking_workers=1,
                                                                ranking_subset_size=task.ranking_samples)
            quantized = nncf.quantize_with_accuracy_control(model, calib, val, metric, max_drop=max_drop,
                                                            drop_type=nncf.DropType.ABSOLUTE,
                                                            advanced_quantization_parameters=advanced,
                                                            advanced_accuracy_restorer_parameters=restorer, **kwargs)
    ov.save_model(quantized, str(dst), compress_to_fp16=False)
    return [re.sub(r"/WithoutBiases$", "", n) for n in log.nodes], log.total
