"""Thread policy of the ``dmtrec`` command on shared machines.

torch's CPU kernels run on OpenMP (GNU libgomp on Linux). Each thread of a parallel region that
finishes early spins, waiting for the next region, for up to ``GOMP_SPINCOUNT`` iterations
(libgomp's default with ``OMP_WAIT_POLICY`` unset: 300,000, about 0.1-1 ms) before it sleeps.
When more threads want to run than there are free cores, the spinning threads take the cores
the working ones need: a region ends only when its slowest thread does, so every region waits
for a thread that was preempted by a spinner (issue 28: ``dmtrec lod`` on Spot at 7 s per step
with torch's default two threads beside two one-thread jobs on two cores, 0.4 s with one thread).

The policy, applied by the ``dmtrec`` command before torch loads (libgomp reads its settings
once, when it loads):

- threads: the cores this process may use (``os.sched_getaffinity``), whatever the load. A fit's
  floats depend on its thread count (reductions split per thread), so a count read off the load
  at start would make the same command give different results on a busy and an idle machine.
- ``OMP_WAIT_POLICY=PASSIVE``: threads that wait sleep at once instead of spinning. This alone
  removes the collapse: ``lod`` on Spot at load 10-14, two threads, went from 6.1 s per step
  spinning to 0.19-0.34 s sleeping, and two such jobs at once ran at 0.08-0.24 s per step each
  (the measurements are in the README's "Threads on a shared machine").

A user who sets ``OMP_NUM_THREADS`` (or ``DMTREC_THREADS``, which sets it) chooses for
themselves: the thread count is theirs, and ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` are only
ever set when unset. ``DMTREC_THREADS=all`` keeps torch's own default (every core) and wait
policy.
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping, NamedTuple, Optional


class ThreadChoice(NamedTuple):
    """What :func:`apply_thread_policy` decided: ``threads`` (None: torch's default), the
    ``reason`` in words (for the log), and whether the policy chose (False: the user did)."""

    threads: Optional[int]
    reason: str
    chosen: bool


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def apply_thread_policy(environ: MutableMapping[str, str] = os.environ) -> ThreadChoice:
    """Choose the thread count and wait policy of this process (see the module docstring).

    Sets ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY`` in ``environ`` (inherited by subprocesses);
    effective for torch only when called before torch is imported, which is when the ``dmtrec``
    command calls it. With torch already imported nothing is changed.
    """
    if "torch" in sys.modules:
        return ThreadChoice(None, "torch was already imported: its threads are left as they are", False)
    explicit = environ.get("DMTREC_THREADS", "").strip().lower()
    if explicit == "all":
        return ThreadChoice(None, "DMTREC_THREADS=all: torch's default threads and wait policy", False)
    if explicit:
        if not explicit.isdigit() or int(explicit) < 1:
            raise ValueError(f"DMTREC_THREADS: a positive integer or 'all', got {explicit!r}")
        environ["OMP_NUM_THREADS"] = explicit
    if "OMP_NUM_THREADS" in environ:
        value = environ["OMP_NUM_THREADS"]
        threads = int(value) if value.isdigit() else None
        return ThreadChoice(threads, f"{threads or value} threads as OMP_NUM_THREADS says", False)
    threads = usable_cores()
    environ["OMP_NUM_THREADS"] = str(threads)
    if "GOMP_SPINCOUNT" not in environ:
        environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    reason = f"{threads} (every usable core; waiting threads sleep); set OMP_NUM_THREADS or DMTREC_THREADS to choose"
    return ThreadChoice(threads, reason, True)


__all__ = ["ThreadChoice", "apply_thread_policy", "usable_cores"]
