"""`edgetl import`: models trained elsewhere, made here with plain torch.onnx.export and
openvino.convert_model (never edgetl's exporter), get a card and then every command:
evaluate (equal to a reference computed here with ONNX Runtime and the model's own
preprocessing), quantize within the bound, package, verify on a torch-free device."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_refused, write_digit_folder
from PIL import Image

from edgetl.cli import cli

LABELS = "zero,one,two,three"
MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.3, 0.2)  # not ImageNet's: a default would not pass by luck


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """4 classes of real digits, named as the labels (32 px, 80 train and 30 val each)."""
    root = write_digit_folder(tmp_path_factory.mktemp("imp") / "digits", classes=(0, 1, 2, 3),
                              per_split=(("train", 80), ("val", 30)))
    for digit, name in enumerate(LABELS.split(",")):
        for split in ("train", "val"):
            (root / split / str(digit)).rename(root / split / name)
    return root


def _pixels(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every image of the class folders as uint8 RGB HWC and its class index: the test's
    own reading, independent of edgetl's."""
    xs, ys = [], []
    for y, name in enumerate(LABELS.split(",")):
        for f in sorted((folder / name).iterdir()):
            xs.append(np.asarray(Image.open(f).convert("RGB")))
            ys.append(y)
    return np.stack(xs), np.asarray(ys)


@pytest.fixture(scope="module")
def trained(digits):
    """A small CNN trained here by hand, the way a user's notebook would, on NCHW floats
    normalised with MEAN and STD."""
    import torch

    torch.manual_seed(0)
    x, y = _pixels(digits / "train")
    inputs = (torch.from_numpy(x).float().permute(0, 3, 1, 2) / 255 - torch.tensor(MEAN)[:, None, None]) \
        / torch.tensor(STD)[:, None, None]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(128, 4))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    targets = torch.from_numpy(y)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        opt.step()
    return model.eval()


