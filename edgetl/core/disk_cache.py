"""What edgetl keeps in its cache folder (edgetl.core.paths.cache_dir), how much room it takes,
and how it is kept within a bound.

Every kind of entry can be made again: decoded samples and a probe's features (made
again by decoding), an interrupted run's checkpoint (`finetune --resume` then starts
over), TensorRT engines built on this device (built again on first use), data files'
digests (read again), backbone listings. The sample store, the one that grows with a
user's data, is kept under EDGETL_CACHE_MAX_GB and 1 GB short of its disk's free space
by removing the entries used longest ago when a new one is written; `edgetl cache`
shows every kind and `edgetl cache clear` removes them.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetl.core.errors import ConfigError
from edgetl.core.paths import cache_dir

DEFAULT_MAX_GB = 20.0
STALE_SECONDS = 6 * 3600  # a half-written entry this old was left by a process that died

KINDS = {
    "samples": "decoded samples and a linear probe's features (read again from the data)",
    "checkpoints": "interrupted training runs (finetune --resume)",
    "engines": "TensorRT engines built on this device",
    "digests": "data files' content digests (read again from the data)",
    "listings": "backbone listings",
    "measured": "latencies `edgetl verify` measured on this machine",
}


def max_bytes() -> int:
    """The bound of the sample store: EDGETL_CACHE_MAX_GB (default 20)."""
    text = os.environ.get("EDGETL_CACHE_MAX_GB", "").strip()
    try:
        gb = float(text) if text else DEFAULT_MAX_GB
    except ValueError:
        gb = -1.0
    if not 0 <= gb < 1e9:  # refuses NaN and infinity too (no bound is not a bound: set a large one)
        raise ConfigError(f"EDGETL_CACHE_MAX_GB must be a number of gigabytes, not {text[:40]!r}",
                          hint="e.g. EDGETL_CACHE_MAX_GB=50, or unset it for the default of 20")
    return int(gb * 1e9)


def size_text(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


@dataclass(frozen=True)
class Entry:
    kind: str
    path: Path
    bytes: int
    last_used: float  # seconds since the epoch
    partial: bool = False  # a write that never finished


def _measure(path: Path) -> tuple[int, float]:
    """An entry's bytes and last use (its newest file's modification time: a hit touches
    meta.json), from one stat of each of its files."""
    stats = [path.stat()] if path.is_file() else [p.stat() for p in path.rglob("*") if p.is_file()]
    return sum(st.st_size for st in stats), max((st.st_mtime for st in stats), default=path.stat().st_mtime)


def entries(kind: str, root: Path | None = None) -> list[Entry]:
    """The entries of one kind, the one used longest ago first. An entry removed while
    it is listed (another process) is left out."""
    root = root or cache_dir()
    if kind == "listings":
        paths = sorted(root.glob("backbones-*.json"))
    else:
        folder = root / kind
        paths = sorted(folder.iterdir()) if folder.is_dir() else []
    found = []
    for path in paths:
        try:
            found.append(Entry(kind, path, *_measure(path), path.name.startswith(".")))
        except FileNotFoundError:
            continue
    return sorted(found, key=lambda e: e.last_used)


def remove(entry: Entry) -> None:
    if entry.path.is_dir():
        shutil.rmtree(entry.path, ignore_errors=True)
    else:
        entry.path.unlink(missing_ok=True)


def chosen_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """The kinds `kinds` names ("all", or names of KINDS), in order, each once."""
    chosen = tuple(KINDS) if "all" in kinds else tuple(dict.fromkeys(kinds))
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise ConfigError(f"no cache entries of the kind {', '.join(unknown)}", hint=f"one of {', '.join(KINDS)} or all")
    return chosen


def usage() -> dict[str, dict[str, Any]]:
    """Each kind's entries, bytes, last use (None when empty) and writes never finished."""
    summary = {}
    for kind in KINDS:
        found = entries(kind)
        summary[kind] = {"entries": len(found), "bytes": sum(e.bytes for e in found),
                         "last_used": max((e.last_used for e in found), default=None),
                         "partial": sum(e.partial for e in found)}
    return summary


def clear(kinds: Iterable[str] = ("all",), older_than: float | None = None) -> list[Entry]:
    """Remove the entries of `kinds` ("all", or names of KINDS), those unused for
    `older_than` days when given; the removed entries."""
    kinds = chosen_kinds(kinds)
    if older_than is not None and not 0 <= older_than < 1e6:  # NaN would compare false and remove nothing
        raise ConfigError(f"--older-than takes a number of days, got {older_than:g}", hint="e.g. --older-than 30")
    cutoff = time.time() - older_than * 86400 if older_than is not None else float("inf")
    removed = []
    for kind in kinds:
        for entry in entries(kind):
            if entry.last_used < cutoff:
                remove(entry)
                removed.append(entry)
    return removed


RESERVE_BYTES = 1_000_000_000  # left free on the cache's disk for everything else


def free_bytes(folder: Path) -> int:
    """Free space on the disk that holds `folder` (or would: its nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


@dataclass(frozen=True)
class Room:
    removed: list[Entry]
    held: int  # bytes the folder holds after the removals
    limit: int  # what it may hold: the bound, or less when the disk has less room
    by_disk: bool  # the disk's free space, not the bound, set the limit


def make_room(kind: str, needed: int, keep: set[str]) -> Room:
    """Remove `kind`'s entries used longest ago until the folder and `needed` more bytes
    fit under max_bytes() and in the disk's free space (less RESERVE_BYTES); entries
    named in `keep` (in use by this process) and other processes' writes in progress stay."""
    bound = max_bytes()
    listed = entries(kind)
    now, held, removed = time.time(), sum(e.bytes for e in listed), []
    room_on_disk = held + free_bytes(cache_dir() / kind) - RESERVE_BYTES
    limit = min(bound, room_on_disk)
    for entry in listed:
        if held + needed <= limit:
            break
        if entry.path.name in keep or (entry.partial and now - entry.last_used < STALE_SECONDS):
            continue
        remove(entry)
        removed.append(entry)
        held -= entry.bytes
    return Room(removed, held, limit, room_on_disk < bound)
