"""ONNX -> OpenVINO IR (.xml/.bin), FP32 or FP16 weights, card in rt_info."""
from __future__ import annotations

from pathlib import Path

from edgetl.card import ModelCard
from edgetl.errors import BackendUnavailable

RT_INFO_KEY = ["edgetl", "card"]


def export_openvino(onnx_path: Path, xml_path: Path, card: ModelCard, fp16: bool = False) -> None:
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailable("OpenVINO is not installed", hint="pip install 'edgetl[openvino]'") from None
    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(card.to_json(), RT_INFO_KEY)
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)


def set_openvino_card(xml_path: Path, card: ModelCard) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(xml_path))
    model.set_rt_info(card.to_json(), RT_INFO_KEY)
    tmp = xml_path.with_name(xml_path.stem + ".tmp.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)  # weights are already in their precision
    tmp.replace(xml_path)
    tmp.with_suffix(".bin").replace(xml_path.with_suffix(".bin"))