def _nhwc_uint8(model):
    """The same classifier as a deployment might wrap it: uint8 NHWC pixels in (its
    normalisation inside the graph), probabilities and logits out."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor(MEAN)[:, None, None])
            self.register_buffer("std", torch.tensor(STD)[:, None, None])

        def forward(self, pixels):
            x = (pixels.permute(0, 3, 1, 2).float() / 255 - self.mean) / self.std
            logits = self.model(x)
            return torch.softmax(logits, 1), logits

    return Wrapped().eval()


@pytest.fixture(scope="module")
def foreign(trained, tmp_path_factory):
    """The trained model exported by hand: NCHW float with a dynamic batch; NHWC uint8 with
    a static batch of 1, a softmax output and a logits output; an OpenVINO IR converted
    from the first by openvino.convert_model; TorchScript."""
    import openvino as ov
    import torch

    root = tmp_path_factory.mktemp("foreign")
    torch.onnx.export(trained, (torch.randn(2, 3, 32, 32),), str(root / "nchw.onnx"), input_names=["images"],
                      output_names=["scores"], dynamic_axes={"images": {0: "n"}, "scores": {0: "n"}}, dynamo=False)
    torch.onnx.export(_nhwc_uint8(trained), (torch.zeros(1, 32, 32, 3, dtype=torch.uint8),), str(root / "nhwc.onnx"),
                      input_names=["pixels"], output_names=["probs", "logits"], dynamo=False)
    ov.save_model(ov.convert_model(str(root / "nchw.onnx")), str(root / "nchw.xml"))
    torch.jit.script(trained).save(str(root / "nchw.pt"))
    return root


def _reference_accuracy(onnx_path: Path, folder: Path, nhwc_uint8: bool) -> float:
    """Accuracy computed here: ONNX Runtime on the original file, preprocessed by hand."""
    import onnxruntime as ort

    x, y = _pixels(folder)
    if not nhwc_uint8:
        x = ((x.astype(np.float32) / 255 - np.float32(MEAN)) / np.float32(STD)).transpose(0, 3, 1, 2)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    scores = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return float((scores.argmax(1) == y).mean())


def _import(source: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["import", str(source), "--out", str(out), "--labels", LABELS,
                                    "--resize", "stretch", "--threads", "1", *extra])


NORMALISED = ("--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)))


@pytest.fixture(scope="module")
def imported(foreign, digits, tmp_path_factory):
    """Each foreign model imported with the data set it is scored on."""
    root = tmp_path_factory.mktemp("imported")
    out = {}
    for name, extra in (("nchw", NORMALISED), ("nhwc", ("--output", "probs"))):
        result = _import(foreign / f"{name}.onnx", root / name, "--data", str(digits), *extra)
        assert result.exit_code == 0, result.output
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", ["nchw", "nhwc"])
def test_an_imported_model_evaluates_as_its_own_preprocessing_and_onnxruntime_do(name, imported, foreign, digits):
    expected = _reference_accuracy(foreign / f"{name}.onnx", digits / "val", nhwc_uint8=name == "nhwc")
    assert expected > 0.6  # a model that learned something: agreement by chance would be 0.25
    for artifact in (imported[name], imported[name] / "model.onnx", imported[name] / "model.xml"):
        result = CliRunner().invoke(cli, ["evaluate", str(artifact), "--data", str(digits), "--json", "--threads", "1"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["accuracy"] == expected, artifact


def test_the_card_records_what_the_graph_says_and_what_was_given(imported):
    nchw = json.loads((imported["nchw"] / "edgetl.json").read_text())
    assert nchw["input"] == {"name": "images", "shape": [None, 3, 32, 32], "dtype": "float32", "layout": "NCHW"}
    assert nchw["preprocessing"]["mean"] == pytest.approx(MEAN) and nchw["preprocessing"]["crop"] == "stretch"
    assert nchw["labels"] == LABELS.split(",") and nchw["source"]["imported"]["softmax_removed"] is False
    assert nchw["source"]["imported"]["slimmed"] is True  # simplified as edgetl's own exports, then compared
    nhwc = json.loads((imported["nhwc"] / "edgetl.json").read_text())
    assert nhwc["input"] == {"name": "pixels", "shape": [1, 32, 32, 3], "dtype": "uint8", "layout": "NHWC"}
    # the softmax output chosen, its softmax taken out: predict's probabilities are not softmaxed twice
    assert nhwc["source"]["imported"] == {**nhwc["source"]["imported"], "output": "probs", "softmax_removed": True}
    assert nhwc["metrics"]["val_accuracy"] == nchw["metrics"]["val_accuracy"]


def test_predict_on_an_imported_softmax_model_shows_the_models_own_probabilities(imported, foreign, digits):
    import onnxruntime as ort

    image = sorted((digits / "val" / "two").iterdir())[0]
    result = CliRunner().invoke(cli, ["predict", str(imported["nhwc"]), str(image), "--json", "--top-k", "4"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)[0]
    session = ort.InferenceSession(str(foreign / "nhwc.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(["probs"], {"pixels": np.asarray(Image.open(image).convert("RGB"))[None]})[0][0]
    best = int(probs.argmax())
    assert answer["labels"][0] == LABELS.split(",")[best]
    assert answer["scores"][0] == pytest.approx(float(probs[best]), abs=1e-5)


def test_an_ir_and_a_torchscript_model_import_too(foreign, digits, tmp_path):
    expected = _reference_accuracy(foreign / "nchw.onnx", digits / "val", nhwc_uint8=False)
    ir = _import(foreign / "nchw.xml", tmp_path / "ir", "--data", str(digits), *NORMALISED)
    assert ir.exit_code == 0, ir.output
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["edgetl.json", "model.bin", "model.xml"]
    script = _import(foreign / "nchw.pt", tmp_path / "ts", "--input-size", "32", "--data", str(digits), *NORMALISED)
    assert script.exit_code == 0, script.output
    for folder in ("ir", "ts"):
        card = json.loads((tmp_path / folder / "edgetl.json").read_text())
        assert card["metrics"]["val_accuracy"] == expected, folder
        assert card["metrics"]["parity"]["passed"] and card["metrics"]["parity"]["max_abs"] < 1e-4
    # an IR has no ONNX model: NNCF quantizes the IR itself, within the bound
    result = CliRunner().invoke(cli, ["-q", "quantize", str(tmp_path / "ir" / "model.xml"), "--target", "openvino",
                                      "--max-drop", "0.02", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "Statistics collection" not in result.output and "━" not in result.output  # NNCF's bars follow -q
    from edgetl.runtime.artifacts import read_card

    assert read_card(tmp_path / "ir" / "model.int8.xml").metrics["accuracy_drop"] <= 0.02 + 1e-9
    refused = CliRunner().invoke(cli, ["quantize", str(tmp_path / "ir" / "model.xml"), "--target", "onnxruntime"])
    assert_refused(refused, "ONNX model")


def test_the_python_api_imports_an_nn_module(trained, digits, tmp_path):
    import edgetl

    result = edgetl.import_model(trained, tmp_path / "m", labels=LABELS, input_size="32", mean="0.5,0.45,0.4",
                                 std="0.25,0.3,0.2", resize="stretch", data=str(digits), threads=1)
    assert result.card.source["imported"]["format"] == "nn.Module"
    assert result.accuracy == edgetl.evaluate(tmp_path / "m", digits, threads=1).accuracy > 0.6


@pytest.mark.parametrize("name", ["nchw", "nhwc"])
def test_an_imported_model_quantizes_within_the_bound_packages_and_verifies(name, imported, tmp_path):
    import shutil

    folder = tmp_path / name
    shutil.copytree(imported[name], folder)
    for target in ("openvino", "onnxruntime"):
        result = CliRunner().invoke(cli, ["-q", "quantize", str(folder / "model.onnx"), "--target", target,
                                          "--max-drop", "0.02", "--threads", "1"])
        assert result.exit_code == 0, result.output
        int8 = folder / f"model.int8.{'xml' if target == 'openvino' else 'onnx'}"
        card = json.loads((folder / "edgetl.json").read_text())
        from edgetl.runtime.artifacts import read_card

        int8_card = read_card(int8)
        assert int8_card.precision == "int8" and int8_card.metrics["accuracy_drop"] <= 0.02 + 1e-9
        assert int8_card.metrics["fp32_accuracy"] == card["metrics"]["val_accuracy"]
    bundle = tmp_path / "bundle"
    packaged = CliRunner().invoke(cli, ["-q", "package", str(folder), "--targets", "openvino,onnxruntime", "--out",
                                        str(bundle), "--threads", "1"])
    assert packaged.exit_code == 0, packaged.output
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert {t: e["precision"] for t, e in manifest["targets"].items()} == {"openvino": "int8", "onnxruntime": "int8"}
    venv = Path(__file__).resolve().parents[1] / ".venv-device"
    if not (venv / ".installed").is_file():
        pytest.skip("no base-install environment: `make device-venv` makes it (make test does)")
    checked = subprocess.run([venv / "bin" / "edgetl", "verify", str(bundle), "--json"], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checks = {c["target"]: c for c in json.loads(checked.stdout)}
    assert checks["onnxruntime"]["passed"] and checks["onnxruntime"]["n"] > 0


def test_bench_of_an_imported_folder_times_its_models_with_their_accuracy(imported, digits, tmp_path):
    result = CliRunner().invoke(cli, ["-q", "bench", str(imported["nchw"]), "--json-file", str(tmp_path / "b.json"),
                                      "--iters", "5", "--warmup", "1", "--threads", "1", "--batch-sizes", "1"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert sorted(Path(r["artifact"]).name for r in rows) == ["model.onnx", "model.xml"]  # no checkpoint to time
    assert all(r["accuracy"] == rows[0]["accuracy"] > 0.6 for r in rows)


def test_what_cannot_be_read_is_asked_for_by_name(foreign, tmp_path):
    asks = {
        (): ("--labels",),
        ("--labels", "a,b,c"): ("4 class scores", "3 labels"),
        ("--labels", LABELS): ("normalisation", "--mean"),
    }
    for args, words in asks.items():
        result = CliRunner().invoke(cli, ["import", str(foreign / "nchw.onnx"), "--out", str(tmp_path / "x"), *args])
        assert_refused(result, *words)
    assert_refused(_import(foreign / "nhwc.onnx", tmp_path / "x"), "2 outputs", "--output")
    assert_refused(_import(foreign / "nhwc.onnx", tmp_path / "x", "--output", "probs", *NORMALISED),
                   "uint8", "--mean")
    assert_refused(_import(foreign / "nhwc.onnx", tmp_path / "x", "--output", "probs", "--layout", "nchw"),
                   "takes NHWC", "--layout nhwc")
    assert_refused(_import(foreign / "nchw.pt", tmp_path / "x", *NORMALISED), "input size", "--input-size")
    assert_refused(_import(foreign / "nchw.onnx", tmp_path / "x", "--input-size", "64", *NORMALISED),
                   "takes 32x32")
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_files_users_bring_get_one_clear_line(foreign, trained, tmp_path):
    import onnx
    import torch

    # no batch dimension
    class Unbatched(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = trained

        def forward(self, x):
            return self.model(x[None])[0]
    torch.onnx.export(Unbatched().eval(), (torch.randn(3, 32, 32),), str(tmp_path / "nobatch.onnx"), dynamo=False)
    assert_refused(_import(tmp_path / "nobatch.onnx", tmp_path / "x", *NORMALISED), "no batch dimension")
    # weights in external data: beside the model it imports, without it the file is named
    model = onnx.load(str(foreign / "nchw.onnx"))
    (tmp_path / "ext").mkdir()
    onnx.save(model, str(tmp_path / "ext" / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.weights", size_threshold=0)
    assert _import(tmp_path / "ext" / "m.onnx", tmp_path / "withdata", *NORMALISED).exit_code == 0
    (tmp_path / "ext" / "m.weights").unlink()
    assert_refused(_import(tmp_path / "ext" / "m.onnx", tmp_path / "x", *NORMALISED), "m.weights", "beside")
    # an IR without its .bin
    (tmp_path / "lone.xml").write_bytes((foreign / "nchw.xml").read_bytes())
    assert_refused(_import(tmp_path / "lone.xml", tmp_path / "x", *NORMALISED), ".bin")
    # a state dict saved as .pt
    torch.save(trained.state_dict(), tmp_path / "weights.pt")
    assert_refused(_import(tmp_path / "weights.pt", tmp_path / "x", "--input-size", "32", *NORMALISED),
                   "state dict", "import_model")
    # an opset newer than the installed onnx reads
    newer = onnx.load(str(foreign / "nchw.onnx"))
    newer.opset_import[0].version = onnx.defs.onnx_opset_version() + 1
    onnx.save(newer, str(tmp_path / "newer.onnx"))
    assert_refused(_import(tmp_path / "newer.onnx", tmp_path / "x", *NORMALISED), "opset")
    # not a model at all, and a path that is not there
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    assert_refused(_import(tmp_path / "junk.onnx", tmp_path / "x", *NORMALISED), "cannot read")
    assert_refused(_import(tmp_path / "gone.onnx", tmp_path / "x", *NORMALISED), "does not exist")
    assert not (tmp_path / "x").exists()


def test_a_recipe_imports_instead_of_fine_tuning_and_reuses_the_import(foreign, digits, tmp_path):
    import shutil

    shutil.copy(foreign / "nchw.onnx", tmp_path / "model.onnx")
    (tmp_path / "labels.txt").write_text(LABELS.replace(",", "\n") + "\n")
    (tmp_path / "recipe.yaml").write_text(f"""
