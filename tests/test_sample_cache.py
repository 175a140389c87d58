"""The decoded-sample cache on disk: memory that does not grow with the data set, entries
reused by later runs, keyed by the files' content, unreadable files still named."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.data.folders import open_folder
from edgetl.data.sample_cache import cached_split, split_key
from edgetl.modality import decode_split
from edgetl.modality.image import ImagePreprocessing

# Reads every training sample the way the training loop does (batches of tensors in the
# training layout) and prints the peak resident memory and whether the cache was hit.
STREAM = textwrap.dedent("""
    import json, sys
    import torch
    from edgetl.data.folders import open_folder
    from edgetl.data.sample_cache import cached_split
    from edgetl.finetune.augment import ImageTrainingInput
    from edgetl.finetune.training import as_source
    from edgetl.modality import decode_split
    from edgetl.modality.image import ImagePreprocessing

    pre, hits = ImagePreprocessing(), []
    split = open_folder(sys.argv[1], modality="image")["train"]
    decode = cached_split if sys.argv[2] == "cache" else decode_split
    kw = {"on_hit": hits.append} if sys.argv[2] == "cache" else {}
    samples, labels = decode(split, pre, **kw)
    x, y = as_source(samples, labels, torch.device("cpu"), ImageTrainingInput(pre.mean, pre.std, "cpu"))
    total = 0
    for idx in torch.randperm(len(x)).split(32):
        total += int(x[idx].float().mean() > 0)
    # VmHWM, not ru_maxrss: Linux carries the forking process's peak into ru_maxrss across exec
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"peak_mb": peak_kb / 1024, "hit": bool(hits),
                      "n": len(x), "batches": total}))
""")


def _images(root: Path, n: int) -> Path:
    rng = np.random.default_rng(n)
    for i in range(n):
        folder = root / "train" / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    (root / "val" / "c0").mkdir(parents=True)
    return root


def _stream(data: Path, how: str, cache: Path) -> dict:
    # A fixed mmap threshold: glibc otherwise raises it after the first large free and keeps
    # later batches' buffers in its heap, a retention that varied by 40 MB between runs of
    # the same data (measured) and would hide or fake growth with the data set.
    env = {**os.environ, "EDGETL_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", STREAM, str(data), how], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_the_data_set_and_a_second_run_reuses_the_cache(tmp_path):
    """224-px samples (147 KB each): 1,000 more of them held in memory would add 147 MB
    (the in-memory decode does, which shows the measurement can fail); streamed from the
    cache they add almost nothing."""
    small, large = _images(tmp_path / "small", 250), _images(tmp_path / "large", 1250)
    in_memory = [_stream(d, "memory", tmp_path / "unused")["peak_mb"] for d in (small, large)]
    first = [_stream(d, "cache", tmp_path / "cache") for d in (small, large)]
    again = _stream(large, "cache", tmp_path / "cache")
    assert [r["n"] for r in first] == [250, 1250] and all(r["batches"] for r in first)
    assert in_memory[1] - in_memory[0] > 100, in_memory
    assert first[1]["peak_mb"] - first[0]["peak_mb"] < 30, first
    assert not first[1]["hit"] and again["hit"] and again["peak_mb"] - first[0]["peak_mb"] < 30


def test_entries_follow_the_files_content_and_the_preprocessing(tmp_path):
    data = _images(tmp_path / "d", 6)
    split = open_folder(data, modality="image")["train"]
    pre = ImagePreprocessing(size=(32, 32), resize=36)
    key = split_key(split.paths, pre)
    assert split_key(split.paths, pre.with_size(48)) != key
    samples, labels = cached_split(split, pre)
    in_memory, same_labels = decode_split(split, pre)
    assert np.array_equal(samples[:], in_memory) and np.array_equal(labels, same_labels)
    Image.new("RGB", (24, 24), "white").save(split.paths[0])  # an edited file: a new entry, new pixels
    assert split_key(split.paths, pre) != key
    assert (cached_split(split, pre)[0][0] == 255).all()


def test_unreadable_files_are_named_on_every_run(tmp_path, caplog):
    data = _images(tmp_path / "d", 6)
    (data / "train" / "c0" / "broken.png").write_bytes(b"not a png")
    split = open_folder(data, modality="image")["train"]
    pre = ImagePreprocessing(size=(32, 32), resize=36)
    for _ in range(2):  # decoded, then from the cache
        caplog.clear()
        samples, labels = cached_split(split, pre)
        assert len(samples) == len(labels) == 6 and "broken.png" in caplog.text


def test_a_probes_feature_cache_is_keyed_by_what_the_backbone_computes():
    """The digest that keys cached features changes with a setting that is no weight (the
    log-mel's floor) and with a buffer a state dict leaves out (the DFT kernels)."""
    import torch

    from edgetl.backbones.frontend import LogMel, set_floor
    from edgetl.finetune.training import module_digest

    frontend = LogMel()
    digest = module_digest(frontend)
    set_floor(frontend, None)
    assert module_digest(frontend) != digest
    set_floor(frontend, LogMel().floor_db)
    assert module_digest(frontend) == digest
    with torch.no_grad():
        frontend.dft[0, 0, 0] += 1.0  # not in the state dict (persistent=False)
    assert "dft" not in frontend.state_dict() and module_digest(frontend) != digest


def _entry_of(tmp_path, name: str):
    """A split of its own (64 to 67 rows of 64x64x3 uint8: about 800 KB) through the cache."""
    data = _images(tmp_path / name, 64 + "abcd".index(name))  # other images, another entry
    split = open_folder(data, modality="image")["train"]
    pre = ImagePreprocessing(size=(64, 64), resize=64)
    samples, _ = cached_split(split, pre)
    return split, pre, samples


def _age(entry: Path, seconds: float) -> None:
    for f in entry.iterdir():
        t = os.stat(f).st_mtime - seconds
        os.utime(f, (t, t))


def _two_old_entries(tmp_path, monkeypatch):
    """Entries a and b in a cache of their own, a used longest ago, neither in use by this
    process (as a later run finds them): (a's split and preprocessing, a, b, the store,
    a's size on disk)."""
    from edgetl.data import sample_cache

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sample_cache, "IN_USE", set())
    split_a, pre, a = _entry_of(tmp_path, "a")
    _, _, b = _entry_of(tmp_path, "b")
    store = sample_cache.store()
    _age(store / a.key, 200), _age(store / b.key, 100)
    sample_cache.IN_USE.clear()
    return split_a, pre, a, b, store, sum(f.stat().st_size for f in (store / a.key).iterdir())


