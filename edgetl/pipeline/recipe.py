"""Recipes: a whole pipeline in one YAML file, whose keys are the fields of the stage
settings objects and nothing else.

```yaml
name: digits-lite0
data: {digits: {size: 64}}          # or {folder: path/to/data}, {keywords: {...}}, {digit_scenes: {...}}
target: {digits: {domain: textured}}   # optional: unlabelled device data (domain adaptation)
finetune: {backbone: efficientnet_lite0, strategy: full, epochs: 6, input_size: 64, image: {hflip: false}}
# or, for a model trained elsewhere, instead of finetune (and export):
# import: {model: mnv3.onnx, labels: labels.txt, mean: "0.485,0.456,0.406", std: "0.229,0.224,0.225"}
evaluate: {split: test}
export: {openvino: true}
streaming: {target_fa_per_hour: 1}   # speech: the operating point, picked on the validation recording
quantize: {targets: [{target: openvino, max_drop: 0.01}, {target: onnxruntime}]}
bench: {split: test, batches: [1]}
package: {targets: [openvino, onnxruntime]}
```

A recipe is validated whole before any work; an error names its key path
(`quantize.targets[1].max_drop: must be at least 0 and below 1, got 5`). `--set
key.path=value` changes one key first (the value is read as YAML).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from edgetl.bench.settings import BenchSettings
from edgetl.core.errors import ConfigError
from edgetl.core.settings import Settings, setting, shown
from edgetl.data.settings import DigitScenesSettings, DigitsSettings, KeywordsSettings
from edgetl.deploy.settings import PackageSettings
from edgetl.evaluate.settings import EvaluateSettings, StreamEvalSettings
from edgetl.export.settings import ExportSettings
from edgetl.finetune.settings import FinetuneSettings
from edgetl.importer.settings import ImportSettings
from edgetl.quantize.settings import QuantizeSettings

TARGET_TRAIN = "target/train"  # where the target stage writes the unlabelled data finetune adapts to


@dataclasses.dataclass(frozen=True)
class DataSource(Settings):
    """Where a data set comes from: a folder of the user's, or a built-in set written under
    the pipeline's folder."""

    folder: str | None = setting(None, "A data set folder (relative paths are taken from the recipe's folder).",
                                 path=True)
    digits: DigitsSettings | None = setting(None, "The built-in digits.")
    keywords: KeywordsSettings | None = setting(None, "The built-in spoken keywords.")
    digit_scenes: DigitScenesSettings | None = setting(None, "The built-in detection scenes (digits on photos).")

    def validate(self) -> None:
        given = [k for k in ("folder", "digits", "keywords", "digit_scenes") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError("a data source is one of folder, digits, keywords or digit_scenes, got "
                              f"{', '.join(given) or 'none'}", hint="e.g. data: {digits: {size: 64}}")


@dataclasses.dataclass(frozen=True)
class TargetData(DataSource):
    """Unlabelled data from the device (domain adaptation): its train split is what the
    model adapts to; its test split, when it has one, is reported as target accuracy."""


@dataclasses.dataclass(frozen=True)
class ImportStage(ImportSettings):
    """A model trained elsewhere in place of fine-tuning: imported with the recipe's data
    set (it is scored on its val split, calibrated on its train split)."""

    model: str | None = setting(None, "The model file (.onnx, .xml, TorchScript .pt, torch.export .pt2).", path=True)

    def validate(self) -> None:
        if not self.model:
            raise ConfigError("import.model: the model file to import", hint="e.g. import: {model: mnv3.onnx, ...}")
        if self.data:
            raise ConfigError("import.data: the recipe's data section gives it", hint="drop import.data")
        super().validate()


@dataclasses.dataclass(frozen=True)
class QuantizeStage(Settings):
    targets: tuple[QuantizeSettings, ...] = setting((), "One INT8 model per entry.")
    side_by_side: bool = setting(True, "Quantize the targets at the same time, each in its own process, when the "
                                       "usable cores hold each target's threads and the free memory 4 GB each.")


@dataclasses.dataclass(frozen=True)
class StreamingStage(StreamEvalSettings):
    """Speech: the operating point picked on the data set's validation recording and
    written into the card before quantization (so every INT8 model carries it), then the
    test recording scored with it."""

    calibrate_on: str = setting("val", "The recording of DATA/_streams_ the operating point is picked on.")
    evaluate_on: str | None = setting("test", "The recording of DATA/_streams_ scored with it.")
    target_fa_per_hour: float | None = setting(1.0, "False accepts per hour the operating point may allow.", above=0)


@dataclasses.dataclass(frozen=True)
class Recipe(Settings):
    name: str = setting("recipe", "What the pipeline makes.")
    description: str = setting("", "One line for people.")
    threads: int | None = setting(None, "CPU threads for every stage that computes, where its section does not "
                                  "set its own (default: each stage's).", min=1)
    data: DataSource | None = setting(None, "The labelled data set.")
    target: TargetData | None = setting(None, "Unlabelled data from the device (domain adaptation).")
    finetune: FinetuneSettings = setting(FinetuneSettings(), "Fine-tuning.")
    import_: ImportStage | None = setting(None, "A model trained elsewhere, instead of finetune and export.",
                                          key="import")
    evaluate: EvaluateSettings | None = setting(None, "Accuracy of the run on a split.")
    export: ExportSettings = setting(ExportSettings(), "ONNX (and OpenVINO IR).")
    streaming: StreamingStage | None = setting(None, "Speech: the streaming operating point.")
    quantize: QuantizeStage = setting(QuantizeStage(), "INT8 models.")
    bench: BenchSettings | None = setting(None, "Every artifact on its backend.")
    package: PackageSettings | None = setting(None, "The deployment bundle.")

    def check(self, where: str | None = None) -> Recipe:
        """As Settings.check; with a target section, fine-tuning is checked as it will run,
        its target data given by the target stage."""
        if self.target is not None and (self.finetune.target_data or self.finetune.target_val):
            raise ConfigError("finetune.target_data: the recipe's target section gives it",
                              hint="drop finetune.target_data and finetune.target_val")
        as_run = self if self.target is None else dataclasses.replace(
            self, finetune=self.finetune.replace(target_data=TARGET_TRAIN))
        Settings.check(as_run, where)
        return self

    def threaded(self) -> Recipe:
        """The recipe with its top-level `threads` in every section that computes and sets
        none of its own (quantize's targets each)."""
        if self.threads is None:
            return self

        def spread(value):
            if isinstance(value, tuple):
                return tuple(spread(v) for v in value)
            if isinstance(value, Settings) and "threads" in {f.name for f in dataclasses.fields(value)} \
                    and value.threads is None:  # type: ignore[attr-defined]
                return value.replace(threads=self.threads)
            if isinstance(value, QuantizeStage):
                return value.replace(targets=spread(value.targets))
            return value

        return dataclasses.replace(self, **{f.name: spread(getattr(self, f.name)) for f in dataclasses.fields(self)
                                            if f.name != "threads"})

    def validate(self) -> None:
        if self.data is None:
            raise ConfigError("data: a recipe needs its data set", hint="e.g. data: {digits: {size: 64}}")
        if self.import_ is not None:
            if self.finetune != FinetuneSettings() or self.target is not None or self.export != ExportSettings() \
                    or self.streaming is not None:
                raise ConfigError("import: a recipe imports a model or fine-tunes one, not both",
                                  hint="drop the finetune, target, export and streaming sections, or the import one")
            return
        if not self.finetune.backbone:
            raise ConfigError("finetune.backbone: a recipe names its backbone", hint="e.g. efficientnet_lite0")
        if self.target is not None and not self.finetune.adapt:
            raise ConfigError("target: target data is for domain adaptation", hint="add finetune.adapt: auto")
        if self.finetune.adapt and self.target is None and not self.finetune.target_data:
            raise ConfigError("target: finetune.adapt needs target data", hint="add target: {folder: DIR}")
        if self.streaming is not None and self.data.keywords is not None and not self.data.keywords.stream_minutes:
            raise ConfigError("data.keywords.stream_minutes: streaming needs the data set's recordings",
                              hint="e.g. stream_minutes: 10")
        if self.package is not None and not self.export.openvino and "openvino" in self.package.targets:
            raise ConfigError("package.targets: an openvino model needs export.openvino: true",
                              hint="add openvino: true to export")


def load_recipe(path, overrides: list[str] = ()) -> Recipe:
    """The recipe at `path` with `overrides` ("key.path=value") applied, validated whole."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist", hint="pass a recipe YAML file, e.g. models/digits-lite0.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})",
                          hint="save the recipe as UTF-8 (a YAML file of the stage settings)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", hint="check the recipe's path and permissions") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())[:300]}",
                          hint="check the indentation and the quoting around the line named") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} holds no mapping of stages", hint="see docs/recipes.md")
    for override in overrides:
        set_key(doc, override)
    # every relative path in it names a file or folder beside the recipe (docs/recipes.md)
    return Recipe.from_dict(doc, where="").anchored(path.resolve().parent).threaded()


_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")


def set_key(doc: dict, override: str) -> None:
    """Apply one `key.path[i].field=value` to the recipe's plain data (value read as YAML)."""
    import yaml

    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set takes KEY=VALUE, got {shown(override)}",
                          hint="e.g. --set quantize.targets[0].max_drop=0.02")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key.strip()}: the value is not plain YAML ({' '.join(str(exc).split())[:200]})",
                          hint="quote text, e.g. --set name='\"my model\"'; tags such as !!python are not read") from None
    steps = key.strip().split(".")
    node = doc
    for i, step in enumerate(steps):
        m = _STEP.fullmatch(step)
        if not m:
            raise ConfigError(f"--set: {key} is not a key path", hint="e.g. finetune.epochs or quantize.targets[0].target")
        name, index = m.group(1), m.group(2)
        last = i == len(steps) - 1
        if index is None:
            if last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
        else:
            items = node.get(name)
            if not isinstance(items, list) or int(index) >= len(items):
                raise ConfigError(f"--set: {'.'.join(steps[:i + 1])} is not in the recipe",
                                  hint=f"the recipe's {name} has {len(items) if isinstance(items, list) else 0} entries")
            if last:
                items[int(index)] = value
            else:
                node = items[int(index)]
        if not isinstance(node, dict):
            raise ConfigError(f"--set: {'.'.join(steps[:i + 1])} holds a value, not settings", hint="set a key below it")