name: imported
data: {{folder: {digits}}}
import: {{model: model.onnx, labels: labels.txt, mean: "{','.join(map(str, MEAN))}", std: "{','.join(map(str, STD))}",
          resize: stretch, threads: 1}}
quantize: {{targets: [{{target: onnxruntime, max_drop: 0.02, threads: 1}}]}}
package: {{targets: [openvino, onnxruntime], threads: 1}}
""")
    first = CliRunner().invoke(cli, ["-q", "run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "pipe")])
    assert first.exit_code == 0, first.output
    summary = json.loads((tmp_path / "pipe" / "summary.json").read_text())
    stages = {s["name"]: s for s in summary["stages"]}
    assert list(stages) == ["data", "import", "quantize.onnxruntime", "package"]
    assert stages["import"]["figures"]["val_accuracy"] > 0.6
    bundle = json.loads((tmp_path / "pipe" / "bundle" / "bundle.json").read_text())
    assert bundle["targets"]["onnxruntime"]["precision"] == "int8"
    again = CliRunner().invoke(cli, ["-q", "run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "pipe")])
    assert again.exit_code == 0, again.output
    assert {s["status"] for s in json.loads((tmp_path / "pipe" / "summary.json").read_text())["stages"]} == {"reused"}
    # another labels file is another import, and what follows it runs again
    (tmp_path / "labels.txt").write_text(LABELS.replace(",", "\n").replace("zero", "nought") + "\n")
    renamed = CliRunner().invoke(cli, ["-q", "run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "pipe")])
    assert renamed.exit_code != 0 and "nought" in renamed.output  # the data set's classes do not name it
    both = CliRunner().invoke(cli, ["run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "p2"),
                                    "--set", "finetune.backbone=efficientnet_lite0"])
    assert_refused(both, "imports a model or fine-tunes one")


def test_a_waveform_classifier_imports_with_its_sample_rate(tmp_path):
    """An audio model trained elsewhere (a waveform in, class scores out) gets the audio
    modality's card: predict on a WAV gives what ONNX Runtime gives on its samples."""
    import onnxruntime as ort
    import soundfile as sf
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8000)), torch.nn.Conv1d(1, 8, 80, stride=40),
                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 3)).eval()
    torch.onnx.export(model, (torch.randn(1, 8000),), str(tmp_path / "kws.onnx"), input_names=["wave"],
                      output_names=["scores"], dynamic_axes={"wave": {0: "n"}, "scores": {0: "n"}}, dynamo=False)
    refused = CliRunner().invoke(cli, ["import", str(tmp_path / "kws.onnx"), "--out", str(tmp_path / "k"),
                                       "--labels", "yes,no,stop"])
    assert_refused(refused, "sample rate", "--sample-rate")
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "kws.onnx"), "--out", str(tmp_path / "k"),
                                      "--labels", "yes,no,stop", "--sample-rate", "8000", "--threads", "1"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "k" / "edgetl.json").read_text())
    assert card["modality"] == "audio" and card["preprocessing"]["sample_rate"] == 8000
    t = np.arange(8000) / 8000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)).astype(np.float32)
    sf.write(tmp_path / "clip.wav", wave, 8000, subtype="FLOAT")
    answer = CliRunner().invoke(cli, ["predict", str(tmp_path / "k"), str(tmp_path / "clip.wav"), "--json",
                                      "--top-k", "3"])
    assert answer.exit_code == 0, answer.output
    scores = ort.InferenceSession(str(tmp_path / "kws.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"wave": wave[None]})[0][0]
    probs = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    got = json.loads(answer.output)[0]
    assert got["labels"][0] == ["yes", "no", "stop"][int(probs.argmax())]
    assert got["scores"][0] == pytest.approx(float(probs.max()), abs=1e-5)
