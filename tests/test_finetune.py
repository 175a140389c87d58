"""Strategies really freeze what they should, runs are complete, repeatable and atomic."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgetl import finetune
from edgetl.backbones import build_backbone
from edgetl.core.errors import ConfigError, EdgeTLError
from edgetl.finetune.augment import normalize
from edgetl.finetune.loop import Trainer
from edgetl.finetune.model import Classifier
from edgetl.finetune.settings import FinetuneSettings
from edgetl.finetune.training import Distributed
from edgetl.modality.image import ImagePreprocessing

FAST = dict(input_size=32, batch_size=8, epochs=2, hflip=False)


@pytest.fixture(scope="module")
def init_weights(tmp_path_factory):
    """A fixed (random) ResNet-18 initialisation passed with --weights PATH."""
    torch.manual_seed(123)
    b = build_backbone("resnet18", "none")
    path = tmp_path_factory.mktemp("w") / "resnet18_init.pt"
    torch.save(b.features.state_dict(), path)
    return path, {k: v.clone() for k, v in b.features.state_dict().items()}, [s.name for s in b.stages]


def _changed_stages(run: Path, init: dict) -> dict[str, bool]:
    """Per ResNet-18 stage prefix: did any tensor (weights or BN statistics) change?"""
    state = torch.load(run / "model.pt", weights_only=True)
    out = {}
    for prefix in ("conv1", "layer1", "layer2", "layer3", "layer4"):
        keys = [k for k in init if k.startswith(prefix) and not k.endswith("num_batches_tracked")]
        out[prefix] = any(not torch.equal(state[f"features.{k}"], init[k]) for k in keys)
    return out


def test_resnet18_has_the_expected_stages(init_weights):
    assert init_weights[2] == ["conv1+bn1+layer1", "layer2", "layer3", "layer4"]


def test_linear_probe_keeps_the_backbone_and_trains_the_head(tmp_path, tiny_digits, init_weights):
    path, init, _ = init_weights
    r = finetune(tiny_digits, "resnet18", tmp_path / "run", weights=str(path), strategy="linear-probe", **FAST)
    assert not any(_changed_stages(r.out, init).values())
    state = torch.load(r.out / "model.pt", weights_only=True)
    assert state["head.1.weight"].shape == (3, 512)
    assert all(h["trainable_stages"] == 0 for h in r.history)


def test_linear_probe_matches_a_logistic_regression_on_the_same_features(tmp_path, caplog):
    """The probe's head is fitted to convergence: on held-out test digits it is within a
    point of scikit-learn's logistic regression fitted on the same frozen features."""
    from conftest import write_digit_folder
    from sklearn.linear_model import LogisticRegression

    from edgetl import modality
    from edgetl.data.folders import open_folder

    data = write_digit_folder(tmp_path / "digits", classes=tuple(range(10)),
                              per_split=(("train", 12), ("val", 10), ("test", 25)))
    with caplog.at_level("WARNING", logger="edgetl"):
        r = finetune(data, "efficientnet_lite0", tmp_path / "run", strategy="linear-probe", input_size=32,
                     threads=1, lr=0.05)
    assert "--lr has no effect on --strategy linear-probe" in caplog.text
    assert all("l2" in h for h in r.history) and len({h["l2"] for h in r.history}) > 1
    bb = build_backbone("efficientnet_lite0", "default")
    bb.features.eval()
    pre = bb.preprocessing.with_size(32)
    splits = open_folder(data, modality="image")

    def features(split):
        cached, labels = modality.decode_split(splits[split], pre)
        with torch.no_grad():
            return bb.features(torch.from_numpy(pre.normalize(cached))).numpy(), labels

    (f_train, y_train), (f_test, y_test) = features("train"), features("test")
    reference = LogisticRegression(max_iter=5000).fit(f_train, y_train).score(f_test, y_test)
    state = torch.load(r.out / "model.pt", weights_only=True)
    logits = f_test @ state["head.1.weight"].numpy().T + state["head.1.bias"].numpy()
    ours = float((logits.argmax(1) == y_test).mean())
    assert ours >= reference - 0.01, (ours, reference)


def test_a_second_probe_of_the_same_split_reads_its_features_from_the_cache(tmp_path, tiny_digits, monkeypatch):
    """The frozen backbone runs once per split and backbone: a second probe (another --out,
    another seed) reads the features; other weights compute them again."""
    from edgetl.finetune import loop

    computed = []
    batches = loop.Trainer._feature_batches

    def counting(self, x, bar, what):
        computed.append(what)
        return batches(self, x, bar, what)

    monkeypatch.setattr(loop.Trainer, "_feature_batches", counting)
    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))  # not the session's, where other probes ran
    opts = dict(strategy="linear-probe", input_size=32, threads=1)
    first = finetune(tiny_digits, "efficientnet_lite0", tmp_path / "a", **opts)
    assert len(computed) == 2  # training and validation features
    again = finetune(tiny_digits, "efficientnet_lite0", tmp_path / "b", seed=5, **opts)
    assert len(computed) == 2 and again.val_accuracy == first.val_accuracy
    finetune(tiny_digits, "efficientnet_lite0", tmp_path / "c", weights="none", **opts)
    assert len(computed) == 4


def test_partial_trains_only_the_last_stages(tmp_path, tiny_digits, init_weights):
    path, init, _ = init_weights
    r = finetune(tiny_digits, "resnet18", tmp_path / "run", weights=str(path), strategy="partial", unfreeze=1, **FAST)
    assert _changed_stages(r.out, init) == {"conv1": False, "layer1": False, "layer2": False, "layer3": False,
                                            "layer4": True}


