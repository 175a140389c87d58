"""An interrupted run resumes from its last completed epoch and ends where a run that was
never stopped ends, bit for bit (one thread); a resume with other settings is refused."""
import pytest
import torch

from edgetl import finetune
from edgetl.core.errors import ConfigError
from edgetl.finetune import loop
from edgetl.finetune.checkpoint import folder_for

RUN = dict(strategy="gradual", epochs=4, patience=4, input_size=32, batch_size=8, threads=1, seed=3)


def _interrupt_at(monkeypatch, epoch: int):
    """Stop the next run as Ctrl-C would, when epoch `epoch` asks for its first batch."""
    batches = loop.Trainer._batches

    def stopping(self, n, e, batch):
        if e == epoch:
            raise KeyboardInterrupt
        return batches(self, n, e, batch)

    monkeypatch.setattr(loop.Trainer, "_batches", stopping)


def _state(run):
    return torch.load(run / "model.pt", weights_only=True)


def _figures(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_second")} for h in history]


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, tiny_digits, monkeypatch, caplog):
    whole = finetune(tiny_digits, "efficientnet_lite0", tmp_path / "whole", **RUN)
    out = tmp_path / "stopped"
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        with pytest.raises(KeyboardInterrupt):
            finetune(tiny_digits, "efficientnet_lite0", out, **RUN)
    assert not out.exists() and (folder_for(out) / "last.pt").is_file()
    assert "--resume" in caplog.text
    with pytest.raises(ConfigError, match="--lr"):  # other settings: refused, the checkpoint kept
        finetune(tiny_digits, "efficientnet_lite0", out, resume=True, **{**RUN, "lr": 5e-4})
    resumed = finetune(tiny_digits, "efficientnet_lite0", out, resume=True, **RUN)
    a, b = _state(whole.out), _state(resumed.out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _figures(resumed.history) == _figures(whole.history) and len(resumed.history) == 4
    assert not (folder_for(out) / "last.pt").exists()  # removed once the run is written


def test_resume_without_an_interrupted_run_says_so(tmp_path, tiny_digits):
    with pytest.raises(ConfigError, match="no interrupted run"):
        finetune(tiny_digits, "efficientnet_lite0", tmp_path / "new", resume=True, **RUN)
