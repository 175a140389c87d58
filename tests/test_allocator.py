"""How a batch's freed buffers come back (core/allocator.py): not faulted in again 4 KiB at a
time. Counted in page faults, not timed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgetl.core.allocator import transparent_huge_pages

# In a fresh process: import edgetl (which applies the choice) before torch, then a loop of
# what every stage does per batch: a buffer the size of EfficientNet-Lite0's first
# activation for a batch of 32 at 224 px (32 x 32 x 112 x 112 float32, 51 MB: above the
# 32 MB up to which glibc's own threshold adapts) made, written, freed, as a torch tensor
# and as a numpy array.
LOOP = """
import json, resource, sys
import edgetl
import numpy as np
import torch
from edgetl.core.allocator import configure_allocator

SHAPE = (32, 32, 112, 112)
make = {"torch": lambda: torch.empty(SHAPE).fill_(1.0), "numpy": lambda: np.full(SHAPE, 1.0, np.float32)}[sys.argv[1]]

def batch():
    return float(make()[0, 0, 0, 0])

batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"faults_per_batch": (after - before) / 20, "applied": configure_allocator()}))
"""
PAGES_PER_BATCH = 32 * 32 * 112 * 112 * 4 // 4096
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the settings are Linux's and glibc's")


def _faults(choice: str | None, kind: str = "numpy") -> dict:  # None: the default
    env = {k: v for k, v in os.environ.items() if k not in ("EDGETL_MALLOC", "THP_MEM_ALLOC_ENABLE")}
    if choice:
        env["EDGETL_MALLOC"] = choice
    done = subprocess.run([sys.executable, "-c", LOOP, kind], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@linux_only
def test_kept_a_batch_reuses_the_memory_the_last_one_freed():
    kept, system = _faults("keep"), _faults("system")
    assert kept["applied"]["allocator"] == "glibc, freed memory kept" and system["applied"]["allocator"] == \
        "system default"
    # glibc's default maps and unmaps the buffer each batch: every page (or, with transparent
    # huge pages, every 2 MB) faulted in again; kept, the pages are reused
    assert system["faults_per_batch"] >= PAGES_PER_BATCH / 512
    assert kept["faults_per_batch"] < max(1.0, system["faults_per_batch"] / 20)


@linux_only
@pytest.mark.skipif(transparent_huge_pages() not in ("always", "madvise"), reason="the kernel offers no huge pages")
def test_by_default_torch_tensors_fault_in_2_mb_at_a_time():
    default, system = _faults(None, "torch"), _faults("system", "torch")
    assert default["applied"]["transparent_huge_pages"] == transparent_huge_pages()
    # one fault per whole 2 MB, 4 KiB pages only at the buffer's two unaligned ends
    assert default["faults_per_batch"] <= PAGES_PER_BATCH / 512 + 2 * 511 + 8
    if transparent_huge_pages() == "madvise":  # huge pages only where asked for: the system's default is 4 KiB
        assert system["applied"]["allocator"] == "system default"
        assert system["faults_per_batch"] >= PAGES_PER_BATCH / 2


def test_an_unknown_allocator_choice_is_named_and_the_default_kept():
    env = {**os.environ, "EDGETL_MALLOC": "jemalloc"}
    done = subprocess.run([sys.executable, "-c", "import edgetl"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "EDGETL_MALLOC=jemalloc is not one of hugepages, keep, system" in done.stderr
    assert "hugepages (the default)" in done.stderr


@linux_only
def test_torch_imported_first_is_said_not_pretended():
    code = ("import os, json; os.environ.pop('THP_MEM_ALLOC_ENABLE', None); import torch, edgetl; "
            "from edgetl.core.allocator import configure_allocator; print(json.dumps(configure_allocator()))")
    env = {k: v for k, v in os.environ.items() if k not in ("EDGETL_MALLOC", "THP_MEM_ALLOC_ENABLE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"allocator": "system default"}


@linux_only
@pytest.mark.skipif(transparent_huge_pages() != "madvise", reason="huge pages only where asked for: the comparison")
def test_a_probe_faults_its_batches_in_2_mb_at_a_time(tiny_digits, tmp_path):
    """A real probe at 160 px in a subprocess: the page faults that each further training
    image costs (the same probe on the set and on the set with its training images twice),
    by default against glibc's and torch's own settings."""
    import shutil

    bigger = tmp_path / "twice"
    shutil.copytree(tiny_digits, bigger)
    extra = list((bigger / "train").rglob("*.png"))
    for image in extra:
        shutil.copy(image, image.with_name("again-" + image.name))

    def faults(data, choice: str) -> int:
        env = {k: v for k, v in os.environ.items() if k not in ("EDGETL_MALLOC", "THP_MEM_ALLOC_ENABLE")}
        env.update(EDGETL_MALLOC=choice, EDGETL_CACHE_DIR=str(tmp_path / f"cache-{choice}-{data.name}"))
        child = subprocess.Popen([sys.executable, "-m", "edgetl", "-q", "finetune", str(data), "--backbone",
                                  "efficientnet_lite0", "--strategy", "linear-probe", "--input-size", "160",
                                  "--batch-size", "32", "--threads", "1", "--out", str(tmp_path / f"{choice}-{data.name}")],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, child.stderr.read()
        return usage.ru_minflt

    per_image = {choice: (faults(bigger, choice) - faults(tiny_digits, choice)) / len(extra)
                 for choice in ("system", "hugepages")}
    # each image's activations, 4 KiB at a time, against 2 MB at a time (and the ends of each buffer)
    assert per_image["hugepages"] < per_image["system"] / 8, per_image
