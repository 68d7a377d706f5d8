"""One writer per run folder: ``<run>/run.lock`` names the process that is fitting the run.

The lock file is created exclusively (``O_CREAT | O_EXCL``) and holds JSON: pid, host, start
time, the process's kernel start time (to tell a reused pid from its owner) and the cluster job
id (``SLURM_JOB_ID``) when there is one. It is removed when the fit ends, whatever the outcome;
a process killed with SIGKILL leaves it behind, so a lock is *stale*, and taken over with a
warning, when

* its process is gone (same host, pid not running, or running but started at another time), or
* it belongs to an earlier incarnation of this same cluster job (a requeued job keeps its job
  id and may land on another host, where the pid cannot be checked).

Any other lock is *held*: the second ``dmtrec fit`` refuses with one line naming the holder.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
JOB_ID_ENV = "SLURM_JOB_ID"
# A lock file that cannot be parsed is one being written right now, unless it is older than this.
_UNREADABLE_GRACE_S = 30.0


class RunFolderBusy(ValueError):
    """Another live process holds the run folder's lock (one-line message naming it)."""


def _process_start(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (field 22 of /proc/<pid>/stat), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return stat.rsplit(")", 1)[-1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def current_holder() -> Dict[str, Any]:
    """The lock record of this process."""
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "process_start": _process_start(pid),
        "job": os.environ.get(JOB_ID_ENV),
    }


def describe(holder: Optional[Dict[str, Any]]) -> str:
    if not holder:
        return "an unknown process (unreadable lock file)"
    text = f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
    return text + (f" (job {holder['job']})" if holder.get("job") else "")


def stale_reason(holder: Optional[Dict[str, Any]], lock_age_s: float) -> Optional[str]:
    """Why the lock of ``holder`` no longer protects anything, or None when its owner may be alive."""
    me = current_holder()
    if holder is None:
        return "unreadable lock file" if lock_age_s > _UNREADABLE_GRACE_S else None
    if holder.get("job") and holder.get("job") == me["job"] and holder.get("pid") != me["pid"]:
        return f"an earlier incarnation of job {me['job']} (requeued)"
    if holder.get("host") != me["host"]:
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return "lock file without a pid"
    if pid == me["pid"]:
        return "left by this process"
    if not _pid_alive(pid):
        return f"process {pid} is gone"
    started = holder.get("process_start")
    if started is not None and _process_start(pid) not in (None, started):
        return f"pid {pid} now belongs to another process"
    return None


def _read(path: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class RunLock:
    """A held lock; :meth:`release` removes the file (only if it is still this process's)."""

    path: Path
    holder: Dict[str, Any]
    # The record of the stale lock this one replaced (None when the folder was free).
    took_over: Optional[Dict[str, Any]] = None

    def release(self) -> None:
        current = _read(self.path)
        if (
            current is not None
            and current.get("pid") == self.holder["pid"]
            and current.get("host") == self.holder["host"]
        ):
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def acquire(folder: Path) -> RunLock:
    """Take the lock of ``folder`` (which must exist).

    Raises:
        RunFolderBusy: a live process holds it.
        OSError: the folder is not writable (read-only file system, permissions, no space).
    """
    path = Path(folder) / LOCK_NAME
    took_over = None
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            reason = stale_reason(holder, age)
            if reason is None:
                raise RunFolderBusy(
                    f"{folder}: run folder in use by {describe(holder)}; wait for it to end or choose another "
                    f"--run.name (if that process is gone, delete {path})"
                ) from None
            log.warning("%s: taking over the lock of %s (%s)", folder, describe(holder), reason)
            took_over = holder or {}
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        holder = current_holder()
        try:
            os.write(fd, (json.dumps(holder) + "\n").encode())
            os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink()
            raise
        os.close(fd)
        return RunLock(path=path, holder=holder, took_over=took_over)
    raise RunFolderBusy(f"{folder}: could not take the run folder's lock ({path} keeps reappearing)")
