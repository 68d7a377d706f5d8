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
- the wait: when another ``dmtrec`` job is running (the job register, below) or other processes
  are running at start (:func:`others_running`: the runnable
  processes of ``/proc/loadavg`` now, less this one, the median of a few reads) and they and this
  job's threads want more cores than there are, ``OMP_WAIT_POLICY=PASSIVE``: threads that wait
  sleep at once instead of spinning. Otherwise libgomp's spinning stays: on an idle machine it is
  what makes two threads pay (a Spot texture bake step on the idle 2-core machine: 0.26 s
  spinning, 0.42 s sleeping), and with others running it is what collapses (two such bakes at
  once: 2.7-2.8 s per step each spinning, 0.39 s sleeping; README "Threads on a shared machine").
  The instantaneous count, not the 1-minute load average: that one lags (two jobs launched
  together both see an idle machine) and remembers finished work (``pip install && dmtrec fit``
  would start sleeping). The wait policy does not change any float: only the thread count does.

Jobs launched at the same moment both see an idle ``/proc/loadavg`` (the other is still starting
Python), so every ``dmtrec`` process also announces itself in a job register (:func:`register_job`:
one file per process in ``$TMPDIR/dmtrec-jobs-<uid>``, removed at exit; files of dead processes
are ignored and removed), waits :data:`SETTLE_S` for others launched with it to do the same, and
sleeps its waiting threads when another live ``dmtrec`` job is registered. A job that starts on
an idle machine keeps spinning when others start later (libgomp reads the policy only once);
those others sleep, which halves the collapse but does not remove it. Set
``OMP_WAIT_POLICY=PASSIVE`` yourself for jobs meant to share cores with non-``dmtrec`` work.

A user who sets ``OMP_NUM_THREADS`` (or ``DMTREC_THREADS``, which sets it) chooses for
themselves: the thread count is theirs, and ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` are only
ever set when unset. ``DMTREC_THREADS=all`` keeps torch's own default (every core) and wait
policy.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import MutableMapping, NamedTuple, Optional

# Seconds a new job waits, after announcing itself, for jobs launched with it to announce themselves
# (their interpreters start within a few tens of milliseconds of each other); small next to
# torch's own import.
SETTLE_S = 0.15


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
        register_job(jobs_directory(environ))  # others must know this job is here
        value = environ["OMP_NUM_THREADS"]
        threads = int(value) if value.isdigit() else None
        return ThreadChoice(threads, f"{threads or value} threads as OMP_NUM_THREADS says", False)
    threads = usable_cores()
    environ["OMP_NUM_THREADS"] = str(threads)
    directory = jobs_directory(environ)
    register_job(directory)
    time.sleep(SETTLE_S)
    jobs = other_jobs(directory)
    others = others_running()
    busy = jobs > 0 or threads + others > usable_cores()
    if busy and "GOMP_SPINCOUNT" not in environ:
        environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if jobs:
        wait = f"{jobs} other dmtrec job{'s' if jobs > 1 else ''} running: waiting threads sleep"
    elif busy:
        wait = f"{others} other processes running: waiting threads sleep"
    else:
        wait = "idle machine: libgomp's spin-wait"
    reason = f"{threads} (every usable core; {wait}); set OMP_NUM_THREADS or DMTREC_THREADS to choose"
    return ThreadChoice(threads, reason, True)


def others_running(reads: int = 5, interval: float = 0.01) -> int:
    """Processes other than this one runnable now: the median of ``reads`` reads of the running
    count in ``/proc/loadavg`` (fourth field, ``running/total``), less one; 0 where it is missing."""
    counts = []
    for i in range(reads):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, IndexError, ValueError):
            return 0
        if i + 1 < reads:
            time.sleep(interval)
    return max(0, sorted(counts)[len(counts) // 2])


def jobs_directory(environ: MutableMapping[str, str] = os.environ) -> Path:
    """The job register: ``DMTREC_JOBS_DIR``, else ``<tempdir>/dmtrec-jobs-<uid>`` (one per user:
    other users' jobs are beyond this user's control, their load shows in ``/proc/loadavg``)."""
    if environ.get("DMTREC_JOBS_DIR"):
        return Path(environ["DMTREC_JOBS_DIR"])
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"dmtrec-jobs-{uid}"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), which
    tells a reused pid from the registered process; '' where ``/proc`` is missing."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def register_job(directory: Path) -> Optional[Path]:
    """Announce this process in the job register (a file named by its pid holding its start time),
    removed when the interpreter exits. None where the register cannot be written (then this job is
    invisible to others, and others' policy falls back on ``/proc/loadavg``)."""
    pid = os.getpid()
    path = directory / str(pid)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a job reading a half-written file would take it for a stale one.
        partial = directory / f".{pid}.partial"
        partial.write_text(_start_time(pid))
        os.replace(partial, path)
    except OSError:
        return None
    atexit.register(_unregister, path)
    return path


def _unregister(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def other_jobs(directory: Path) -> int:
    """Live ``dmtrec`` processes in the register other than this one. A file whose process is
    gone (killed before it could remove it) or whose pid now belongs to another process is
    removed."""
    try:
        names = [entry.name for entry in directory.iterdir()]
    except OSError:
        return 0
    count = 0
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        path = directory / name
        try:
            started = path.read_text().strip()
        except OSError:
            continue
        if _alive(int(name)) and started == _start_time(int(name)):
            count += 1
        else:
            _unregister(path)
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "SETTLE_S",
    "ThreadChoice",
    "apply_thread_policy",
    "jobs_directory",
    "other_jobs",
    "others_running",
    "register_job",
    "usable_cores",
]
