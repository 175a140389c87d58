"""Where edgetl keeps what it may recompute: EDGETL_CACHE_DIR, else
$XDG_CACHE_HOME/edgetl or ~/.cache/edgetl (the backbone listing, decoded samples,
a linear probe's features)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("EDGETL_CACHE_DIR"):
        return Path(os.environ["EDGETL_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgetl"
