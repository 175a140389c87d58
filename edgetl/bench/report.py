"""A benchmark's result: its rows, the machine, library versions and settings, written as
a terminal table, JSON, CSV, Markdown or an accuracy-vs-latency plot."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Any

from edgetl.bench.latency import LatencyStats
from edgetl.core.errors import BackendUnavailable
from edgetl.core.outputs import REPORT_CSV_HEADERS, REPORT_SOFTWARE, write_atomic

SCHEMA = "edgetl.bench/1"


@dataclasses.dataclass
class BenchRow:
    artifact: str
    name: str
    backend: str
    device: str
    batch: int
    threads: int | None = None
    precision: str | None = None  # the artifact's: fp32, fp16, int8
    precision_hint: str = "f32"  # what was asked of the backend
    inference_precision: str | None = None  # what the backend computed float operations in (read back)
    run: str | None = None  # the run the artifact comes from; rows of a run share a reference
    split: str | None = None
    note: str = ""
    error: str | None = None  # set when this cell failed
    task: str | None = None  # what the model predicts (classification, detection, ...)
    metric: str | None = None  # what `accuracy` holds: the task's metric (accuracy, map)
    accuracy: float | None = None  # the task's metric on the split
    n: int | None = None
    reference: str | None = None  # the FP32 row drop and agreement are measured against
    drop: float | None = None  # reference accuracy - accuracy (a fraction; 0.01 = 1 point)
    drop_ci95: list[float] | None = None  # its 95% interval on these samples (accuracy only)
    bound: float | None = None  # an INT8 model's: the --max-drop it was quantized within (on validation samples)
    float_layers: int | None = None  # an INT8 model's: how many layers it keeps in float to hold that bound
    agreement: float | None = None  # top-1 agreement with the reference's predictions
    # a model without a card: the largest difference of its first output from the reference
    # backend's on the same generated inputs, as a fraction of the reference's range
    output_diff: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    iters: int | None = None
    throughput: float | None = None  # items per second
    decode_ms: float | None = None  # p50 of turning a call's outputs into predictions (a detector's decoding and NMS)
    size_mb: float | None = None
    peak_rss_mb: float | None = None
    rss_before_mb: float | None = None
    load_s: float | None = None
    cell_id: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def set_latency(self, stats: LatencyStats) -> None:
        for field in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "iters", "throughput"):
            setattr(self, field, getattr(stats, field))

    @property
    def label(self) -> str:
        return f"{self.name} · {self.backend}{self.precision_suffix} · b{self.batch}"

    @property
    def precision_suffix(self) -> str:
        """' (bf16)' for a row whose backend computed in another precision than f32."""
        shown = self.inference_precision or self.precision_hint
        return f" ({shown})" if shown not in ("f32", "device default") else ""

    def summary(self) -> str:
        if not self.ok:
            return f"batch {self.batch}: FAILED {self.error}"
        measured = f"{self.metric or 'accuracy'} {self.accuracy:.4f} on {self.n}" if self.accuracy is not None else \
            "generated inputs, accuracy not measured"
        decoding = f" + decoding {self.decode_ms:.3f} ms" if self.decode_ms is not None else ""
        return f"batch {self.batch}: p50 {self.p50_ms:.3f} ms{decoding}, {self.throughput:.1f} items/s, {measured}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("cell_id")
        return {**d, "status": "ok" if self.ok else "failed"}


@dataclasses.dataclass
class BenchReport:
    rows: list[BenchRow]
    machine: dict
    versions: dict
    settings: dict
    seconds: float = 0.0
    created: str = dataclasses.field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def failed(self) -> list[BenchRow]:
        return [r for r in self.rows if not r.ok]

    def offenders(self, max_drop: float) -> list[BenchRow]:
        """Rows whose accuracy drop against their run's FP32 reference exceeds max_drop."""
        return [r for r in self.rows if r.drop is not None and r.drop > max_drop + 1e-12]

    def beyond_bounds(self) -> tuple[list[BenchRow], list[BenchRow]]:
        """INT8 rows whose drop on these samples exceeds the bound they were quantized
        within: (beyond it for certain: the whole 95% interval above it; beyond it within
        the uncertainty of these samples)."""
        over = [r for r in self.rows if r.ok and r.bound is not None and r.drop is not None
                and r.drop > r.bound + 1e-12]
        certain = [r for r in over if r.drop_ci95 is not None and r.drop_ci95[0] > r.bound + 1e-12]
        return certain, [r for r in over if r not in certain]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "created": self.created, "seconds": self.seconds, "machine": self.machine,
                "versions": self.versions, "settings": self.settings, "rows": [r.to_dict() for r in self.rows]}

    def write_json(self, path) -> Path:
        return write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def to_csv(self) -> str:
        fields = list(self.rows[0].to_dict()) if self.rows else ["artifact"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.to_dict().items()})
        return buf.getvalue()

    def write_csv(self, path) -> Path:
        return write_atomic(path, self.to_csv())

    def markdown(self) -> str:
        columns = _columns(self.rows)
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cells(r, columns, markup=False)) + " |" for r in self.rows]
        return "\n".join(lines)

    def print_table(self, console=None) -> None:
        from rich import box
        from rich.markup import escape
        from rich.table import Table

        from edgetl.core.progress import print_table, results_console

        m = self.machine
        table = Table(title=f"edgetl bench · {m.get('cpu')} ({', '.join(m.get('cpu_flags') or []) or 'no SIMD flags'}), "
                            f"{self.settings.get('threads')} threads", title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True)
        columns = _columns(self.rows)
        for col in columns:
            text = col in ("artifact", "backend", "precision", "runs in")
            table.add_column(col, justify="left" if text else "right", no_wrap=True)
        for row in self.rows:
            table.add_row(*_cells(row, columns, markup=True))
        console = console or results_console()
        print_table(table, console)
        for note in dict.fromkeys(f"{r.name} on {r.backend}: {r.note}" for r in self.rows if r.note and r.ok):
            console.print(f"[dim]* {escape(note)}[/]")
        for r in self.failed:
            console.print(f"[red]failed[/] {escape(f'{r.name} on {r.backend}{r.precision_suffix}, batch {r.batch}: {r.error}')}")

    def plot(self, path) -> Path:
        """Accuracy against p50 latency, one labelled point per successful row."""
        plt = pyplot()
        rows = [r for r in self.rows if r.ok and r.accuracy is not None]  # a model without a card has no accuracy
        batches = sorted({r.batch for r in rows}) or [1]
        fig, axes = plt.subplots(1, len(batches), figsize=(6.5 * len(batches), 5), squeeze=False, sharey=True)
        markers = {"fp32": "o", "fp16": "s", "int8": "^"}
        colors = {name: f"C{i}" for i, name in enumerate(sorted({r.backend for r in rows}))}
        for ax, batch in zip(axes[0], batches):
            cell = sorted((r for r in rows if r.batch == batch), key=lambda r: (r.accuracy, r.p50_ms))
            for i, r in enumerate(cell):
                ax.scatter(r.p50_ms, 100 * r.accuracy, s=60, marker=markers.get(r.precision or "", "D"),
                           color=colors[r.backend], label=f"{r.backend} {r.precision}")
                ax.annotate(f"{r.name} · {r.backend}{r.precision_suffix}{' *' if r.note else ''}",
                            (r.p50_ms, 100 * r.accuracy), textcoords="offset points",
                            xytext=(6, _label_offset(cell, i)), fontsize=7)
            if cell and max(r.p50_ms for r in cell) > 10 * min(r.p50_ms for r in cell):
                ax.set_xscale("log")
            ax.margins(x=0.3, y=0.15)  # room for the labels right of the points
            if ax.get_xscale() == "linear":
                ax.set_xlim(left=0)
            ax.set(xlabel="p50 latency per call (ms), lower is better", title=f"batch {batch}")
            ax.grid(alpha=0.3)
        handles = {}
        for ax in axes[0]:
            handles.update(zip(*reversed(ax.get_legend_handles_labels())))  # one entry per backend + precision
        if handles:
            axes[0][-1].legend(handles.values(), handles.keys(), fontsize=8, loc="best")
        metric = _metric_title(rows)
        axes[0][0].set_ylabel(f"{metric} on {rows[0].split if rows else 'the split'} (%)")
        fig.suptitle(f"{metric} vs latency · {self.machine.get('cpu')}, {self.settings.get('threads')} threads")
        notes = list(dict.fromkeys(r.note for r in rows if r.note))
        if notes:
            fig.text(0.01, 0.01, "* " + "; ".join(notes), fontsize=7, color="dimgray")
        fig.tight_layout(rect=(0, 0.03 if notes else 0, 1, 1))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": f"{REPORT_SOFTWARE} bench"})
        plt.close(fig)
        return write_atomic(path, buf.getvalue())


