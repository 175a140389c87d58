"""Where edgetl may write: one rule for every command that writes.

edgetl never deletes or replaces anything it did not make. An output that already
exists is replaced only with --overwrite and only when it is an edgetl artifact of the
same kind: a run directory (with its card), a model file that carries an edgetl card,
a data set edgetl wrote. An output that is, contains or lies inside one of the command's
inputs (the data set, the model being converted) is refused outright: replacing it would
destroy the input, and a run written inside a data set becomes one more class.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from edgetl.core.atomic import current_umask, write_atomic
from edgetl.core.card import CARD_FILENAME
from edgetl.core.errors import ArtifactError, ConfigError

DATA_MARKER = "edgetl-data.json"  # written at the root of the data sets edgetl makes
REPORT_SOFTWARE = "edgetl"  # the PNG text chunk edgetl's plots carry
REPORT_CSV_HEADERS: list[str] = []  # the first columns of the CSV reports edgetl writes (their owners add theirs)


@dataclasses.dataclass(frozen=True)
class OutputKind:
    """A kind of output edgetl writes: how it is named in a refusal, and how an existing
    path is recognised as one edgetl made (only those are ever replaced)."""

    description: str
    recognizes: Callable[[Path], bool]


KINDS: dict[str, OutputKind] = {}


def register_output_kind(name: str, description: str, recognizes: Callable[[Path], bool]) -> None:
    """Kinds are registered by the modules that own them (a model file and a bundle by
    the runtime, which knows their formats); this module knows only the simplest."""
    KINDS[name] = OutputKind(description, recognizes)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def is_edgetl_report(path: Path) -> bool:
    """A report edgetl wrote: JSON with an edgetl schema, CSV with the columns of one of
    edgetl's CSV reports, or a PNG plot that names edgetl as its software."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return str(json.loads(path.read_text()).get("schema", "")).startswith("edgetl.")
        if suffix == ".csv":
            with open(path) as f:
                first = f.readline()
            return any(first.startswith(header) for header in REPORT_CSV_HEADERS)
        if suffix == ".png":
            from PIL import Image

            with Image.open(path) as img:
                return str(getattr(img, "text", {}).get("Software", "")).startswith(REPORT_SOFTWARE)
    except Exception:  # unreadable, not JSON, not an image: not provably ours
        return False
    return False


register_output_kind("run", "an edgetl run directory", lambda p: p.is_dir() and (p / CARD_FILENAME).is_file())
register_output_kind("data", "a data set written by edgetl", lambda p: p.is_dir() and (p / DATA_MARKER).is_file())
register_output_kind("report", "a report written by edgetl", lambda p: p.is_file() and is_edgetl_report(p))


def output_kind(kind: str) -> OutputKind:
    if kind not in KINDS:  # a programming error: the owner of the kind registers it when imported
        raise ValueError(f"output kind {kind!r} is not registered (known: {', '.join(KINDS)})")
    return KINDS[kind]


def is_edgetl_output(path: Path, kind: str) -> bool:
    return output_kind(kind).recognizes(path)


def check_output(out: str | os.PathLike[str], kind: str, overwrite: bool, inputs: dict[str, object] | None = None,
                 appeared: bool = False) -> Path:
    """Refuse `out` (a run directory, model file or data set, by `kind`) when writing it
    could destroy something; returns it resolved. `inputs` names what the command reads
    (e.g. {"data set": DATA}), which the output may neither be, contain nor lie inside."""
    description = output_kind(kind).description
    out = Path(out).expanduser().resolve()
    refuse_overlap(out, inputs)
    check_writable(out)
    if kind in ("run", "data") and out.is_dir() and not any(out.iterdir()):
        return out  # an empty folder holds nothing to lose
    if not out.exists() and not out.is_symlink():
        return out
    when = " (it appeared while this command ran; nothing was replaced)" if appeared else ""
    if not is_edgetl_output(out, kind):
        raise ConfigError(f"{out} already exists and is not {description}{when}; edgetl never replaces what it did "
                          "not make", hint="choose another --out")
    if not overwrite:
        raise ConfigError(f"{out} already exists ({description}){when}", hint="choose another --out, or pass "
                          "--overwrite to replace it")
    return out


def refuse_overlap(out: str | os.PathLike[str], inputs: dict[str, object] | None) -> None:
    """`out` may neither be, contain nor lie inside any of `inputs` (what a command reads,
    by what it is: {"data set": DATA}); None values are skipped."""
    out = Path(out).expanduser().resolve()
    for what, value in (inputs or {}).items():
        if not value:
            continue
        source = Path(str(value)).expanduser().resolve()
        if _inside(out, source) or _inside(source, out):
            relation = "is" if out == source else ("lies inside" if _inside(out, source) else "contains")
            raise ConfigError(f"--out {out} {relation} the {what} {source}",
                              hint=f"write outside the {what}, e.g. --out "
                                   f"{source.parent / (source.stem + '-out' + (out.suffix if source.is_file() else ''))}")


