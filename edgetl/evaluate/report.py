"""The evaluate report people open: `edgetl evaluate ... --report DIR` writes DIR/index.html,
its pictures and DIR/report.json (every figure of the page). What it shows follows what the
task measured: a classifier's top-k accuracy, per-class precision, recall and F1, the
confusion matrix (confusion.png) and the misclassified files with thumbnails or audio
players and their scores; a detector's mAP, per-class AP, precision-recall curves
(pr_curves.png) and the worst images with the true boxes (green) and the found ones (red)
drawn. The folder is written beside its place and renamed into it; an earlier report is
replaced only with --overwrite."""
from __future__ import annotations

import html
import io
import json
import shutil
from pathlib import Path
from typing import Any

from edgetl.core.outputs import check_output, publish, register_output_kind, temp_dir_beside, write_atomic

GENERATOR = '<meta name="generator" content="edgetl evaluate">'
REPORT_DIR = "report folder"
SHOWN = 60  # mistakes with a thumbnail or a player; report.json lists them all (up to accuracy.MISTAKES)
FIGURE_NAMES = {"map": "mAP@0.5:0.95", "map50": "mAP@0.5", "ap": "AP", "ap50": "AP@0.5", "f1": "F1"}


def _is_report_folder(path: Path) -> bool:
    try:
        return path.is_dir() and GENERATOR in (path / "index.html").read_text(errors="replace")[:2000]
    except OSError:
        return False


register_output_kind(REPORT_DIR, "a report folder written by edgetl evaluate", _is_report_folder)


def confusion_png(labels: list[str], confusion: list[list[int]], title: str) -> bytes:
    """The confusion matrix as a picture: rows true, columns predicted, each row's share
    shaded, counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion, float)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = min(14.0, 2.5 + 0.45 * len(labels))
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.6 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": "edgetl evaluate"})
    plt.close(fig)
    return buf.getvalue()


def pr_curves_png(curves: dict[str, Any], classes: dict[str, Any], title: str) -> bytes:
    """A detector's precision-recall curve per class at IoU 0.5 (COCO's 101 recall points),
    each labelled with its AP@0.5; classes without true boxes have no curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall = curves["recall"]
    drawn = [(c, v) for c, v in curves.items() if c not in ("recall", "iou") and v is not None]
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for c, precision in drawn[:20]:  # a legend of more is unreadable; report.json holds them all
        ap50 = (classes.get(c) or {}).get("ap50")
        ax.plot(recall, precision, label=f"{c} (AP@0.5 {ap50:.3f})" if ap50 is not None else c)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{title}: precision-recall at IoU {curves.get('iou', 0.5)}")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": "edgetl evaluate"})
    plt.close(fig)
    return buf.getvalue()


def _thumbnail(src: Path, dst_dir: Path, i: int, modality: str, mistake: dict[str, Any]) -> str | None:
    """A small copy of a file the model got wrong in the report folder: a PNG thumbnail of
    an image (with the true and the found boxes drawn when the mistake has them), the clip
    itself for audio (a player plays it); its name there, or None."""
    try:
        if modality == "image":
            from edgetl.modality.image import load_image
            from edgetl.runtime.predict import drawn

            img = load_image(src)
            if "objects" in mistake:
                img = drawn(img, mistake["objects"], mistake.get("truths", []))
            img.thumbnail((320, 320) if "objects" in mistake else (128, 128))
            name = f"{i:04d}.png"
            img.save(dst_dir / name)
            return name
        name = f"{i:04d}{src.suffix.lower()}"
        shutil.copyfile(src, dst_dir / name)
        return name
    except Exception:  # a file gone or unreadable since the evaluation: listed without its picture
        return None


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def _figures(report: Any) -> list[tuple[str, float]]:  # an EvalReport (evaluate/accuracy.py imports this module)
    """The headline figures: the task's metric, top-k accuracy, a detector's mAP@0.5."""
    figures = [(FIGURE_NAMES.get(report.metric, report.metric), report.accuracy)]
    figures += [(f"top-{k}", v) for k, v in report.top_k.items()]
    if report.map50 is not None:
        figures.append((FIGURE_NAMES["map50"], report.map50))
    return figures


