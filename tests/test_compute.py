"""How training computes (finetune/compute.py): channels-last image models on every
device, bf16 autocast only on CPUs with bf16 instructions, both recorded in the card.
bf16 is forced here by the CPU's flags as the choice reads them: on an AVX2-only CPU it
runs emulated (slowly), so the runs are tiny."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgetl.cli import cli
from edgetl.finetune.compute import BF16_CPU_FLAGS, training_compute

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, amp, images, expected", [
    ({"avx2", "fma"}, True, True, ("channels_last", "off")),
    ({"avx2", "avx512f", "avx512_vnni"}, True, True, ("channels_last", "off")),  # AVX-512 without BF16
    ({"avx2", "avx512f", "avx512_bf16"}, True, True, ("channels_last", "bf16")),
    ({"avx2", "amx_bf16"}, True, False, ("contiguous", "bf16")),  # audio: no image layout
    ({"avx2", "avx512_bf16"}, False, True, ("channels_last", "off")),  # amp turned off
])
def test_the_choice_follows_the_cpu_and_the_settings(monkeypatch, flags, amp, images, expected):
    monkeypatch.setattr("edgetl.finetune.compute.cpu_flags", lambda: set(flags))
    found = training_compute(CPU, images=images, amp=amp).to_dict()
    assert (found["memory_format"], found["autocast"]) == expected
    assert not training_compute(CPU, images=True, channels_last=False).channels_last


class _ConvOutputs:
    """The dtype and layout of every 2-d convolution's output while training runs."""

    def __init__(self):
        self.dtypes: set[torch.dtype] = set()
        self.channels_last = 0
        self.total = 0

    def __call__(self, module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and torch.is_grad_enabled() and output.dim() == 4:
            self.dtypes.add(output.dtype)
            self.total += 1
            self.channels_last += output.is_contiguous(memory_format=torch.channels_last) and output.shape[1] > 1


def _train(args, monkeypatch, flags) -> tuple[dict, _ConvOutputs]:
    monkeypatch.setattr("edgetl.finetune.compute.cpu_flags", lambda: set(flags))
    seen = _ConvOutputs()
    handle = torch.nn.modules.module.register_module_forward_hook(seen)
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        handle.remove()
    assert result.exit_code == 0, result.output
    out = args[args.index("--out") + 1]
    card = json.loads((Path(out) / "edgetl.json").read_text())
    return card, seen


@pytest.mark.parametrize("flags, autocast", [({"avx2"}, "off"), ({"avx2", *BF16_CPU_FLAGS}, "bf16")])
def test_a_classifier_trains_as_chosen_and_its_card_says_how(tiny_digits, tmp_path, monkeypatch, flags, autocast):
    out = tmp_path / "run"
    card, seen = _train(["-q", "finetune", str(tiny_digits), "--backbone", "efficientnet_lite0", "--strategy", "full",
                         "--epochs", "1", "--batch-size", "4", "--limit-per-class", "2", "--threads", "1",
                         "--out", str(out)], monkeypatch, flags)
    assert card["source"]["compute"] == {"memory_format": "channels_last", "autocast": autocast}
    assert seen.total > 0 and seen.channels_last == seen.total  # every convolution ran NHWC
    assert seen.dtypes == ({torch.bfloat16} if autocast == "bf16" else {torch.float32})


def test_a_detector_trains_as_chosen_and_its_card_says_how(tmp_path, monkeypatch):
    data = tmp_path / "scenes"
    made = CliRunner().invoke(cli, ["-q", "data", "digit-scenes", str(data), "--images", "12", "--size", "64",
                                    "--classes", "2", "--max-objects", "1"])
    assert made.exit_code == 0, made.output
    out = tmp_path / "run"
    card, seen = _train(["-q", "finetune", str(data), "--backbone", "efficientnet_lite0", "--strategy", "full",
                         "--epochs", "1", "--batch-size", "4", "--input-size", "64", "--threads", "1",
                         "--out", str(out)], monkeypatch, {"avx2", "avx512_bf16"})
    assert card["source"]["compute"] == {"memory_format": "channels_last", "autocast": "bf16"}
    assert seen.total > 0 and torch.bfloat16 in seen.dtypes
    assert seen.channels_last > seen.total // 2  # the backbone and FPN run NHWC (torchvision's batching copies)
