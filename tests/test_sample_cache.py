"""The decoded-sample cache on disk: memory that does not grow with the data set, entries
reused by later runs, keyed by the files' content, unreadable files still named."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
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
