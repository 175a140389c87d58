"""The import settings (light: the CLI and recipes read them without loading the stage).

What cannot be read from the graph is asked for by name: the labels, the normalisation of
a float model, the input size where the graph leaves it open, the layout where the shape
does not say it, and the output where there are several."""
from __future__ import annotations

import dataclasses

from edgetl.core.errors import ConfigError
from edgetl.core.settings import Settings, setting, threads_setting

RESIZES = ("crop", "stretch", "letterbox")
DECODERS = ("yolov8",)  # a detector's output layouts (task/detection.py decodes them)


def parse_triple(text: str | None, flag: str) -> tuple[float, float, float] | None:
    """"0.485,0.456,0.406" -> three floats; a single number stands for all three channels."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(v == v and abs(v) != float("inf") for v in values):
        raise ConfigError(f"{flag} takes three numbers R,G,B (or one for all), got {text!r}",
                          hint=f"e.g. {flag} " + ("0.485,0.456,0.406" if flag == "--mean" else "0.229,0.224,0.225"))
    return (values[0], values[1], values[2])


def parse_size(text: str | None) -> tuple[int, int] | None:
    """"224" or "224x160" (height x width) -> (height, width)."""
    if text is None:
        return None
    parts = str(text).lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise ConfigError(f"--input-size takes N or HxW in pixels, got {text!r}", hint="e.g. --input-size 224")
    return (dims[0], dims[1])


@dataclasses.dataclass(frozen=True)
class ImportSettings(Settings):
    labels: str | None = setting(None, "The class names in output order: a,b,c or a file with one per line.",
                                 example="cat,dog", path="if-there")
    task: str = setting("classification", "What the model predicts.", choices=("classification", "detection"))
    decoder: str | None = setting(None, "A detector's output layout: yolov8 (YOLOv8/YOLO11 as Ultralytics exports "
                                  "them: N x (4 + classes) x anchors, centre x, y, width, height in input pixels, then "
                                  "class scores). Default with --task detection: yolov8.", choices=DECODERS)
    input_size: str | None = setting(None, "N or HxW: the input size where the graph leaves it open.", example="224")
    mean: str | None = setting(None, "Per-channel mean on the 0-1 pixel scale, in the model's channel order "
                               "(torchvision's convention); with --pixel-range 255 on the 0-255 scale.",
                               example="0.485,0.456,0.406")
    std: str | None = setting(None, "Per-channel standard deviation, on the scale of --mean.",
                              example="0.229,0.224,0.225")
    pixel_range: int = setting(1, "The scale --mean and --std are given on: 1 (0-1 pixels) or 255.", choices=(1, 255))
    layout: str | None = setting(None, "nchw or nhwc (default: read from the input's shape).", choices=("nchw", "nhwc"))
    color: str = setting("rgb", "The channel order the model was trained on (bgr for OpenCV-trained models).",
                         choices=("rgb", "bgr"))
    resize: str | None = setting(None, "crop: the shorter side to --crop-pct of it, then a centre crop; stretch: the "
                                 "whole photo resized to the input size; letterbox: the whole photo fitted in with "
                                 "grey borders. Default: crop for a classifier, letterbox for a detector.",
                                 choices=RESIZES)
    crop_pct: float = setting(0.875, "With --resize crop: the crop's share of the resized shorter side "
                              "(0.875: 224 of 256, torchvision's evaluation).", above=0, max=1, example="0.875")
    interpolation: str = setting("bilinear", "How photos are resized.",
                                 choices=("nearest", "bilinear", "bicubic", "lanczos"))
    sample_rate: int | None = setting(None, "Audio models: the sample rate (Hz) the model was trained at; clips "
                                      "are resampled to it.", min=1000, example="16000")
    window: int | None = setting(None, "Audio models: samples per input, where the graph leaves it open.", min=1,
                                 example="16000")
    output: str | None = setting(None, "The output that holds the class scores, when the model has several.")
    data: str | None = setting(None, "A labelled data set (class folders, or train/ and val/): the imported model is "
                               "checked and scored on it, and later commands take it as the model's data.", path=True)
    opset: int | None = setting(None, "ONNX opset for a TorchScript or torch.export model (default 18).", min=7)
    threads: int | None = threads_setting("the import's checks")

    def validate(self) -> None:
        if self.decoder is not None and self.task != "detection":
            raise ConfigError(f"--decoder {self.decoder} reads a detector's output", hint="add --task detection")
        if self.pixel_range != 1 and self.mean is None and self.std is None:
            raise ConfigError("--pixel-range says the scale of --mean and --std, and neither is given",
                              hint="pass --mean and --std on that scale, e.g. --pixel-range 255 --mean 127 --std 128")
        parse_triple(self.mean, "--mean")
        parse_triple(self.std, "--std")
        std = parse_triple(self.std, "--std")
        if std is not None and min(std) <= 0:
            raise ConfigError(f"--std must be positive, got {self.std}", hint="e.g. --std 0.229,0.224,0.225")
        parse_size(self.input_size)