def test_full_trains_every_stage(tmp_path, tiny_digits, init_weights):
    path, init, _ = init_weights
    r = finetune(tiny_digits, "resnet18", tmp_path / "run", weights=str(path), strategy="full", **FAST)
    assert all(_changed_stages(r.out, init).values())


def test_gradual_unfreezes_one_stage_per_epoch(tmp_path, tiny_digits, init_weights):
    path, init, _ = init_weights
    r = finetune(tiny_digits, "resnet18", tmp_path / "run", weights=str(path), strategy="gradual",
                 **{**FAST, "epochs": 3})
    assert [h["trainable_stages"] for h in r.history] == [0, 1, 2]
    changed = _changed_stages(r.out, init)
    assert not changed["conv1"] and not changed["layer1"] and not changed["layer2"]


def test_trainer_freezes_stages_and_their_batchnorm():
    b = build_backbone("resnet18", "none")
    model = Classifier(b.features, b.feature_dim, 3)
    cfg = FinetuneSettings(strategy="gradual")
    trainer = Trainer(model, b.stages, cfg, torch.device("cpu"), Distributed(), (0.5,) * 3, (0.5,) * 3)
    trainer.unfrozen = 2
    trainer.set_trainable()
    trainer.train_mode()
    assert [all(p.requires_grad for p in s.parameters()) for s in b.stages] == [False, False, True, True]
    assert [any(p.requires_grad for p in s.parameters()) for s in b.stages] == [False, False, True, True]
    assert not model.features.bn1.training and not model.features.layer1[0].bn1.training
    assert model.features.layer4[0].conv1.training
    assert not model.features.layer4[0].bn1.training  # gradual keeps BN statistics fixed
    assert model.head.training
    # Layer-wise decay: deeper stages learn more slowly, the head fastest.
    assert trainer.scales == sorted(trainer.scales) and trainer.scales[0] < trainer.scales[-1] <= 1


def test_run_directory_is_complete(tiny_run):
    from edgetl.core.card import ModelCard

    files = {p.name for p in tiny_run.iterdir()}
    assert {"model.pt", "edgetl.json", "history.json", "curves.png"} <= files
    assert (tiny_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = ModelCard.load(tiny_run)
    history = json.loads((tiny_run / "history.json").read_text())
    assert card.labels == ["0", "1", "2"] and card.input["shape"] == [None, 3, 32, 32]
    assert card.source["backbone"] == "efficientnet_lite0" and card.source["strategy"] == "linear-probe"
    assert len(history) == card.metrics["epochs_run"] and {"train_loss", "val_accuracy", "seconds"} <= set(history[0])
    assert card.metrics["val_accuracy"] == max(h["val_accuracy"] for h in history)


def test_same_seed_same_model(tmp_path, tiny_digits, init_weights):
    path = init_weights[0]
    runs = [finetune(tiny_digits, "resnet18", tmp_path / f"r{i}", weights=str(path), strategy="full",
                     **{**FAST, "epochs": 1, "hflip": True}) for i in range(2)]
    a, b = (torch.load(r.out / "model.pt", weights_only=True) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_output_is_not_overwritten_and_interrupts_leave_nothing(tmp_path, tiny_digits, monkeypatch):
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(EdgeTLError, match="already exists"):
        finetune(tiny_digits, "resnet18", existing, weights="none", **FAST)
    assert (existing / "keep.txt").read_text() == "mine"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("edgetl.finetune.job.plot_history", boom)
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny_digits, "resnet18", tmp_path / "new", weights="none", **{**FAST, "epochs": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.parametrize("options, match", [
    (dict(strategy="partial"), "needs --unfreeze"),
    (dict(strategy="sideways"), "unknown strategy"),
    (dict(epochs=0), "--epochs"),
    (dict(batch_size=1), "--batch-size"),
    (dict(device="cuda") if not torch.cuda.is_available() else dict(device="tpu"), "device"),
    (dict(colour="blue"), "unknown fine-tuning option"),
    (dict(ema=True), "for detectors"),
])
def test_bad_options(tmp_path, tiny_digits, options, match):
    with pytest.raises(ConfigError, match=match):
        finetune(tiny_digits, "resnet18", tmp_path / "run", weights="none", **{**FAST, **options})
    assert not (tmp_path / "run").exists()


def test_fixed_size_backbone_refuses_another_input_size(tmp_path, tiny_digits):
    with pytest.raises(ConfigError, match="only takes 224 px"):
        finetune(tiny_digits, "vit_b_16", tmp_path / "run", weights="none", **FAST)


def test_training_and_runtime_normalisation_agree():
    pre = ImagePreprocessing(size=(8, 8), resize=8, mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1))
    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    numpy_side = pre.normalize(pixels)
    torch_side = normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2), pre.mean, pre.std).numpy()
    np.testing.assert_allclose(torch_side, numpy_side, atol=1e-5)


def test_distributed_data_parallel_with_torchrun(tmp_path, tiny_digits):
    """Two CPU processes (gloo) train one model; rank 0 writes the run."""
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "edgetl.cli", "-q", "finetune",
           str(tiny_digits), "--backbone", "resnet18", "--weights", "none", "--epochs", "1", "--input-size", "32",
           "--batch-size", "8", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((out / "edgetl.json").read_text())
    assert card["source"]["world_size"] == 2
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1
