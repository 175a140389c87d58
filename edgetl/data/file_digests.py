"""Digests of data files' content, each file read once while it is unchanged.

The sample cache keys a split by its files' content (a moved copy of the same files hits
the same entry), and every command asks for that key. Reading every file again each time
costs as much as the data set is large, so each folder's digests are kept in the cache
(CACHE/digests/FOLDER.json) beside what identifies the file they were read from: size,
modification and change times, inode. A file whose stat is unchanged is not read again;
its change time moves with any write, even one that puts the modification time back. A
file changed within the last RACY_SECONDS is read again next time too: on a file system
with coarse times a second write in the same tick would leave its stat as it was.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgetl.core.atomic import write_atomic
from edgetl.core.errors import ArtifactError
from edgetl.core.paths import cache_dir

RACY_SECONDS = 2.0


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _signature(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _settled(signature: list[int], now_ns: int) -> bool:
    """Whether a file was last changed long enough ago for its stat to tell a later change."""
    return now_ns - max(signature[1], signature[2]) > RACY_SECONDS * 1e9


def _memo_path(folder: Path) -> Path:
    return cache_dir() / "digests" / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:24]}.json"


def _read_memo(path: Path) -> dict:
    try:
        memo = json.loads(path.read_text())
        return memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_memo(path: Path, memo: dict) -> None:
    """Best effort: a cache that cannot be written only means reading the files again."""
    try:
        write_atomic(path, json.dumps(memo))
    except (OSError, ArtifactError):
        pass


def digests(paths) -> list[str]:
    """The content digest of each file of `paths`, in order; only files that are new or
    changed since their digest was kept are read."""
    paths = [Path(os.path.abspath(p)) for p in paths]  # not resolved: a link is named where it stands
    by_folder: dict[Path, list[int]] = defaultdict(list)
    for i, p in enumerate(paths):
        by_folder[p.parent].append(i)
    out: list[str | None] = [None] * len(paths)
    signatures = [_signature(p) for p in paths]
    memos, unread = {}, []
    for folder, indices in by_folder.items():
        memos[folder] = memo = _read_memo(_memo_path(folder))
        for i in indices:
            kept = memo.get(paths[i].name)
            if isinstance(kept, list) and kept[:4] == signatures[i] and len(kept) == 5:
                out[i] = kept[4]
            else:
                unread.append(i)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        for i, digest in zip(unread, pool.map(file_digest, [paths[i] for i in unread])):
            out[i] = digest
    changed, now_ns = {paths[i].parent for i in unread}, time.time_ns()
    for folder in changed:
        memo = memos[folder]
        for i in by_folder[folder]:
            if _settled(signatures[i], now_ns):
                memo[paths[i].name] = [*signatures[i], out[i]]
            else:
                memo.pop(paths[i].name, None)
        present = {entry.name for entry in os.scandir(folder)}
        _write_memo(_memo_path(folder), {name: kept for name, kept in memo.items() if name in present})
    return out
