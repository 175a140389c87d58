"""The registry contract, over every family, plus real pretrained weights."""
import numpy as np
import pytest
import torch

from edgetl.backbones import build_backbone, find_family, list_backbones
from edgetl.core.errors import BackboneError, WeightsUnavailable
from edgetl.finetune.model import Classifier

# One entry per torchvision architecture family (all 87 names share these builders).
TORCHVISION_FAMILIES = [
    "alexnet", "vgg11_bn", "resnet18", "resnext50_32x4d", "wide_resnet50_2", "densenet121", "squeezenet1_0",
    "googlenet", "inception_v3", "mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5",
    "efficientnet_b0", "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf", "convnext_tiny", "vit_b_16",
    "vit_h_14", "swin_t", "swin_v2_t", "maxvit_t",
]


def check_contract(b):
    own = {id(p) for p in b.features.parameters()}
    staged = [id(p) for s in b.stages for p in s.parameters()]
    assert len(b.stages) >= 2, "unfreezing needs at least two stages"
    assert len(staged) == len(set(staged)), "stages overlap"
    assert set(staged) == own, "stages must cover every parameter of the feature extractor"
    pre = b.preprocessing
    assert pre.size[0] >= 32 and pre.resize >= pre.size[0] and len(pre.mean) == len(pre.std) == 3


@pytest.mark.parametrize("name", TORCHVISION_FAMILIES)
def test_torchvision_contract_on_meta_device(name):
    """Shapes only (no memory, no initialisation): features are N x feature_dim."""
    b = find_family(name).build(name, "none", device="meta")
    check_contract(b)
    size = b.preprocessing.size[0]
    out = b.features.eval()(torch.empty(2, 3, size, size, device="meta"))
    assert tuple(out.shape) == (2, b.feature_dim)


@pytest.mark.parametrize("name, size", [("resnet18", 32), ("mobilenet_v3_small", 32), ("squeezenet1_0", 64),
                                        ("googlenet", 64), ("efficientnet_lite0", 32), ("timm:lcnet_050", 32),
                                        ("timm:resnet18", 32)])
def test_real_forward_and_head(name, size):
    b = build_backbone(name, "none")
    check_contract(b)
    model = Classifier(b.features, b.feature_dim, num_classes=5).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()


def test_packaged_efficientnet_lite0_is_imagenet_trained():
    """scikit-image's chelsea is a cat and coffee is an espresso for the packaged weights."""
    from PIL import Image
    from skimage import data as skdata
    from torchvision.models import ResNet18_Weights

    from edgetl.backbones.vision import LITE0_PREPROCESSING, lite0_imagenet_model

    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet class names, offline
    model = lite0_imagenet_model().eval()
    batch = np.stack([LITE0_PREPROCESSING(Image.fromarray(skdata.chelsea())),
                      LITE0_PREPROCESSING(Image.fromarray(skdata.coffee()))])
    with torch.no_grad():
        top = model(torch.from_numpy(batch)).argmax(1).tolist()
    assert "cat" in categories[top[0]].lower()  # tabby/tiger/Egyptian cat
    assert categories[top[1]] == "espresso"


def test_weights_path_roundtrip(tmp_path):
    a = build_backbone("resnet18", "none")
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in a.features.state_dict().items()}}, path)
    b = build_backbone("resnet18", str(path))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a.features.eval()(x), b.features.eval()(x))


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build_backbone("mobilenet_v3_small", "none").features.state_dict(), path)
    with pytest.raises(WeightsUnavailable, match="do not fit"):
        build_backbone("resnet18", str(path))


def test_a_pickle_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="cannot load weights"):
        build_backbone("resnet18", str(path))


def test_offline_default_weights_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable) as err:
        build_backbone("resnet18", "default")
    assert "offline" in err.value.message and str(tmp_path) in err.value.hint and "--weights" in err.value.hint