# a CSV file that starts with the bench columns is one of edgetl's reports (replaced with --overwrite)
REPORT_CSV_HEADERS.append(",".join(f.name for f in dataclasses.fields(BenchRow)[:3]))


def _label_offset(cell: list[BenchRow], i: int) -> int:
    """Vertical label offset (points) that steps labels of neighbouring, equally accurate
    points apart, so that they do not print over each other."""
    step = 0
    while (i - step - 1 >= 0 and abs(cell[i - step - 1].accuracy - cell[i].accuracy) < 1e-9
           and cell[i].p50_ms < 3 * cell[i - step - 1].p50_ms):
        step += 1
    return 4 - 11 * step


_COLUMNS = ("artifact", "backend", "precision", "runs in", "batch", "accuracy", "drop pt", "agree", "p50 ms", "p90 ms",
            "p99 ms", "mean±std ms", "decode ms", "items/s", "size MB", "peak RSS MB", "load s")
_ACCURACY, _DECODE = _COLUMNS.index("accuracy"), _COLUMNS.index("decode ms")


def _metric_title(rows: list[BenchRow]) -> str:
    """The heading of the metric column: the rows' metric, or both names where tasks mix."""
    from edgetl.task import get

    return "/".join(dict.fromkeys(get(r.task).metric_title if r.task else "accuracy" for r in rows
                                  if r.accuracy is not None)) or "accuracy"