def test_the_store_stays_under_its_bound_by_removing_the_entries_used_longest_ago(tmp_path, monkeypatch, caplog):
    from edgetl.data import sample_cache

    split_a, pre, a, b, store, size = _two_old_entries(tmp_path, monkeypatch)
    hits = []
    cached_split(split_a, pre, on_hit=hits.append)  # a used again: b is now the one used longest ago
    sample_cache.IN_USE.clear()
    monkeypatch.setenv("EDGETL_CACHE_MAX_GB", str(2.5 * size / 1e9))
    _, _, c = _entry_of(tmp_path, "c")
    assert hits and sorted(p.name for p in store.iterdir()) == sorted([a.key, c.key])
    # entries this process has open (c) are never removed, even past the bound: it says so
    monkeypatch.setenv("EDGETL_CACHE_MAX_GB", str(0.5 * size / 1e9))
    _, _, d = _entry_of(tmp_path, "d")
    assert sorted(p.name for p in store.iterdir()) == sorted([c.key, d.key])
    assert "over its bound" in caplog.text and "EDGETL_CACHE_MAX_GB" in caplog.text


def test_an_entry_removed_by_another_process_stays_readable_to_a_reader(tmp_path, monkeypatch):
    import shutil

    from edgetl.data import sample_cache

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    split, pre, samples = _entry_of(tmp_path, "a")
    before = samples[:]
    shutil.rmtree(sample_cache.store() / samples.key)
    assert not (sample_cache.store() / samples.key).exists()
    assert np.array_equal(samples[::-1], before[::-1]) and np.array_equal(samples.with_extra(before[:2])[-2:], before[:2])
    again, _ = cached_split(split, pre)  # the next run decodes it again
    assert np.array_equal(again[:], before) and (sample_cache.store() / samples.key).is_dir()


def test_writes_in_progress_stay_and_those_a_dead_process_left_go(tmp_path, monkeypatch):
    from edgetl.core.disk_cache import STALE_SECONDS
    from edgetl.data import sample_cache

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sample_cache, "IN_USE", set())
    store = sample_cache.store()
    for name, age in ((".deadkey.x1", STALE_SECONDS + 60), (".livekey.x2", 1)):
        (store / name).mkdir(parents=True)
        (store / name / "samples.npy").write_bytes(b"\0" * 1000)
        _age(store / name, age)
    monkeypatch.setenv("EDGETL_CACHE_MAX_GB", "0")
    _, _, a = _entry_of(tmp_path, "a")
    assert sorted(p.name for p in store.iterdir()) == sorted([".livekey.x2", a.key])


