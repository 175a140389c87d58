"""`edgetl import`: a model edgetl did not train gets a card (labels, preprocessing, task),
after which every command takes it as it takes a run. Light: the stage loads on use."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.importer.settings import ImportSettings

if TYPE_CHECKING:
    from edgetl.importer.job import ImportResult


def import_model(model: Any, out: str | Path, settings: ImportSettings | None = None, overwrite: bool = False,
                 **options: Any) -> ImportResult:
    """Import `model` (a path to .onnx, .xml, TorchScript .pt or torch.export .pt2, or an
    nn.Module) into the folder `out`; see edgetl/importer/job.py."""
    from edgetl.importer.job import import_model as _import

    return _import(model, out, settings, overwrite=overwrite, **options)


__all__ = ["ImportSettings", "import_model"]
