"""The allocator keeps what a batch frees (core/allocator.py): the next batch's buffers are
not faulted in again page by page. Counted in page faults, not timed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# In a fresh process: import edgetl (which applies the setting), then a loop of what every
# stage does per batch: a buffer the size of EfficientNet-Lite0's first activation for a
# batch of 32 at 224 px (32 x 32 x 112 x 112 float32, 51 MB: above the 32 MB up to which
# glibc's own threshold adapts) made, written, freed.
LOOP = """
import json, resource
import numpy as np
import edgetl
from edgetl.core.allocator import keep_freed_memory

def batch():
    x = np.empty((32, 32, 112, 112), np.float32)
    x.fill(1.0)
    return float(x[0, 0, 0, 0])

batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"faults_per_batch": (after - before) / 20, "applied": keep_freed_memory()}))
"""
PAGES_PER_BATCH = 32 * 32 * 112 * 112 * 4 // 4096


def _faults(choice: str | None) -> dict:  # None: the default
    env = {k: v for k, v in os.environ.items() if k != "EDGETL_MALLOC"}
    if choice:
        env["EDGETL_MALLOC"] = choice
    done = subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's")
def test_a_batch_reuses_the_memory_the_last_one_freed():
    kept, system = _faults("keep"), _faults(None)
    assert kept["applied"]["allocator"] == "glibc, freed memory kept" and system["applied"]["allocator"] == \
        "system default"
    # glibc's default maps and unmaps the buffer each batch: every page (or, with transparent
    # huge pages, every 2 MB) faulted in again; kept, the pages are reused
    assert system["faults_per_batch"] >= PAGES_PER_BATCH / 512
    assert kept["faults_per_batch"] < max(1.0, system["faults_per_batch"] / 20)


def test_an_unknown_allocator_choice_is_named_and_the_default_kept():
    env = {**os.environ, "EDGETL_MALLOC": "jemalloc"}
    done = subprocess.run([sys.executable, "-c", "import edgetl"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "EDGETL_MALLOC=jemalloc is not one of keep, system" in done.stderr
    assert "glibc's defaults" in done.stderr