def _mistake_row(m: dict[str, Any], media: str) -> str:
    """One listed mistake: a classifier's true and predicted labels with the best scores;
    a detector's missed and false objects with what it found."""
    e = html.escape
    name = e(Path(m["file"]).name if m.get("file") else "-")
    if "objects" in m:
        found = ", ".join(f"{e(o['label'])} {o['score']:.2f}" for o in m["objects"]) or "none"
        return f"<tr><td>{media}</td><td>{name}</td><td>{m['missed']}</td><td>{m['false']}</td><td>{found}</td></tr>"
    top = ", ".join(f"{e(label)} {score:.3f}" for label, score in m["top"])
    return f"<tr><td>{media}</td><td>{name}</td><td>{e(m['true'])}</td><td>{e(m['predicted'])}</td><td>{top}</td></tr>"


def write_report(report: Any, out: str | Path, modality: str, overwrite: bool = False) -> Path:
    """The report folder of an EvalReport (evaluate/accuracy.py)."""
    from edgetl.task import get

    task = get(report.task)
    out = check_output(out, REPORT_DIR, overwrite)
    tmp = temp_dir_beside(out)
    try:
        (tmp / "files").mkdir()
        title = f"{Path(report.artifact).name} on {report.split}"
        e = html.escape
        pictures = []
        if report.confusion:
            write_atomic(tmp / "confusion.png", confusion_png(report.labels, report.confusion, title))
            pictures.append(("Confusion matrix", "confusion", "confusion.png"))
        if report.pr_curves:
            write_atomic(tmp / "pr_curves.png", pr_curves_png(report.pr_curves, report.classes, title))
            pictures.append(("Precision-recall curves", "pr-curves", "pr_curves.png"))
        write_atomic(tmp / "report.json", json.dumps(report.to_dict(), indent=2) + "\n")
        figures = "".join(f"<tr><td>{e(name)}</td><td>{v:.4f}</td></tr>" for name, v in _figures(report))
        columns = list(next(iter(report.classes.values()), {}))
        classes = "".join(f"<tr><td>{e(c)}</td>" + "".join(f"<td>{_cell(m.get(k))}</td>" for k in columns) + "</tr>"
                          for c, m in report.classes.items())
        rows = []
        for i, m in enumerate(report.mistakes[:SHOWN]):
            shown = _thumbnail(Path(m["file"]), tmp / "files", i, modality, m) if m.get("file") else None
            if shown and modality == "image":
                media = f'<img src="files/{e(shown)}" alt="{e(Path(m["file"]).name)}">'
            elif shown:
                media = f'<audio controls preload="none" src="files/{e(shown)}"></audio>'
            else:
                media = ""
            rows.append(_mistake_row(m, media))
        more = len(report.mistakes) - SHOWN
        sections = "".join(f'<h2>{e(heading)}</h2>\n<img id="{ident}" src="{name}" alt="{e(heading.lower())}" '
                           f'style="max-width: 900px">\n' for heading, ident, name in pictures)
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{GENERATOR}
<title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 320px; }}
.figures td:first-child {{ font-weight: bold; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>{report.n} samples, backend {e(report.backend)} (computing in {e(report.inference_precision)}),
{report.skipped} file(s) skipped as unreadable.</p>
<table class="figures">{figures}</table>
{sections}<h2>Per class</h2>
<table><tr><th>class</th>{''.join(f'<th>{e(FIGURE_NAMES.get(k, k))}</th>' for k in columns)}</tr>{classes}</table>
<h2>{e(task.mistakes_title)} ({len(report.mistakes)}, {e(task.mistakes_order)})</h2>
<table><tr><th></th><th>file</th>{''.join(f'<th>{e(h)}</th>' for h in task.mistakes_columns)}</tr>{''.join(rows)}</table>
{f'<p>{more} more in report.json.</p>' if more > 0 else ''}
</body></html>
"""
        write_atomic(tmp / "index.html", page)
        publish({tmp: out}, REPORT_DIR, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


__all__ = ["REPORT_DIR", "confusion_png", "pr_curves_png", "write_report"]
