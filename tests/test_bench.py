"""The benchmark harness: timing statistics, the artifact x backend x batch matrix,
failed cells, references, exit codes and the report files."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import bf16_possible
from onnx import numpy_helper
from PIL import Image

from edgetl.bench.latency import LatencyStats, measure
from edgetl.cli import cli
from edgetl.evaluate.accuracy import evaluate
from edgetl.quantize import quantize


def test_percentiles_on_known_timings():
    rng = np.random.default_rng(0)
    timings_ms = rng.permutation(np.arange(1, 102))  # 1..101 ms, shuffled
    stats = LatencyStats.from_ns(timings_ms * 1_000_000, batch=4)
    # Order statistics of 1..101: the k-th percentile is 1 + k (linear interpolation).
    assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == pytest.approx((51.0, 91.0, 100.0))
    assert stats.mean_ms == pytest.approx(51.0)
    assert stats.std_ms == pytest.approx(np.sqrt((101**2 - 1) / 12))  # population std of 1..n
    assert stats.throughput == pytest.approx(4 * 1000 / 51.0)
    assert stats.iters == 101


class _CountingRunner:
    def __init__(self, seconds: float = 0.0):
        self.calls, self.seconds = 0, seconds

    def checked_input(self, x):  # as a Runner does before the timed calls (not counted)
        return x

    def infer(self, x):
        self.calls += 1
        if self.seconds:
            import time

            time.sleep(self.seconds)
        return x


def test_measure_excludes_warmup_and_honours_min_time():
    runner = _CountingRunner()
    stats = measure(runner, np.zeros((2, 3), np.float32), warmup=3, iters=5)
    assert runner.calls == 8 and stats.iters == 5 and stats.batch == 2
    slow = _CountingRunner(seconds=0.002)
    stats = measure(slow, np.zeros((1, 3), np.float32), warmup=0, iters=2, min_time_s=0.1)
    assert stats.iters >= 20 and stats.p50_ms >= 2.0


def test_a_backend_that_answers_with_nothing_is_an_error_not_a_figure():
    """OpenVINO in bf16 with oneDNN capped at AVX2 and one thread returns empty results
    without raising: infer_all must refuse them, whatever the backend."""
    from edgetl.core.card import ModelCard
    from edgetl.core.errors import ArtifactError
    from edgetl.runtime.runner import Runner

    class Empty(Runner):
        backend = "empty"

        def compute(self, batch):
            return np.zeros((0, 2), np.float32)

    card = ModelCard(labels=["a", "b"], modality="image", input={"shape": [None, 3, 4, 4]}, preprocessing={})
    with pytest.raises(ArtifactError, match="0 results for a batch of 4"):
        Empty("m.xml", card).infer_all(np.zeros((5, 3, 4, 4), np.float32), 4)


@pytest.fixture(scope="module")
def bench_run(quant_onnx, tmp_path_factory):
    """A copy of the quantization run with its FP32 ONNX, an ONNX Runtime INT8 model, an
    engine (TensorRT is absent here, so its cell must fail) and a tampered FP32 ONNX
    outside the run folder that still belongs to the run."""
    run = tmp_path_factory.mktemp("bench") / "run"
    shutil.copytree(quant_onnx.parent, run)
    quantize(run / "model.onnx", "onnxruntime", max_drop=0.05, out=run / "model.int8.onnx")
    (run / "model.engine").write_bytes(b"not an engine")
    proto = onnx.load(str(run / "model.onnx"))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)) if len(t.dims) == 2 else 0)
    weights = numpy_helper.to_array(init).copy()
    weights[0] += 1.0  # one class's head weights changed: that class wins too often
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(proto, str(run.parent / "tampered.onnx"))
    return run


@pytest.fixture(scope="module")
def report(bench_run):
    from edgetl import bench

    return bench([bench_run], batches=(1, 3), iters=5, warmup=1, threads=1, rounds=2)


def test_a_run_directory_expands_to_a_matrix_with_a_failed_cell(report, bench_run):
    cells = {(r.name, r.backend, r.batch) for r in report.rows}
    assert cells == {(n, b, batch) for n, b in [("run (model.pt)", "torch"), ("model.onnx", "onnxruntime"),
                                                ("model.int8.onnx", "onnxruntime"), ("model.engine", "tensorrt")]
                     for batch in (1, 3)}
    failed = {(r.name, r.batch) for r in report.failed}
    assert failed == {("model.engine", 1), ("model.engine", 3)}
    assert all("tensorrt" in r.error for r in report.failed)


def test_rows_are_measured_against_the_runs_fp32_reference(report, bench_run, quant_digits):
    rows = {(r.name, r.batch): r for r in report.rows}
    torch_row, onnx_row, int8_row = rows["run (model.pt)", 1], rows["model.onnx", 1], rows["model.int8.onnx", 1]
    assert torch_row.reference == "run (model.pt) (torch)" and torch_row.drop == 0 and torch_row.agreement == 1
    assert onnx_row.agreement == 1.0 and onnx_row.drop == 0  # FP32 export computes what torch computes
    assert int8_row.accuracy == pytest.approx(evaluate(bench_run / "model.int8.onnx", quant_digits).accuracy)
    assert int8_row.drop == pytest.approx(torch_row.accuracy - int8_row.accuracy)
    assert int8_row.n == torch_row.n == 80 and 0.5 < int8_row.agreement <= 1


def test_an_int8_row_slower_than_its_fp32_model_says_so_with_its_float_layers(report):
    """The real rows of one run, with the INT8 model's latency set against its FP32 one: 10%
    slower is noise, more is named below the table with what it keeps in float."""
    import copy

    from edgetl.bench.harness import SLOWER, note_slower_int8

    int8 = next(r for r in report.rows if r.name == "model.int8.onnx" and r.batch == 1)
    fp32 = next(r for r in report.rows if r.name == "model.onnx" and r.batch == 1)
    assert int8.run == fp32.run and int8.float_layers is not None  # read from its card
    for factor, named in ((SLOWER * 0.99, False), (SLOWER * 1.5, True), (0.5, False)):
        rows = [copy.copy(fp32), copy.copy(int8)]
        rows[1].p50_ms, rows[1].note = factor * fp32.p50_ms, ""
        note_slower_int8(rows)
        assert ("INT8 slower than FP32" in rows[1].note) == named, (factor, rows[1].note)
        assert not rows[0].note
    rows = [copy.copy(fp32), copy.copy(int8)]
    rows[1].p50_ms, rows[1].note, rows[1].float_layers = 3 * fp32.p50_ms, "", 52
    rows[1].threads = 2  # measured with another thread count: not compared
    note_slower_int8(rows)
    assert not rows[1].note
    rows[1].threads = fp32.threads
    note_slower_int8(rows)
    assert "52 layers kept in float" in rows[1].note


def test_latency_size_and_memory_fields(report, bench_run):
    for r in (r for r in report.rows if r.ok):
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms
        assert r.throughput == pytest.approx(r.batch * 1000 / r.mean_ms)
        assert r.iters == 10 and r.threads == 1 and r.load_s > 0  # 5 calls in each of 2 rounds, pooled
        assert r.peak_rss_mb >= r.rss_before_mb > 0
    row = next(r for r in report.rows if r.name == "model.int8.onnx")
    assert row.size_mb * 2**20 == (bench_run / "model.int8.onnx").stat().st_size
    assert row.size_mb < 0.5 * next(r for r in report.rows if r.name == "model.onnx").size_mb


def test_report_files(report, tmp_path):
    data = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert data["schema"] == "edgetl.bench/1"
    assert {"cpu", "cpu_flags", "cores", "memory_gib", "gpus"} <= set(data["machine"])
    assert {"python", "edgetl", "numpy", "onnxruntime"} <= set(data["versions"])
    assert {"threads", "batches", "iters", "warmup", "split"} <= set(data["settings"])
    for row in data["rows"]:
        assert {"artifact", "backend", "device", "precision", "batch", "accuracy", "drop", "agreement", "p50_ms",
                "p90_ms", "p99_ms", "mean_ms", "std_ms", "throughput", "size_mb", "peak_rss_mb", "load_s",
                "status", "error"} <= set(row)
    with open(report.write_csv(tmp_path / "r.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(report.rows) and rows[0]["p99_ms"]
    png = report.plot(tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as img:
        assert img.width > 400 and img.height > 300
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_max_drop_exit_codes(bench_run, tmp_path):
    args = ["bench", str(bench_run / "model.onnx"), str(bench_run.parent / "tampered.onnx"), "--iters", "3",
            "--warmup", "0", "--threads", "1", "--json-file", str(tmp_path / "r.json")]
    result = CliRunner().invoke(cli, ["-q", *args, "--max-drop", "0.0"])
    rows = {r["artifact"].split("/")[-1]: r for r in json.loads((tmp_path / "r.json").read_text())["rows"]}
    assert rows["tampered.onnx"]["drop"] > 0, "the tampered model must lose accuracy for this test to mean anything"
    assert result.exit_code == 1, result.output
    assert "tampered.onnx" in result.output and "model.onnx on" not in result.output.split("above")[-1]
    result = CliRunner().invoke(cli, ["-q", *args, "--max-drop", str(rows["tampered.onnx"]["drop"] + 0.01)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, message", [
    (["nowhere.onnx"], "does not exist"),
    (["{run}", "--batch-sizes", "0"], "positive"),
    (["{run}", "--batch-sizes", "a,b"], "comma-separated"),
    (["{run}", "--backend", "tflite"], "unknown backend"),
    (["{run}", "--data", "no/such/dir"], "does not exist"),
    (["{run}/model.engine"], "every benchmark cell failed"),
])
def test_cli_usage_errors_exit_2_with_one_line(bench_run, args, message, tmp_path):
    args = [a.replace("{run}", str(bench_run)) for a in args]
    result = CliRunner().invoke(cli, ["-q", "bench", *args, "--iters", "1", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.png").exists()


def test_precision_hints_add_openvino_rows_judged_against_the_f32_reference(bench_run, tmp_path):
    from edgetl import bench
    from edgetl.export.openvino_ir import export_openvino
    from edgetl.runtime.artifacts import read_onnx_card

    xml = tmp_path / "model.xml"
    export_openvino(bench_run / "model.onnx", xml, read_onnx_card(bench_run / "model.onnx"))
    report = bench([bench_run / "model.onnx", xml], precision_hints=["bf16"], iters=3, warmup=1, threads=1)
    rows = {(r.name, r.precision_hint): r for r in report.rows}
    assert set(rows) == {("model.onnx", "f32"), ("model.xml", "f32"), ("model.xml", "bf16")}
    assert {r.inference_precision for k, r in rows.items() if k[1] == "f32"} == {"f32"}
    f32, bf16 = rows["model.xml", "f32"], rows["model.xml", "bf16"]
    assert f32.reference == "model.onnx (onnxruntime)" and f32.agreement == 1.0
    if bf16_possible():
        assert bf16.reference == "model.onnx (onnxruntime)"  # a bf16 row is judged, never the reference
        assert bf16.ok and bf16.inference_precision == "bf16" and bf16.agreement is not None
        assert bf16.drop == pytest.approx(rows["model.onnx", "f32"].accuracy - bf16.accuracy)
    else:
        assert not bf16.ok and "bf16" in bf16.error
    assert report.settings["precision_hints"] == ["f32", "bf16"]
    assert "| bf16 |" in report.markdown() or not bf16.ok


def test_a_baseline_holds_against_itself_and_catches_a_planted_slowdown(report, bench_run, tmp_path):
    import copy

    from edgetl.bench.baseline import compare

    now = report.to_dict()
    same = compare(now, now)
    measured = [r for r in same.rows if r.status != "not compared"]
    assert same.ok and measured and all(r.slowdown == pytest.approx(1.0) for r in measured)
    faster_then = copy.deepcopy(now)  # the baseline ran 30% faster: now is a 1.3x slowdown
    for r in faster_then["rows"]:
        if r["p50_ms"]:
            r["p50_ms"] /= 1.3
    slower = compare(now, faster_then, max_slowdown=1.10)
    assert not slower.ok and {r.status for r in slower.regressions} == {"slower"}
    assert all(r.slowdown == pytest.approx(1.3) for r in slower.regressions)
    # a reference measured in both runs cancels a machine that is slower for everyone
    assert compare(now, faster_then, reference="model.onnx").ok
    # what cannot be compared is named, never matched by guess
    missing = copy.deepcopy(now)
    gone = missing["rows"].pop(0)
    named = compare(now, missing)
    assert any(r.why == "not in the baseline" and Path(gone["artifact"]).name in r.key for r in named.not_compared)
    other_cpu = copy.deepcopy(now)
    other_cpu["machine"]["cpu_flags"] = ["avx2"] if "avx512f" in now["machine"]["cpu_flags"] else ["avx2", "avx512f"]
    assert all(r.status == "not compared" and "another CPU kind" in r.why for r in compare(now, other_cpu).rows)


def test_cli_baseline_exits_1_on_a_regression_and_0_otherwise(bench_run, tmp_path):
    args = ["-q", "bench", str(bench_run / "model.onnx"), "--iters", "3", "--warmup", "0", "--threads", "1"]
    first = CliRunner().invoke(cli, [*args, "--json-file", str(tmp_path / "old.json")])
    assert first.exit_code == 0, first.output
    doc = json.loads((tmp_path / "old.json").read_text())
    for factor, name, code in ((100.0, "much-slower-then.json", 0), (0.01, "much-faster-then.json", 1)):
        planted = json.loads(json.dumps(doc))
        for r in planted["rows"]:
            r["p50_ms"] = r["p50_ms"] * factor if r["p50_ms"] else r["p50_ms"]
        (tmp_path / name).write_text(json.dumps(planted))
        result = CliRunner().invoke(cli, [*args, "--baseline", str(tmp_path / name)])
        assert result.exit_code == code, result.output
        assert ("regressed against" in result.output) == (code == 1)
    bad = CliRunner().invoke(cli, [*args, "--baseline", str(tmp_path / "nothing.json")])
    assert bad.exit_code == 2 and "cannot read the baseline" in bad.output


@pytest.mark.parametrize("doc, named", [
    ([1, 2], "not an edgetl bench report"),
    ({"schema": "edgetl.bench/1", "rows": {"a": 1}}, "rows is not a list"),
    ({"schema": "edgetl.bench/1", "rows": [{"backend": "onnxruntime", "batch": 1}]}, "rows[0].artifact"),
    ({"schema": "edgetl.bench/1", "rows": [{"artifact": "m.onnx", "backend": "onnxruntime", "batch": 1,
                                             "p50_ms": 0}]}, "rows[0].p50_ms"),
    ({"schema": "edgetl.bench/1", "rows": [{"artifact": "m.onnx", "backend": "onnxruntime", "batch": 1,
                                             "p50_ms": -2.0}]}, "rows[0].p50_ms"),
    ({"schema": "edgetl.bench/1", "rows": [{"artifact": "m.onnx", "backend": "onnxruntime", "batch": 1,
                                             "p50_ms": "fast"}]}, "rows[0].p50_ms"),
    ({"schema": "edgetl.bench/1", "rows": [{"artifact": "m.onnx", "backend": "onnxruntime", "batch": "1"}]},
     "rows[0].batch"),
    ({"schema": "edgetl.bench/1", "rows": [], "machine": "a laptop"}, "machine"),
])
def test_a_malformed_baseline_is_named_before_any_benchmark_runs(doc, named, tmp_path, monkeypatch):
    """A baseline edited by hand or from another tool: one error naming the field, exit 2,
    before the benchmark (which would otherwise run whole and then fail in the comparison)."""
    import json

    import edgetl.bench.harness

    def never(*args, **kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(edgetl.bench.harness, "bench", never)
    baseline = tmp_path / "old.json"
    baseline.write_text(json.dumps(doc))
    result = CliRunner().invoke(cli, ["bench", str(tmp_path), "--baseline", str(baseline)])
    assert result.exit_code == 2 and named in result.output and "Traceback" not in result.output, result.output


# ---------------------------------------------------------------- models edgetl did not make

@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Models exported by hand, never through edgetl: two inputs (one with open height and
    batch), two outputs, and a uint8 image input; an IR converted by OpenVINO itself; the
    same architecture with other weights, to show the comparison can fail."""
    import openvino as ov
    import torch

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 5)

        def forward(self, image, scale):
            x = self.conv(image).mean((2, 3)) * scale
            return self.fc(x), x

    class Bytes(torch.nn.Module):  # takes uint8 pixels, as many deployed models do
        def forward(self, pixels):
            return pixels.float().mean((1, 2, 3), keepdim=True) / 255

    out = tmp_path_factory.mktemp("foreign")
    args = (torch.randn(1, 3, 32, 32), torch.ones(1, 1))
    for name, seed in (("same", 0), ("other", 1)):
        torch.manual_seed(seed)
        model = Two().eval()
        (out / name).mkdir()
        torch.onnx.export(model, args, str(out / name / "two.onnx"), input_names=["image", "scale"],
                          output_names=["logits", "features"], dynamo=False)
    ov.save_model(ov.convert_model(str(out / "same" / "two.onnx")), str(out / "same" / "two.xml"))
    ov.save_model(ov.convert_model(str(out / "other" / "two.onnx")), str(out / "other" / "two.xml"))
    torch.onnx.export(Two().eval(), args, str(out / "open.onnx"), input_names=["image", "scale"],
                      output_names=["logits", "features"], dynamic_axes={"image": {0: "n", 2: "h"}, "scale": {0: "n"}},
                      dynamo=False)
    torch.onnx.export(Bytes(), (torch.zeros(1, 3, 8, 8, dtype=torch.uint8),), str(out / "bytes.onnx"),
                      input_names=["pixels"], dynamo=False)
    return out