def check_writable(out: Path) -> None:
    """An output's folder (or the nearest one that exists) takes a new file: tried, since
    permissions alone do not say it (a read-only mount, a full disk, root on /sys)."""
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgetl-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ArtifactError(f"cannot write in {folder}: {exc.strerror or exc}",
                            hint="choose an output in a folder you can write to") from None


def temp_dir_beside(out: Path) -> Path:
    """The hidden folder an output is written in before it is renamed into place (same
    filesystem, so the rename is atomic); a folder that cannot be written is an error."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        # mkdtemp makes it private (0700); once renamed it is an ordinary output, whose mode the umask sets
        tmp.chmod(0o777 & ~current_umask())
        return tmp
    except OSError as exc:
        raise ArtifactError(f"cannot write in {out.parent}: {exc.strerror or exc}",
                            hint="choose an --out in a folder you can write to") from None


def write_data_marker(folder: Path, source: dict[str, Any]) -> None:
    (folder / DATA_MARKER).write_text(json.dumps(source, indent=2) + "\n")


def publish_data(tmp: Path, out: Path, source: dict[str, Any], overwrite: bool = False) -> None:
    """Mark the data set written in `tmp` as edgetl's and move it to `out` (publish)."""
    write_data_marker(tmp, source)
    publish({tmp: out}, "data", overwrite)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _move_exclusive(src: Path, dst: Path) -> None:
    """Move `src` to `dst` only if nothing is there: a folder by rename (which fails on a
    folder that is not empty), a file by a hard link (which fails on any file)."""
    if src.is_dir():
        if dst.is_dir() and not dst.is_symlink() and not any(dst.iterdir()):
            dst.rmdir()  # an empty folder holds nothing to lose
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(dst)
        os.rename(src, dst)  # ENOTEMPTY/EEXIST when another process placed its folder first
        return
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: the check and the rename, as close as they get
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(dst) from None
        os.replace(src, dst)
        return
    os.unlink(src)


# Files that belong to a model beside it (OpenVINO's weights, a card, ONNX external data):
# replaced with the model they belong to, which is the one checked.
COMPANION_SUFFIXES = (".bin", ".json", ".data")


def publish(moves: dict[Path, Path], kind: str, overwrite: bool) -> None:
    """Move finished outputs from their temporary names into place, all or none: the one
    last step of every command that writes. Without `overwrite` it is exclusive: an
    output that appeared at a destination while the command ran (another edgetl writing
    the same --out) is an error, and nothing of this command replaces it. With
    `overwrite`, what is at a destination is checked against the rule again, at this
    moment, before it is replaced (a model's companion files follow their model: the
    model is moved, and checked, first)."""
    placed: list[Path] = []
    order = sorted(moves.items(), key=lambda m: Path(m[1]).suffix.lower() in COMPANION_SUFFIXES and kind == "model")
    try:
        for src, dst in order:
            dst = Path(dst)
            companion = kind == "model" and dst.suffix.lower() in COMPANION_SUFFIXES
            if overwrite and (dst.exists() or dst.is_symlink()):
                if not companion:
                    check_output(dst, kind, overwrite=True)
                _remove(dst)
            try:
                _move_exclusive(Path(src), dst)
            except OSError as exc:
                if not (dst.exists() or dst.is_symlink()):
                    raise
                if overwrite:  # replaced by another process between our check and our move
                    raise ConfigError(f"{dst} was written by another process while this command ran; nothing was "
                                      "replaced", hint="run one edgetl command per --out at a time") from exc
                check_output(dst, kind, overwrite=False, appeared=True)  # names what is there
                raise ConfigError(f"{dst} appeared while this command ran", hint="choose another --out") from exc
            placed.append(dst)
    except BaseException:
        for dst in placed:  # all or none
            _remove(dst)
        raise


class Terminated(BaseException):
    """SIGTERM (timeout, kill, a container stopping) as an exception, so that every
    temporary output is removed exactly as on Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> NoReturn:
    raise Terminated()


def remove_outputs_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C (the main thread only; elsewhere it is left alone)."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        pass


__all__ = ["DATA_MARKER", "Terminated", "check_output", "OutputKind", "register_output_kind", "is_edgetl_output", "publish",
           "publish_data", "remove_outputs_on_sigterm", "temp_dir_beside", "write_atomic", "write_data_marker"]
