"""The quantization settings (torch-free: the CLI and recipes read them without loading
NNCF or torch). QuantizeSettings holds what every target takes, with the NNCF options
(openvino) and the quantization-aware fine-tuning options nested in it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from edgetl.core.errors import ConfigError
from edgetl.core.settings import Settings, setting, threads_setting
from edgetl.quantize.cpu import CPU_TARGETS, DEFAULT_CPU
from edgetl.runtime.backend_table import BACKENDS

# the backends that quantize, and the suffix of the file each one's INT8 model is (the backend table)
TARGETS = {name: Path(b.int8_suffix).suffix for name, b in BACKENDS.items() if b.quantizer}
DEFAULT_MAX_DROP = 0.01  # INT8 may lose at most one point of accuracy unless the user says otherwise
PRESETS = ("performance", "mixed")
QAT_TARGETS = ("openvino",)
METHODS = ("minmax", "entropy", "percentile")


@dataclasses.dataclass(frozen=True)
class NncfOptions(Settings):
    preset: str = setting("performance", "NNCF preset (openvino): mixed = asymmetric activations, for activations "
                          "not centred on 0.", choices=PRESETS)
    fast_bias_correction: bool = setting(True, "NNCF (openvino): the fast bias correction, or the slower, more exact "
                                         "one.", flag="--fast-bias-correction/--bias-correction")
    ignored: tuple[str, ...] = setting((), "NNCF (openvino): node name kept in float (repeatable).", flag="--ignore")
    model_type: str | None = setting(None, "NNCF: transformer for attention models.", cli=False)


@dataclasses.dataclass(frozen=True)
class QatOptions(Settings):
    epochs: int = setting(3, "Epochs of quantization-aware fine-tuning.", min=1, flag="--qat-epochs", example="3")
    # None: a tenth of the run's own learning rate, at most 1e-4
    lr: float | None = setting(None, "QAT learning rate [default: a tenth of the run's, at most 1e-4].", above=0,
                               flag="--qat-lr", example="1e-5")
    batch_size: int | None = setting(None, "QAT batch size (default: the run's).", min=2, cli=False)
    device: str = setting("auto", "Where QAT trains. auto: a GPU where this machine has one, else the CPU; cpu; "
                          "cuda[:N].")


@dataclasses.dataclass(frozen=True)
class QuantizeSettings(Settings):
    target: str | None = setting(None, "The runtime the INT8 model is for.", choices=tuple(TARGETS))
    calib: str | None = setting(None, "Calibration data (images or clips): a data set folder (labels ignored) or a "
                                "flat folder. Default: the run's train split.", path=True)
    val: str | None = setting(None, "Labelled data for the --max-drop bound. Default: the run's val split; for a run "
                              "adapted to other data, agreement with FP32 on unlabelled target samples held out from "
                              "calibration.", path=True)
    max_drop: float | None = setting(DEFAULT_MAX_DROP, "Largest accuracy loss allowed, as a fraction (0.01 = one "
                                     "point); layers fall back to float to hold it. 'none' writes the model whatever "
                                     "it loses.", min=0, below=1, example="0.01")
    cpu: str = setting(DEFAULT_CPU, "openvino/onnxruntime: the CPU kind the model will run on. portable: the same "
                       "answers on every x86 CPU (7-bit weights); vnni: only CPUs with VNNI/AMX (8-bit weights, wrong "
                       "on AVX2-only CPUs); arm.", choices=tuple(CPU_TARGETS))
    samples: int = setting(300, "Calibration samples.", min=1, example="300")
    method: str = setting("minmax", "Range estimation for the QDQ targets.", choices=METHODS, flag="--calibration")
    seed: int = setting(0, "Seed of the calibration sample draw.", cli=False)
    threads: int | None = threads_setting("calibration, the accuracy bound and QAT (every library)")
    qat: bool = setting(False, "openvino: when post-training INT8 cannot hold --max-drop, fine-tune the run with "
                        "fake quantization.")
    nncf_options: NncfOptions = setting(NncfOptions(), "NNCF options (openvino).", cli=False)
    qat_options: QatOptions = setting(QatOptions(), "Quantization-aware fine-tuning options.", cli=False)

    def validate(self) -> None:
        if self.target is None:
            raise ConfigError("quantization needs a target", hint=f"--target {' or '.join(TARGETS)}")
        if self.qat and self.target not in QAT_TARGETS:
            raise ConfigError(f"--qat is available for --target {', '.join(QAT_TARGETS)}, not {self.target}",
                              hint=f"for {self.target}, try --calibration entropy or percentile, or a larger --max-drop")
        if self.qat and self.max_drop is None:
            raise ConfigError("--qat is the fallback for when --max-drop cannot be held", hint="pass --max-drop too")