def test_a_model_without_a_card_is_timed_and_compared_across_backends(foreign):
    """`edgetl bench m.onnx m.xml` for any model, as trtexec and benchmark_app time one:
    generated inputs from the model's own signature, latency rows, no accuracy, and each
    backend's outputs against ONNX Runtime's on the same inputs."""
    from edgetl.bench.harness import NO_CARD, bench

    report = bench([foreign / "same" / "two.onnx", foreign / "same" / "two.xml", foreign / "other" / "two.xml",
                    foreign / "bytes.onnx"], threads=1, iters=5, warmup=1)
    rows = {(r.artifact.split("/")[-2] + "/" + r.name, r.backend): r for r in report.rows}
    assert all(r.ok and r.p50_ms > 0 and r.accuracy is None and r.note == NO_CARD for r in report.rows), report.rows
    assert rows["same/two.onnx", "onnxruntime"].output_diff == 0.0
    assert rows["same/two.xml", "openvino"].output_diff < 1e-3  # the same model, another backend
    assert rows["other/two.xml", "openvino"].output_diff > 1e-2  # other weights: the comparison says so
    assert any(name.endswith("/bytes.onnx") for name, _ in rows)  # uint8 input, generated as uint8 (and ok above)


def test_an_open_dimension_is_named_and_given_with_shape(foreign):
    from edgetl.bench.harness import bench

    open_model = foreign / "open.onnx"
    row = bench([open_model], threads=1, iters=3, warmup=0).rows[0]
    assert not row.ok and "input image" in row.error and "dimension 2 open" in row.error and "--shape image:" in row.error
    rows = bench([open_model], threads=1, iters=3, warmup=0, shapes=("image:4x3x40x32", "scale:4x1"), rounds=2).rows
    assert [(r.ok, r.batch, r.iters) for r in rows] == [(True, 4, 6)]  # a second round pools its timings
    result = CliRunner().invoke(cli, ["bench", str(open_model), "--shape", "image:1x3", "--threads", "1"])
    assert result.exit_code == 2 and "does not fit the model's ?x3x?x32" in result.output


