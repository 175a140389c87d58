"""PyTorch backend (training side): runs a run directory's checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.errors import ConfigError
from edgetl.runtime.base import Runner


class TorchRunner(Runner):
    backend = "torch"

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None) -> "TorchRunner":
        import torch

        from edgetl.finetune.run import load_run

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for but no CUDA device is available", hint="use --device cpu")
        if threads:
            torch.set_num_threads(threads)
        model, card = load_run(path)
        runner = cls(path, card, device=device, threads=threads)
        runner.model = model.to(device).eval()
        runner._torch = torch
        return runner

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.model(x).float().cpu().numpy()
