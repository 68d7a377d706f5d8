"""The user cache folder for things dmtrec computes once and reuses (tet grids, the DFG table)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$DMTREC_CACHE`` or ``~/.cache/dmtrec`` (read on every call so tests can redirect it)."""
    return Path(os.environ.get("DMTREC_CACHE") or Path.home() / ".cache" / "dmtrec")