def test_an_int8_drop_beyond_its_bound_is_told_from_noise():
    """The bound an INT8 model was quantized within, checked on the bench split: a drop
    above it whose whole 95% interval is above it is beyond it for certain; one whose
    interval still holds the bound is within what those samples can tell."""
    from edgetl.bench.report import BenchReport, BenchRow
    from edgetl.core.metrics import drop_interval

    def row(drop, disagreement, n):
        return BenchRow("m.int8.onnx", "m.int8.onnx", "onnxruntime", "cpu", 1, precision="int8", metric="accuracy",
                        drop=drop, bound=0.01, n=n, drop_ci95=list(drop_interval(drop, disagreement, n)))

    clearly, noisy, held = row(0.05, 0.06, 2000), row(0.0134, 0.03, 372), row(0.005, 0.02, 372)
    certain, within_noise = BenchReport([clearly, noisy, held], {}, {}, {}).beyond_bounds()
    assert certain == [clearly] and within_noise == [noisy]
    low, high = drop_interval(0.0, 0.0, 341)  # no answer changed on 341 samples: still +-1.1 points
    assert low == pytest.approx(-high) and 0.010 < high < 0.012
    assert drop_interval(0.0, 0.0, 3410)[1] < high / 5  # ten times the samples: a tighter interval