def _columns(rows: list[BenchRow]) -> list[str]:
    """The table's columns: the metric named as the rows' task names it, and the decoding
    time only where some model's predictions take decoding (a detector's NMS)."""
    columns = list(_COLUMNS)
    columns[_ACCURACY] = _metric_title(rows)
    if not any(r.decode_ms is not None for r in rows):
        del columns[_DECODE]
    return columns


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _cells(r: BenchRow, columns: list[str], markup: bool) -> list[str]:
    if markup:  # a file name such as "model[v2].onnx" is text, not a style
        from rich.markup import escape

        r = dataclasses.replace(r, name=escape(r.name))
    if not r.ok:  # the terminal table lists the error under the table, Markdown in the row
        failed = "[red]FAILED[/]" if markup else f"failed: {r.error}"
        return ([r.name, r.backend, r.precision or "-", r.inference_precision or r.precision_hint, str(r.batch), failed]
                + [""] * (len(columns) - 6))
    cells = [r.name, r.backend, r.precision or "-", r.inference_precision or "-", str(r.batch), _fmt(r.accuracy, ".4f"),
             _fmt(None if r.drop is None else 100 * r.drop, ".2f"),
             _fmt(r.agreement, ".1%") if r.output_diff is None else f"Δ{r.output_diff:.1e}",
             _fmt(r.p50_ms, ".3f") + ("*" if r.note else ""), _fmt(r.p90_ms, ".3f"), _fmt(r.p99_ms, ".3f"),
             f"{r.mean_ms:.3f}±{r.std_ms:.3f}",
             _fmt(r.decode_ms, ".3f"), _fmt(r.throughput, ".1f"), _fmt(r.size_mb, ".2f"), _fmt(r.peak_rss_mb, ".0f"),
             _fmt(r.load_s, ".2f")]
    if "decode ms" not in columns:
        del cells[_DECODE]
    return cells


def pyplot() -> Any:  # matplotlib.pyplot, imported on first use
    """matplotlib's pyplot drawing to files (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise BackendUnavailable("--plot needs matplotlib", hint="pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
