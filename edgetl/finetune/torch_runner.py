"""PyTorch backend: runs a run directory's checkpoint. It lives on the training side and
plugs into the torch-free runtime's backend table through the `edgetl.backends` entry
point (pyproject.toml), so the runtime names no training code."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.core.errors import ConfigError
from edgetl.runtime.runner import Runner


class TorchRunner(Runner):
    backend = "torch"

    @classmethod
    def resolve_device(cls, device: str) -> str:
        if device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return device

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision_hint: str = "f32", bare: bool = False) -> TorchRunner:
        # Imported here, never at module level: listing the backends must not load torch.
        import torch

        from edgetl.finetune.run import load_run

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for but no CUDA device is available", hint="use --device cpu")
        from edgetl.finetune.training import set_torch_threads

        set_torch_threads(threads)
        # The reference model computes in IEEE f32: no TF32 on CUDA, no reduced-precision
        # oneDNN kernels on CPUs with AMX/BF16 (whatever a library's default becomes).
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
        model, card = load_run(path)
        runner = cls(path, card, device=device, threads=threads)
        runner.model = model.to(device).eval()
        runner._torch = torch
        return runner

    def compute(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            return self.model(x).float().cpu().numpy()
