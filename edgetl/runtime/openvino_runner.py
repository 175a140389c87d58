"""OpenVINO backend: an IR (.xml + .bin) compiled for a device string (CPU by default)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.card import ModelCard
from edgetl.errors import ArtifactError, BackendUnavailable
from edgetl.runtime.base import Runner

RT_INFO_KEY = ["edgetl", "card"]


def card_from_ov_model(model, path: Path) -> ModelCard:
    if not model.has_rt_info(RT_INFO_KEY):
        raise ArtifactError(f"{path} carries no edgetl model card", hint="export it with `edgetl export --openvino`")
    return ModelCard.from_json(model.get_rt_info(RT_INFO_KEY).astype(str), where=f"card of {path}")


class OpenVinoRunner(Runner):
    backend = "openvino"

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None) -> "OpenVinoRunner":
        import openvino as ov

        core = ov.Core()
        ov_device = device.upper()
        if ov_device.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise BackendUnavailable(f"OpenVINO has no device {ov_device}",
                                     hint=f"available: {', '.join(core.available_devices)}")
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            raise ArtifactError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
        config = {"INFERENCE_NUM_THREADS": threads} if threads and ov_device == "CPU" else {}
        runner = cls(path, card_from_ov_model(model, path), device, threads)
        runner.compiled = core.compile_model(model, ov_device, config)
        runner.request = runner.compiled.create_infer_request()
        runner._input = None
        return runner

    def infer(self, batch: np.ndarray) -> np.ndarray:
        # Reuse the request's input tensor while the shape stays the same: setting a new
        # tensor on every call makes a dynamic-shape model redo shape inference and
        # allocation (about 10% of a 1.5 ms call), which deployed code does not pay.
        batch = np.asarray(batch, dtype=np.float32)
        tensor = self._input
        if tensor is None or tuple(tensor.shape) != batch.shape:
            import openvino as ov

            tensor = self._input = ov.Tensor(np.array(batch, copy=True))
            self.request.set_input_tensor(tensor)
        else:
            tensor.data[...] = batch
        self.request.infer()
        return np.array(self.request.get_output_tensor().data, dtype=np.float32, copy=True)
