"""The evaluate report people open: `edgetl evaluate ... --report DIR` writes DIR/index.html
(figures, per-class precision, recall and F1, top-k accuracy, the confusion-matrix picture,
the misclassified files with thumbnails or audio players and their scores), DIR/confusion.png
and DIR/report.json (every figure of the page). The folder is written beside its place and
renamed into it; an earlier report is replaced only with --overwrite."""
from __future__ import annotations

import html
import io
import json
import shutil
from pathlib import Path

from edgetl.core.outputs import check_output, publish, register_output_kind, temp_dir_beside, write_atomic

GENERATOR = '<meta name="generator" content="edgetl evaluate">'
REPORT_DIR = "report folder"
SHOWN = 60  # misclassified files with a thumbnail or a player; report.json lists them all (up to MISCLASSIFIED)


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


def _thumbnail(src: Path, dst_dir: Path, i: int, modality: str) -> str | None:
    """A small copy of a misclassified file in the report folder: a PNG thumbnail of an
    image, the clip itself for audio (a player plays it); its name there, or None."""
    try:
        if modality == "image":
            from PIL import Image

            with Image.open(src) as img:
                img = img.convert("RGB")
                img.thumbnail((128, 128))
                name = f"{i:04d}.png"
                img.save(dst_dir / name)
            return name
        name = f"{i:04d}{src.suffix.lower()}"
        shutil.copyfile(src, dst_dir / name)
        return name
    except Exception:  # a file gone or unreadable since the evaluation: listed without its picture
        return None


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_report(report, out, modality: str, overwrite: bool = False) -> Path:
    """The report folder of an EvalReport (evaluate/accuracy.py)."""
    out = check_output(out, REPORT_DIR, overwrite)
    tmp = temp_dir_beside(out)
    try:
        (tmp / "files").mkdir()
        title = f"{Path(report.artifact).name} on {report.split}"
        write_atomic(tmp / "confusion.png", confusion_png(report.labels, report.confusion, title))
        write_atomic(tmp / "report.json", json.dumps(report.to_dict(), indent=2) + "\n")
        e = html.escape
        top_k = "".join(f"<tr><td>top-{k}</td><td>{v:.4f}</td></tr>" for k, v in report.top_k.items())
        classes = "".join(
            f"<tr><td>{e(c)}</td><td>{_cell(m['precision'])}</td><td>{_cell(m['recall'])}</td>"
            f"<td>{_cell(m['f1'])}</td><td>{m['support']}</td></tr>" for c, m in report.classes.items())
        rows = []
        for i, m in enumerate(report.misclassified[:SHOWN]):
            shown = _thumbnail(Path(m["file"]), tmp / "files", i, modality) if m.get("file") else None
            if shown and modality == "image":
                media = f'<img src="files/{e(shown)}" alt="{e(m["true"])}">'
            elif shown:
                media = f'<audio controls preload="none" src="files/{e(shown)}"></audio>'
            else:
                media = ""
            top = ", ".join(f"{e(label)} {score:.3f}" for label, score in m["top"])
            rows.append(f"<tr><td>{media}</td><td>{e(Path(m['file']).name if m.get('file') else '-')}</td>"
                        f"<td>{e(m['true'])}</td><td>{e(m['predicted'])}</td><td>{top}</td></tr>")
        more = len(report.misclassified) - SHOWN
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{GENERATOR}
<title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 128px; image-rendering: pixelated; }}
.figures td:first-child {{ font-weight: bold; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>{report.n} samples, backend {e(report.backend)} (computing in {e(report.inference_precision)}),
{report.skipped} file(s) skipped as unreadable.</p>
<table class="figures"><tr><td>accuracy</td><td>{report.accuracy:.4f}</td></tr>{top_k}</table>
<h2>Confusion matrix</h2>
<img id="confusion" src="confusion.png" alt="confusion matrix" style="max-width: 900px">
<h2>Per class</h2>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{classes}</table>
<h2>Misclassified ({len(report.misclassified)}, most confident first)</h2>
<table><tr><th></th><th>file</th><th>true</th><th>predicted</th><th>top scores</th></tr>{''.join(rows)}</table>
{f'<p>{more} more in report.json.</p>' if more > 0 else ''}
</body></html>
"""
        write_atomic(tmp / "index.html", page)
        publish({tmp: out}, REPORT_DIR, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


__all__ = ["REPORT_DIR", "confusion_png", "write_report"]