def test_cache_command_lists_each_kind_and_clears_what_it_is_asked_to(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgetl.cli import cli
    from edgetl.data import sample_cache

    cache = tmp_path / "cache"
    monkeypatch.setenv("EDGETL_CACHE_DIR", str(cache))
    _, _, a = _entry_of(tmp_path, "a")
    _, _, b = _entry_of(tmp_path, "b")
    _age(sample_cache.store() / a.key, 3 * 86400)
    (cache / "checkpoints" / "run1").mkdir(parents=True)
    (cache / "checkpoints" / "run1" / "last.pt").write_bytes(b"\0" * 5000)
    shown = json.loads(CliRunner().invoke(cli, ["cache", "--json"]).output)
    assert shown["folder"] == str(cache) and shown["kinds"]["samples"]["entries"] == 2 and shown["disk_free_bytes"] > 0
    assert shown["kinds"]["samples"]["bytes"] > 2 * 64 * 64 * 64 * 3 and shown["kinds"]["checkpoints"]["bytes"] == 5000
    result = CliRunner().invoke(cli, ["cache", "clear", "--kind", "samples", "--older-than", "1"])
    assert result.exit_code == 0 and "removed 1 entries (samples 1)" in result.output, result.output
    assert sorted(p.name for p in sample_cache.store().iterdir()) == [b.key]
    result = CliRunner().invoke(cli, ["cache", "clear"])  # digests: two class folders in each of a and b
    assert result.exit_code == 0 and "samples 1, checkpoints 1, engines 0, digests 4, listings 0" in result.output, result.output
    assert list(sample_cache.store().iterdir()) == [] and list((cache / "checkpoints").iterdir()) == []
    table = CliRunner().invoke(cli, ["cache"])
    assert table.exit_code == 0 and "samples" in table.output and "EDGETL_CACHE_MAX_GB" in table.output


def test_a_bound_that_is_no_number_is_one_line_and_exit_code_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgetl.cli import cli

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGETL_CACHE_MAX_GB", "lots")
    result = CliRunner().invoke(cli, ["cache"])
    assert result.exit_code == 2 and "EDGETL_CACHE_MAX_GB must be a number" in result.output
    assert "Traceback" not in result.output


def test_a_files_content_is_read_once_while_it_is_unchanged(tmp_path, monkeypatch):
    """Every command keys a split by its files' content; unchanged files are not read
    again, and a write is seen even when it keeps the size and puts the mtime back."""
    from edgetl.data import file_digests

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(file_digests, "RACY_SECONDS", 0.0)  # files made a moment ago count as settled
    data = _images(tmp_path / "d", 12)
    split = open_folder(data, modality="image")["train"]
    pre = ImagePreprocessing(size=(32, 32), resize=36)
    read = []
    real = file_digests.file_digest
    monkeypatch.setattr(file_digests, "file_digest", lambda p: read.append(Path(p).name) or real(p))
    key = split_key(split.paths, pre)
    assert len(read) == 12
    read.clear()
    assert split_key(split.paths, pre) == key and read == []
    edited = split.paths[3]
    st = os.stat(edited)
    pixels = np.asarray(Image.open(edited)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(edited)
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))  # the modification time put back
    assert os.stat(edited).st_mtime_ns == st.st_mtime_ns
    new_key = split_key(split.paths, pre)
    assert read == [Path(edited).name] and new_key != key
    moved = tmp_path / "moved"
    os.rename(data, moved)  # a moved copy: read again once, the same entry
    read.clear()
    assert split_key(open_folder(moved, modality="image")["train"].paths, pre) == new_key and len(read) == 12


def test_a_file_changed_a_moment_ago_is_read_again(tmp_path, monkeypatch):
    """Within RACY_SECONDS of a change, a file's stat may not show a second change in the
    same tick of a coarse clock: its digest is not trusted yet."""
    from edgetl.data import file_digests

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(file_digests, "RACY_SECONDS", 3600.0)
    paths = sorted((_images(tmp_path / "d", 4) / "train").rglob("*.png"))
    read = []
    real = file_digests.file_digest
    monkeypatch.setattr(file_digests, "file_digest", lambda p: read.append(p) or real(p))
    first = file_digests.digests(paths)
    second = file_digests.digests(paths)
    assert first == second and len(read) == 8
    monkeypatch.setattr(file_digests, "RACY_SECONDS", 0.0)
    file_digests.digests(paths)
    read.clear()
    assert file_digests.digests(paths) == first and read == []


