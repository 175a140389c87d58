"""The detector: a backbone's multi-scale stages (strides 8, 16, 32), a feature pyramid,
and torchvision's FCOS head (anchor-free: per location a class score, the distances to
the box's four sides, and a centre-ness), trained with torchvision's FCOS losses (focal
loss, GIoU, centre-ness; centre sampling). Why FCOS: one prediction per location and no
anchor boxes to tune, so a small data set of any object sizes needs no anchor search, the
head is a few convolutions that quantize like the backbone, and torchvision keeps a
tested implementation of its target assignment and losses.

`forward` is what is exported: boxes decoded in the graph into the Ultralytics layout
`[N, 4 + classes, anchors]` (centre x, y, width, height in input pixels, then per class
sqrt(sigmoid(class) * sigmoid(centre-ness)), the score torchvision's FCOS ranks by), so
edgetl's detectors and imported YOLOv8 models share one decoding (task/detection.py):
no data-dependent shapes in the graph, NMS on the device in numpy.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
from torch import nn

from edgetl.core.errors import ConfigError

STRIDES = (8, 16, 32)


@dataclasses.dataclass
class Pyramid:
    """A backbone's feature maps at STRIDES: the module (N, 3, H, W) -> list of maps, and
    their channels."""

    body: nn.Module
    channels: list[int]
    stages: list  # for unfreezing, input to output


def build_pyramid(backbone: str, weights: str = "default") -> Pyramid:
    """The multi-scale stages of a vision backbone: the packaged EfficientNet-Lite0 (its
    ImageNet weights offline), or any timm CNN (timm:NAME) that has stages at 8, 16, 32."""
    import timm

    from edgetl.backbones.stages import split_stages

    if backbone == "efficientnet_lite0":
        body = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2, 3, 4))
        if weights == "default":
            from edgetl.backbones.vision import lite0_imagenet_model

            full = lite0_imagenet_model().state_dict()
            body.load_state_dict({k: full[k] for k in body.state_dict()})
        elif weights != "none":
            from edgetl.backbones.stages import read_state_dict

            state = read_state_dict(weights)
            body.load_state_dict({k: v for k, v in state.items() if k in body.state_dict()}, strict=False)
    elif backbone.startswith("timm:"):
        name = backbone.split(":", 1)[1]
        try:
            body = timm.create_model(name, pretrained=weights == "default", features_only=True)
        except Exception as exc:  # timm raises several kinds for a name or a model without features
            raise ConfigError(f"timm cannot give the stages of {name}: {str(exc).splitlines()[0][:200]}",
                              hint="a detector needs a CNN backbone with stages at strides 8, 16 and 32") from None
        reductions = body.feature_info.reduction()
        wanted = [reductions.index(s) for s in STRIDES if s in reductions]
        if len(wanted) != len(STRIDES):
            raise ConfigError(f"{name} has no stages at strides {STRIDES} (its: {reductions})",
                              hint="pick a CNN backbone, e.g. efficientnet_lite0 or timm:resnet18")
        body = timm.create_model(name, pretrained=weights == "default", features_only=True, out_indices=wanted)
    else:
        raise ConfigError(f"a detector needs a backbone's multi-scale stages; {backbone} does not give them here",
                          hint="use efficientnet_lite0 (offline ImageNet weights) or timm:NAME of a CNN")
    return Pyramid(body, list(body.feature_info.channels()), split_stages(body))


class Detector(nn.Module):
    """Pyramid -> FPN -> FCOS head. `fcos` is torchvision's FCOS around the same modules,
    used for its losses (train mode, images already letterboxed and normalized);
    `forward` is the exported graph."""

    def __init__(self, pyramid: Pyramid, num_classes: int, size: int, channels: int = 64, head_convs: int = 2):
        from torchvision.models.detection import FCOS
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.fcos import FCOSHead
        from torchvision.ops import FeaturePyramidNetwork

        super().__init__()
        self.num_classes, self.size, self.channels, self.head_convs = num_classes, size, channels, head_convs
        self.body = pyramid.body
        self.fpn = FeaturePyramidNetwork(pyramid.channels, channels)
        self.head = FCOSHead(channels, 1, num_classes, num_convs=head_convs)
        self.neck = _Neck(self.body, self.fpn, channels)
        # one anchor per location, as large as its stride: FCOS's scale ranges (0-64, 64-128,
        # 128+ pixels at strides 8, 16, 32) are derived from it
        anchors = AnchorGenerator(tuple((s,) for s in STRIDES), ((1.0,),) * len(STRIDES))
        self.fcos = FCOS(self.neck, num_classes, min_size=size, max_size=size, image_mean=[0.0, 0.0, 0.0],
                         image_std=[1.0, 1.0, 1.0], anchor_generator=anchors, head=self.head)
        points, strides = _points(size)
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("point_strides", strides, persistent=False)

    def losses(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """torchvision's FCOS losses (classification, bbox_regression, bbox_ctrness)."""
        self.fcos.train(self.training)
        losses: dict[str, torch.Tensor] = self.fcos(list(images), targets)
        return losses

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, size, size) -> (N, 4 + classes, anchors): cx, cy, w, h, class scores."""
        out = self.head(list(self.neck(x).values()))
        codes = out["bbox_regression"] * self.point_strides[None, :, None]  # distances to the sides, in pixels
        x0y0 = self.points[None] - codes[..., :2]
        x1y1 = self.points[None] + codes[..., 2:]
        scores = torch.sqrt(torch.sigmoid(out["cls_logits"]) * torch.sigmoid(out["bbox_ctrness"]))
        boxes = torch.cat([(x0y0 + x1y1) / 2, x1y1 - x0y0], dim=2)
        return torch.cat([boxes, scores], dim=2).permute(0, 2, 1)


class _Neck(nn.Module):
    """The pyramid's maps through the FPN, as torchvision's detectors take a backbone."""

    def __init__(self, body: nn.Module, fpn: nn.Module, channels: int):
        super().__init__()
        self.body, self.fpn, self.out_channels = body, fpn, channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        maps = self.body(x)
        result: OrderedDict = self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))
        return result


def _points(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each location's point and stride, level by level, row by row, as torchvision's
    AnchorGenerator places its anchors (centred on stride multiples)."""
    points, strides = [], []
    for stride in STRIDES:
        n = -(-size // stride)
        ys, xs = torch.meshgrid(torch.arange(n) * stride, torch.arange(n) * stride, indexing="ij")
        points.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float())
        strides.append(torch.full((n * n,), float(stride)))
    return torch.cat(points), torch.cat(strides)


def load_detector(path, card) -> Detector:
    """The detector of a run directory (eval mode), from its card and checkpoint."""
    from edgetl.backbones.stages import safe_load

    cfg = card.source["detector"]
    model = Detector(build_pyramid(card.source["backbone"], "none"), len(card.labels), cfg["size"],
                     cfg.get("channels", 64), cfg.get("head_convs", 2))
    model.load_state_dict(safe_load(path / "model.pt"))
    return model.eval()


__all__ = ["STRIDES", "Detector", "Pyramid", "build_pyramid", "load_detector"]