def test_cached_torchvision_weights_are_used_offline(tmp_path, monkeypatch):
    """A user's filled cache works without a network: the file is read from TORCH_HOME."""
    from torchvision.models import get_model_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    w = get_model_weights("mobilenet_v3_small").DEFAULT
    reference = build_backbone("mobilenet_v3_small", "none").features
    full_state = {**reference.state_dict(),
                  "classifier.3.weight": torch.zeros(1000, 1024), "classifier.3.bias": torch.zeros(1000)}
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(full_state, cache / w.url.rsplit("/", 1)[-1])
    b = build_backbone("mobilenet_v3_small", "default")
    assert torch.equal(b.features.state_dict()["features.0.0.weight"], reference.state_dict()["features.0.0.weight"])


def test_unknown_name_suggests_close_ones():
    with pytest.raises(BackboneError, match="unknown backbone") as err:
        build_backbone("resnet19")
    assert "resnet18" in err.value.hint


def test_unknown_timm_name():
    with pytest.raises(BackboneError, match="timm has no model"):
        build_backbone("timm:no_such_net", "none")


def test_listing_covers_every_family():
    infos = {i.name: i for i in list_backbones("image")}
    assert {"resnet18", "vit_b_16", "efficientnet_lite0", "timm:resnet18"} <= set(infos)
    lite0 = infos["efficientnet_lite0"]
    assert lite0.offline_weights and lite0.feature_dim == 1280 and lite0.input_size == 224
    assert infos["resnet18"].params == 11_689_512 and infos["resnet18"].feature_dim == 512
    assert {i.modality for i in infos.values()} == {"image"}


def test_listing_filters_by_modality(monkeypatch, tmp_path):
    """An audio family lists under audio and only there (checked with a registered one,
    so that the filter is tested whatever families ship)."""
    import edgetl.backbones
    from edgetl.backbones import BackboneInfo, Family, registry

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path))
    edgetl.backbones._families()
    info = BackboneInfo("test_kws", "audio", "test", "an audio entry", 10, 96, None, None)
    monkeypatch.setattr(registry, "FAMILIES", [*registry.FAMILIES, Family(
        "test", "audio", names=lambda: ["test_kws"], build=lambda name, weights: None, info=lambda n: info,
        accepts=lambda n: False)])
    audio = list_backbones("audio")
    assert "test_kws" in [i.name for i in audio] and {i.modality for i in audio} == {"audio"}
    assert "test_kws" not in [i.name for i in list_backbones("image")]
    assert {i.name for i in list_backbones()} == {i.name for i in audio} | {i.name for i in list_backbones("image")}
    assert not list(tmp_path.iterdir()), "a listing with a family from outside edgetl must not be cached"


def test_piped_listing_shows_every_full_name_and_later_listings_skip_torch(tmp_path):
    """`edgetl backbones | grep NAME` finds every name; the second listing comes from the
    cache and imports no torch."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "EDGETL_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-m", "edgetl", "backbones"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    names = [i.name for i in list_backbones()]
    lines = first.stdout.splitlines()
    for name in names:
        assert any(line.split()[:1] == [name] for line in lines), f"{name} is not a whole word at a line's start"
    assert "…" not in first.stdout
    assert len(list(tmp_path.glob("backbones-*.json"))) == 1
    probe = ("import sys; from edgetl.backbones import list_backbones; infos = list_backbones(); "
             "print(len(infos), 'torch' in sys.modules, [i.offline_weights for i in infos if i.name == 'efficientnet_lite0'])")
    second = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert second.stdout.split() == [str(len(names)), "False", "[True]"]


def test_bad_weights_files_say_what_is_wrong_and_never_suggest_unsafe_loading(tmp_path):
    import os
    from pathlib import PurePosixPath

    good = tmp_path / "good.pt"
    torch.save(build_backbone("resnet18", "none").features.state_dict(), good)
    files = {"random.pt": os.urandom(4096), "truncated.pt": good.read_bytes()[:5000]}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"path": PurePosixPath("/etc")}, tmp_path / "objects.pt")  # a pickled class, not tensors
    expected = {"random.pt": "not a PyTorch checkpoint", "truncated.pt": "damaged or truncated",
                "objects.pt": "Python objects besides tensors"}
    for name, reason in expected.items():
        with pytest.raises(WeightsUnavailable) as err:
            build_backbone("resnet18", str(tmp_path / name))
        assert reason in err.value.message and "weights_only" not in err.value.message, err.value.message
        assert "torch.save(model.state_dict()" in err.value.hint