def test_a_disk_short_of_room_makes_room_under_the_bound_and_says_so(tmp_path, monkeypatch, caplog):
    """The bound is 20 GB by default, but a disk may have less free: entries used longest
    ago are removed until the new one fits with RESERVE_BYTES left, and the warning names
    the disk, not the bound, when even that is not enough."""
    from edgetl.core import disk_cache

    _, _, a, b, store, size = _two_old_entries(tmp_path, monkeypatch)
    monkeypatch.setattr(disk_cache, "RESERVE_BYTES", 0)
    monkeypatch.setattr(disk_cache, "free_bytes", lambda folder: int(0.5 * size))  # room for half an entry
    _, _, c = _entry_of(tmp_path, "c")  # a goes (used longest ago): then c fits beside b
    assert sorted(p.name for p in store.iterdir()) == sorted([b.key, c.key])
    assert "over its bound" not in caplog.text and "on the disk" not in caplog.text
    monkeypatch.setattr(disk_cache, "free_bytes", lambda folder: 0)
    _entry_of(tmp_path, "d")  # c is this process's: nothing else to remove
    assert "on the disk that holds the sample cache" in caplog.text and "EDGETL_CACHE_DIR" in caplog.text


@pytest.mark.parametrize("env, args, named", [
    ({"EDGETL_CACHE_MAX_GB": "inf"}, ["cache"], "EDGETL_CACHE_MAX_GB must be a number"),
    ({"EDGETL_CACHE_MAX_GB": "1e400"}, ["cache"], "EDGETL_CACHE_MAX_GB must be a number"),
    ({"EDGETL_CACHE_MAX_GB": "nan"}, ["cache"], "EDGETL_CACHE_MAX_GB must be a number"),
    ({}, ["cache", "clear", "--older-than", "nan"], "--older-than takes a number of days"),
])
def test_cache_bounds_that_are_not_numbers_are_one_line(env, args, named, tmp_path, monkeypatch):
    """An infinite or NaN bound would crash the store or silently remove nothing."""
    from click.testing import CliRunner

    from edgetl.cli import cli

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and named in result.output and "Traceback" not in result.output, result.output


def _corrupt(entry: Path, how: str) -> None:
    samples, meta_path = entry / "samples.npy", entry / "meta.json"
    meta = json.loads(meta_path.read_text())
    if how == "random bytes":  # the same size, other bytes after the header
        data = bytearray(samples.read_bytes())
        data[128:] = np.random.default_rng(0).integers(0, 256, len(data) - 128, dtype=np.uint8).tobytes()
        samples.write_bytes(bytes(data))
    elif how == "truncated":
        samples.write_bytes(samples.read_bytes()[:len(samples.read_bytes()) // 2])
    elif how == "missing array":
        samples.unlink()
    elif how == "row count":
        meta["rows"] -= 1
    elif how == "kept list":
        meta["keep"] = meta["keep"][:-1]
    elif how == "foreign version":
        meta["edgetl"] = "0.0.1"
    elif how == "not json":
        meta_path.write_text("{ not json")
    if how in ("row count", "kept list", "foreign version"):
        meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["random bytes", "truncated", "missing array", "row count", "kept list",
                                 "foreign version", "not json"])
def test_a_damaged_cache_entry_is_named_removed_and_never_changes_a_figure(how, tiny_run, tiny_digits, tmp_path,
                                                                           monkeypatch, caplog):
    from edgetl.evaluate.accuracy import evaluate

    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path / "cache"))
    cold = evaluate(tiny_run, tiny_digits, split="val", threads=1)
    entries = [p for p in (tmp_path / "cache" / "samples").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1
    _corrupt(entries[0], how)
    with caplog.at_level("WARNING", logger="edgetl"):
        again = evaluate(tiny_run, tiny_digits, split="val", threads=1)
    assert (again.accuracy, again.confusion) == (cold.accuracy, cold.confusion)
    assert str(entries[0]) in caplog.text and "made again" in caplog.text
    assert (entries[0] / "meta.json").is_file()  # made again, whole
    caplog.clear()
    with caplog.at_level("WARNING", logger="edgetl"):
        evaluate(tiny_run, tiny_digits, split="val", threads=1)
    assert "made again" not in caplog.text  # the new entry is good
