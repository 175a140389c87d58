"""The one way edgetl replaces a file: written under a temporary name beside it, then
renamed over it, so a reader sees the old file or the new one, never half of one; a
failure leaves neither a temporary nor a damaged file behind."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgetl.core.errors import ArtifactError


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], companions: tuple[str, ...] = ()) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) for a writer to write; on success it
    replaces `path` with one rename, with the files of the same stem and the suffixes in
    `companions` first (an OpenVINO IR's .bin beside its .xml). The file gets the mode of
    any new file (the umask's), not mkstemp's private 0600."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise ArtifactError(f"cannot write {path}: {exc.strerror or exc}",
                            hint="choose an output in a folder you can write to") from None
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        for suffix in companions:
            os.replace(tmp.with_suffix(suffix), path.with_suffix(suffix))
        os.replace(tmp, path)
    except BaseException:
        for leftover in (tmp, *(tmp.with_suffix(s) for s in companions)):
            leftover.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], content: str | bytes) -> Path:
    """`content` written to `path` through `replacing`."""
    with replacing(path) as tmp:
        tmp.write_bytes(content.encode() if isinstance(content, str) else content)
    return Path(path)


__all__ = ["current_umask", "replacing", "write_atomic"]
