"""ONNX -> OpenVINO IR (.xml/.bin), FP32 or FP16 weights, card in rt_info."""
from __future__ import annotations

from pathlib import Path

from edgetl.core.card import ModelCard
from edgetl.core.errors import BackendUnavailable
from edgetl.runtime.artifacts import OPENVINO_CARD_KEY


def export_openvino(onnx_path: Path, xml_path: Path, card: ModelCard, fp16: bool = False) -> None:
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailable("OpenVINO is not installed", hint="pip install 'edgetl[openvino]'") from None
    # read_model, not convert_model: the latter folds the front-end's generated DFT kernels
    # back into a megabyte of weights (export/frontend_kernels.py); the CPU plugin folds
    # them in memory when it compiles the model.
    model = ov.Core().read_model(str(onnx_path))
    model.set_rt_info(card.to_json(), OPENVINO_CARD_KEY)
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
