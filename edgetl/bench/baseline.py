"""A regression gate for benchmarking scripts: a bench report held against an earlier one.

Each row is matched with the earlier row of the same artifact (by file name), backend,
batch, threads and precision. Latency regressed when the new p50 is more than
`max_slowdown` times the old; accuracy when it fell by more than `max_drop`. With a
`reference` artifact measured in both runs, latency is compared as a ratio to it
(new/new-reference against old/old-reference), which cancels what a busy machine adds
to every row alike. Rows that cannot be compared are named, never matched by guess:
another CPU kind (the AVX2, AVX-512, VNNI, BF16, AMX or NEON flags the reports recorded
differ), a row missing on one side, a failed cell.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgetl.core.errors import ConfigError


@dataclasses.dataclass
class RowComparison:
    key: str  # artifact · backend · precision · batch · threads
    old_p50_ms: float | None
    new_p50_ms: float | None
    slowdown: float | None  # new / old (or of the ratios to the reference)
    old_accuracy: float | None
    new_accuracy: float | None
    status: str  # ok | slower | less accurate | not compared
    why: str = ""


@dataclasses.dataclass
class Comparison:
    rows: list[RowComparison]
    max_slowdown: float
    max_drop: float
    reference: str | None

    @property
    def regressions(self) -> list[RowComparison]:
        return [r for r in self.rows if r.status in ("slower", "less accurate")]

    @property
    def not_compared(self) -> list[RowComparison]:
        return [r for r in self.rows if r.status == "not compared"]

    @property
    def ok(self) -> bool:
        return not self.regressions

    def to_dict(self) -> dict[str, Any]:
        return {"max_slowdown": self.max_slowdown, "max_drop": self.max_drop, "reference": self.reference,
                "ok": self.ok, "rows": [dataclasses.asdict(r) for r in self.rows]}


def _key(row: dict[str, Any]) -> str:
    precision = row.get("inference_precision") or row.get("precision_hint") or "f32"
    return (f"{Path(row['artifact']).name} · {row['backend']} · {row.get('precision') or '?'}/{precision} · "
            f"b{row['batch']} · {row.get('threads')}t")


def _cpu_kind(machine: dict[str, Any]) -> tuple[str, ...]:
    """The instruction-set flags a report recorded (runtime/machine.py records only those that
    change which kernels run: AVX2, AVX-512, VNNI, BF16, AMX, NEON)."""
    return tuple(sorted(machine.get("cpu_flags", [])))


def read_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the baseline {path}: {exc}", hint="pass a report written by bench --json-file") \
            from None
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("edgetl.") or "rows" not in doc:
        raise ConfigError(f"{path} is not an edgetl bench report", hint="pass a report written by bench --json-file")
    _check_report(doc, path)
    return doc


def _check_report(doc: dict[str, Any], path: Path) -> None:
    """Every field the comparison reads, of the type it reads (a report edited by hand, cut
    short or from another tool is named here, before any benchmark runs)."""
    import math

    def bad(where: str, what: str) -> ConfigError:
        return ConfigError(f"the baseline {path}: {where} {what}",
                           hint="pass a report written by bench --json-file (or bench again to make one)")

    machine = doc.get("machine", {})
    if not isinstance(machine, dict) or not isinstance(machine.get("cpu_flags", []), list):
        raise bad("machine", "is not the machine record bench writes")
    if not isinstance(doc["rows"], list):
        raise bad("rows", "is not a list of rows")
    for i, row in enumerate(doc["rows"]):
        where = f"rows[{i}]"
        if not isinstance(row, dict):
            raise bad(where, "is not a row")
        for field in ("artifact", "backend"):
            if not isinstance(row.get(field), str) or not row[field]:
                raise bad(f"{where}.{field}", "is missing or not text")
        if not isinstance(row.get("batch"), int) or isinstance(row["batch"], bool) or row["batch"] < 1:
            raise bad(f"{where}.batch", f"must be a positive whole number, got {row.get('batch')!r:.40}")
        p50 = row.get("p50_ms")
        if p50 is not None and (isinstance(p50, bool) or not isinstance(p50, (int, float)) or not math.isfinite(p50)
                                or p50 <= 0):
            raise bad(f"{where}.p50_ms", f"must be a positive number of milliseconds, got {p50!r:.40}")
        accuracy = row.get("accuracy")
        if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))
                                     or not 0 <= accuracy <= 1):
            raise bad(f"{where}.accuracy", f"must be a fraction between 0 and 1, got {accuracy!r:.40}")


def check_bounds(max_slowdown: float, max_drop: float) -> None:
    if not max_slowdown >= 1.0:
        raise ConfigError(f"--max-slowdown is a ratio of at least 1, got {max_slowdown}", hint="e.g. --max-slowdown 1.10")
    if not 0 <= max_drop < 1:
        raise ConfigError(f"--max-drop must be at least 0 and below 1, got {max_drop}", hint="e.g. --max-drop 0.01")


def compare(report: dict[str, Any], baseline: dict[str, Any], max_slowdown: float = 1.10, max_drop: float = 0.01,
            reference: str | None = None) -> Comparison:
    """`report` and `baseline` as bench writes them (BenchReport.to_dict())."""
    check_bounds(max_slowdown, max_drop)
    old = {_key(r): r for r in baseline["rows"]}
    new = {_key(r): r for r in report["rows"]}
    kind_new, kind_old = _cpu_kind(report.get("machine", {})), _cpu_kind(baseline.get("machine", {}))
    other_cpu = kind_new != kind_old
    ref_ratio = _reference_ratios(new, old, reference)
    rows = []
    for key in list(new) + [k for k in old if k not in new]:
        n, o = new.get(key), old.get(key)
        row = RowComparison(key, o and o.get("p50_ms"), n and n.get("p50_ms"), None, o and o.get("accuracy"),
                            n and n.get("accuracy"), "not compared")
        if other_cpu:
            row.why = (f"another CPU kind: {', '.join(kind_new) or 'no AVX2'} here, "
                       f"{', '.join(kind_old) or 'no AVX2'} in the baseline")
        elif o is None or n is None:
            row.why = "only in the baseline" if n is None else "not in the baseline"
        elif o.get("error") or n.get("error") or o.get("p50_ms") is None or n.get("p50_ms") is None:
            row.why = "a failed cell"
        elif ref_ratio(key) is None:
            row.why = "the reference was not measured on this backend, batch and threads"
        else:
            row.slowdown = n["p50_ms"] / o["p50_ms"] / ref_ratio(key)
            fell = (o.get("accuracy") or 0) - (n.get("accuracy") or 0)
            row.status = ("slower" if row.slowdown > max_slowdown else
                          "less accurate" if n.get("accuracy") is not None and fell > max_drop + 1e-12 else "ok")
        rows.append(row)
    return Comparison(rows, max_slowdown, max_drop, reference)


def _reference_ratios(new: dict[str, Any], old: dict[str, Any], reference: str | None
                      ) -> Callable[[str], float | None]:
    """key -> how much slower the machine ran the reference now than in the baseline, for
    the rows of the same backend, batch and threads (1 without a reference)."""
    if reference is None:
        return lambda key: 1.0
    ratios = {}
    for key, n in new.items():
        o = old.get(key)
        if Path(n["artifact"]).name == reference and o and n.get("p50_ms") and o.get("p50_ms"):
            ratios[(n["backend"], n["batch"], n.get("threads"))] = n["p50_ms"] / o["p50_ms"]
    if not ratios:
        raise ConfigError(f"the reference {reference} is not measured in both reports",
                          hint="bench it in this run too (and in the baseline's)")

    def of(key: str) -> float | None:
        n = new[key]
        return ratios.get((n["backend"], n["batch"], n.get("threads")))

    return of
