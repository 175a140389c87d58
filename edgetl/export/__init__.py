"""Export a fine-tuned run to ONNX (and OpenVINO IR) behind the parity gate.

`edgetl.export(...)` (this package is callable) exports a run (`job.py`); its settings
are `settings.py`, the parity gate `parity.py`. Attributes load lazily so that reading the
settings does not load the stage.
"""
from edgetl.core.lazy import lazy_attributes, make_package_callable

_LAZY = {"export_run": "job", "ExportResult": "job", "write_artifact_card": "job", "check_artifacts": "job",
         "verify": "job", "ExportSettings": "settings"}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)


make_package_callable(__name__, "edgetl.export.job:export_run")
