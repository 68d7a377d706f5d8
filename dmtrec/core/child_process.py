"""A Python script in a time-limited child process, for libraries that can hang or crash.

xatlas (:mod:`dmtrec.geometry.uv_unwrap`) and MeshLab's texture-preserving decimation (the
benchmark's anchor, ``experiments/benchmarks/meshlab_anchor.py``) can run for many minutes or
segfault on some meshes; in a child process neither can take the caller down.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence


class ChildRunError(RuntimeError):
    """The child timed out, crashed or exited with an error (the message says which)."""


def run_python(
    script: Path, args: Sequence[str], timeout_s: float, what: str, error: type = ChildRunError
) -> subprocess.CompletedProcess:
    """Run ``python script *args`` and return the finished process (exit status 0).

    Raises ``error`` (a :class:`RuntimeError` subclass) with a one-line reason naming ``what``:
    a timeout after ``timeout_s`` seconds, a crash (the signal's name) or a non-zero exit status
    (with the last line of the child's stderr).
    """
    try:
        proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise error(f"{what} timed out after {timeout_s:g} s") from None
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise error(f"{what} crashed ({name})")
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise error(f"{what} failed with exit status {proc.returncode}: {tail[0][:200]}")
    return proc
