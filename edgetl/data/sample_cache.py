"""The decoded-sample cache on disk: a split decoded once into a memory-mapped array.

A split's entry is keyed by the content of its files (in order) and the preprocessing,
so a later run, `evaluate`, quantization's calibration and `bench` on the same files
reuse it, and an edited file or another input size makes a new one. Samples are
written as they are decoded and read back a batch at a time (the map is opened for the
batch and closed after it), so memory holds a batch, not the data set: a data set
larger than RAM trains. The same store keeps derived arrays of a split, such as a
linear probe's features (`cached_array`).

Layout: CACHE/samples/KEY/{samples.npy, meta.json}, written under a temporary name and
renamed when complete; a failed write (a full disk) falls back to memory with a warning.
The store stays under EDGETL_CACHE_MAX_GB: before an entry is written, the entries used
longest ago (a hit touches meta.json) are removed to make room, never one this process
has opened. An entry is read through a file handle kept open, so one removed by another
process while it is read stays readable until it is closed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgetl import modality as modalities
from edgetl._version import __version__
from edgetl.core import disk_cache
from edgetl.core.paths import cache_dir
from edgetl.data import file_digests

log = logging.getLogger("edgetl")

FORMAT = 2  # bump when the layout or the decoding changes what an entry holds (2: entries carry their digest)
IN_USE: set[str] = set()  # the entries this process opened or wrote: never removed to make room


def store() -> Path:
    return cache_dir() / "samples"


def split_key(paths, preprocessing) -> str:
    """The key of a split's decoded samples: every file's content, in order, and the
    preprocessing (a moved or renamed copy of the same files hits the same entry). Files
    unchanged since their last digest are not read again (file_digests.py)."""
    h = hashlib.sha256(json.dumps([FORMAT, preprocessing.to_dict()], sort_keys=True).encode())
    for d in file_digests.digests(paths):
        h.update(d.encode())
    return h.hexdigest()[:32]


class _OpenArray:
    """An .npy file held open (shared by the samples that read it), closed with its last reference."""

    def __init__(self, path: Path):
        self.file = open(path, "rb")  # noqa: SIM115  (held open for the samples' lifetime)
        version = np.lib.format.read_magic(self.file)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version]
        read_header(self.file)
        self.offset = self.file.tell()

    def __del__(self) -> None:
        if getattr(self, "file", None) is not None:  # not when opening failed (an entry removed meanwhile)
            self.file.close()


class CachedSamples:
    """A split's cached samples: rows read from the memory-mapped file a batch at a time,
    then `extra` rows kept in memory (samples made rather than decoded, such as a
    _silence_ class). Indexing by a slice or an array of row numbers returns an array."""

    def __init__(self, path: Path | None, rows: int, sample_shape: tuple, dtype, key: str,
                 extra: np.ndarray | None = None, memory: np.ndarray | None = None):
        self.path, self.rows, self.sample_shape, self.dtype, self.key = path, rows, tuple(sample_shape), dtype, key
        self.memory = memory  # the rows in memory instead (the cache could not be written)
        self.extra = extra if extra is not None else np.zeros((0, *sample_shape), dtype)
        self._file: _OpenArray | None = None
        self.files: list[Path] = []  # the file each stored row was decoded from, where known (cached_split)

    def opened(self) -> CachedSamples:
        """These samples with their file open: from now on, another process removing the
        entry to make room cannot take the rows away from this one."""
        if self.memory is None and self._file is None:
            self._file = _OpenArray(self.path)
        return self

    def _stored(self) -> np.ndarray:
        """The stored rows: a map of the open file, for one read (it closes with its last reference)."""
        if self.memory is not None:
            return self.memory
        opened = self.opened()._file
        return np.memmap(opened.file, self.dtype, "r", opened.offset, (self.rows, *self.sample_shape))

    def __len__(self) -> int:
        return self.rows + len(self.extra)

    @property
    def shape(self) -> tuple:
        return (len(self), *self.sample_shape)

    def with_extra(self, extra: np.ndarray) -> CachedSamples:
        """These samples followed by `extra` (the key names both)."""
        extra = np.concatenate([self.extra, extra.astype(self.dtype)])
        key = hashlib.sha256(self.key.encode() + extra.tobytes()).hexdigest()[:32]
        joined = CachedSamples(self.path, self.rows, self.sample_shape, self.dtype, key, extra, self.memory)
        joined.files = self.files
        joined._file = self._file  # the same open file
        return joined

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index, np.int64)
        if index.ndim == 0:
            return self[index[None]][0]
        out = np.empty((len(index), *self.sample_shape), self.dtype)
        stored = index < self.rows
        if stored.any():
            rows = self._stored()
            out[stored] = rows[index[stored]]
            del rows  # the map closes with its last reference: its pages leave this process
        if not stored.all():
            out[~stored] = self.extra[index[~stored] - self.rows]
        return out

    def chunks(self, size: int):
        for start in range(0, len(self), size):
            yield self[start:start + size]


class RowFile:
    """An .npy file written row by row through the file (not a memory map, whose written
    pages would stay in this process until it is closed): `out[i] = row`, `out[a:b] = rows`."""

    def __init__(self, path: Path, shape: tuple, dtype):
        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))  # header and size
        self.offset = header.offset
        del header
        self.dtype, self.row_bytes = np.dtype(dtype), int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
        self.file = open(path, "r+b")  # noqa: SIM115  (held open while the entry is written)

    def __setitem__(self, index, rows) -> None:
        start = index.start if isinstance(index, slice) else int(index)
        self.file.seek(self.offset + start * self.row_bytes)
        self.file.write(np.ascontiguousarray(rows, self.dtype).tobytes())

    def __enter__(self) -> RowFile:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def _entry(key: str) -> Path:
    return store() / key


def _publish(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)
    except OSError:  # another process wrote the same entry first: its copy is as good
        shutil.rmtree(tmp, ignore_errors=True)


DIGEST_BLOCKS, DIGEST_BLOCK = 64, 1 << 16  # what an entry's digest reads: 4 MB spread over the file, whatever its size


def sampled_digest(path: Path) -> str:
    """A digest of a stored array's size and of 64 blocks spread evenly over it (the whole
    file when smaller): checked on every open, it costs a few milliseconds at any size
    and catches an entry overwritten, cut short or replaced; a change of a few bytes
    between the blocks it reads is not what it is for."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        if size <= DIGEST_BLOCKS * DIGEST_BLOCK:
            h.update(f.read())
        else:
            for i in range(DIGEST_BLOCKS):
                f.seek(i * (size - DIGEST_BLOCK) // (DIGEST_BLOCKS - 1))
                h.update(f.read(DIGEST_BLOCK))
    return h.hexdigest()


def entry_problem(final: Path, meta, shape: tuple, dtype) -> str | None:
    """What is wrong with a stored entry, or None: its format, its row count, the array's
    header and length, and its bytes against the digest written with it."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("edgetl") != __version__:
        return "was written by another edgetl version"
    rows = meta.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or not 0 <= rows <= shape[0]:
        return f"records {rows!r:.20} rows for a split of {shape[0]}"
    path = final / "samples.npy"
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        stored_shape, _, stored_dtype = {(1, 0): np.lib.format.read_array_header_1_0,
                                         (2, 0): np.lib.format.read_array_header_2_0}[version](f)
        offset = f.tell()
    if tuple(stored_shape) != tuple(shape) or np.dtype(stored_dtype) != np.dtype(dtype):
        return f"holds an array of {stored_shape} {stored_dtype}, not {tuple(shape)} {np.dtype(dtype)}"
    if path.stat().st_size != offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize:
        return "is cut short"
    if meta.get("digest") != sampled_digest(path):
        return "changed since it was written"
    return None


def cached_array(key: str, shape: tuple, dtype, fill: Callable[[np.ndarray], dict | None],
                 check: Callable[[dict], str | None] | None = None) -> tuple[CachedSamples, dict]:
    """The array stored under `key`, made by `fill(out)` (which writes every row of the
    `out` (a RowFile, or an array when the store cannot be written) and returns what to remember beside it) when it is not stored
    yet; (the array, what `fill` returned). Falls back to memory when the store cannot
    be written. An entry found is checked first (`entry_problem`, and `check(meta)`: what
    the caller knows it must hold); a bad one is named in a warning, removed and made
    again: a cache never changes a figure."""
    final = _entry(key)
    meta_path = final / "meta.json"
    IN_USE.add(key)
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            problem = entry_problem(final, meta, shape, dtype) or (check(meta) if check else None)
            if problem is None:
                os.utime(meta_path)  # used now: the last to be removed to make room
                samples = CachedSamples(final / "samples.npy", meta["rows"], tuple(shape[1:]), np.dtype(dtype), key)
                return samples.opened(), meta
        except (OSError, ValueError, KeyError, TypeError) as exc:  # gone meanwhile, unreadable, not JSON, not .npy
            problem = f"cannot be read ({exc})"
        if final.exists():
            log.warning(f"the cached entry {final} {problem}: removed, made again")
        shutil.rmtree(final, ignore_errors=True)
    try:
        store().mkdir(parents=True, exist_ok=True)
        _make_room(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=store()))
    except OSError as exc:
        return _in_memory(key, shape, dtype, fill, exc)
    try:
        with RowFile(tmp / "samples.npy", shape, dtype) as out:
            meta = dict(fill(out) or {})
        meta.setdefault("rows", shape[0])
        meta.update(edgetl=__version__, format=FORMAT, digest=sampled_digest(tmp / "samples.npy"))
        (tmp / "meta.json").write_text(json.dumps(meta))
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return _in_memory(key, shape, dtype, fill, exc)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, final)
    where = final if final.is_dir() else tmp
    return CachedSamples(where / "samples.npy", meta["rows"], tuple(shape[1:]), np.dtype(dtype), key).opened(), meta


def _make_room(needed: int) -> None:
    room = disk_cache.make_room("samples", needed, keep=IN_USE)
    size = disk_cache.size_text
    if room.removed:
        log.info("removed %d sample cache entries used longest ago (%s) to make room", len(room.removed),
                 size(sum(e.bytes for e in room.removed)))
    if room.held + needed <= room.limit:
        return
    if room.by_disk:
        log.warning(f"writing {size(needed)} of decoded samples leaves less than {size(disk_cache.RESERVE_BYTES)} free "
                    f"on the disk that holds the sample cache ({store()}), even with the entries not in use removed "
                    "(set EDGETL_CACHE_DIR to a folder on a disk with room, or free space on this one)")
    else:
        log.warning(f"the sample cache in {store()} will hold {size(room.held + needed)}, over its bound of "
                    f"{size(room.limit)}: the data in use takes more (raise EDGETL_CACHE_MAX_GB, or "
                    "`edgetl cache clear` what older runs left)")


def _in_memory(key, shape, dtype, fill, exc) -> tuple[CachedSamples, dict]:
    log.warning(f"cannot write the sample cache in {store()} ({exc}); decoding into memory instead "
                "(set EDGETL_CACHE_DIR to a folder with free space)")
    out = np.zeros(shape, dtype)
    meta = dict(fill(out) or {})
    meta.setdefault("rows", shape[0])
    return CachedSamples(None, meta["rows"], tuple(shape[1:]), np.dtype(dtype), key, memory=out), meta


def cached_split(folder, preprocessing, progress: Callable[[int], None] | None = None,
                 on_hit: Callable[[int], None] | None = None) -> tuple[CachedSamples, np.ndarray]:
    """A split's decoded samples from the cache (decoded into it the first time), and the
    labels of its readable files. Unreadable files are named in a warning each time, as
    when decoding."""
    kind = modalities.get(preprocessing.kind)
    key = split_key(folder.paths, preprocessing)
    shape = (len(folder), *preprocessing.cache_shape)
    decoded_now = []

    def fill(out):
        keep, reasons = modalities.decode_into(folder.paths, preprocessing, out, progress=progress)
        decoded_now.append(True)
        return {"rows": int(keep.sum()), "keep": keep.tolist(), "reasons": reasons[:1]}

    def check(meta: dict) -> str | None:  # the kept list is the split's, and the row count its kept files
        keep = meta.get("keep")
        if not isinstance(keep, list) or len(keep) != len(folder) or sum(map(bool, keep)) != meta["rows"] \
                or not isinstance(meta.get("reasons"), list):
            return f"does not list which of the split's {len(folder)} files it holds"
        return None

    samples, meta = cached_array(key, shape, preprocessing.cache_dtype, fill, check)
    if not decoded_now and on_hit is not None:
        on_hit(len(folder))
    keep = np.asarray(meta["keep"], bool)
    labels = modalities.decoded_labels(folder, keep, meta["reasons"], kind.noun, kind.skipped_as)
    samples.files = [p for p, k in zip(folder.paths, keep) if k]
    return samples, labels
