"""The export settings (torch-free: the CLI and recipes read them without loading torch)."""
from __future__ import annotations

import dataclasses

from edgetl.core.errors import ConfigError
from edgetl.core.settings import Settings, setting, threads_setting


@dataclasses.dataclass
class ExportSettings(Settings):
    opset: int | None = setting(None, "ONNX opset (default 18; the installed onnx says which it can write).")
    static_batch: int | None = setting(None, "Fix the batch size (some edge compilers need it).", min=1, example="8")
    openvino: bool = setting(False, "Also write OpenVINO IR (.xml/.bin) beside the ONNX file.")
    fp16: bool = setting(False, "With --openvino: FP16 weights.")
    atol: float | None = setting(None, "Allowed max-abs error relative to the logit range (1e-3).", above=0, below=1,
                                 example="1e-3")
    data: str | None = setting(None, "Validation data for the parity check (default: the run's).")
    samples: int = setting(64, "Validation samples the parity gate compares.", min=1, cli=False)
    threads: int | None = threads_setting("the export and its parity check (torch, ONNX Runtime, OpenVINO)")

    def validate(self) -> None:
        if self.fp16 and not self.openvino:
            raise ConfigError("--fp16 applies to the OpenVINO IR", hint="add --openvino")