def test_an_emulated_models_latency_is_marked_where_it_is_shown():
    """TensorRT's QDQ model timed in ONNX Runtime is no TensorRT latency: its p50 carries a
    mark in the table, the note under it says why; a real CPU row carries none."""
    from edgetl.bench.harness import _note
    from edgetl.bench.report import BenchReport, BenchRow
    from edgetl.core.card import ModelCard

    qdq = ModelCard(labels=["a", "b"], modality="image", input={}, preprocessing={},
                    source={"quantization": {"target": "tensorrt"}})
    rows = [BenchRow("m.qdq.onnx", "m.qdq.onnx", "onnxruntime", "cpu", 1, note=_note(qdq, "onnxruntime"),
                     p50_ms=83.0, p90_ms=90.0, p99_ms=95.0, mean_ms=84.0, std_ms=2.0, throughput=12.0),
            BenchRow("m.onnx", "m.onnx", "onnxruntime", "cpu", 1, p50_ms=21.0, p90_ms=22.0, p99_ms=23.0,
                     mean_ms=21.0, std_ms=0.5, throughput=47.0)]
    table = BenchReport(rows, {}, {}, {}).markdown().splitlines()
    assert "| 83.000* |" in table[2] and "| 21.000 |" in table[3] and "*" not in table[3]
    assert "latency not representative" in rows[0].note
