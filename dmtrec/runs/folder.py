"""The run folder: where a run writes everything, and the identity that lets it resume.

A run is named by ``run.name`` (default: the stem of the first ``-c`` config file). Its folder
``<run.output_root>/<name>`` holds ``config.yaml``, ``checkpoints/``, the wandb offline run,
validation grids and the exported mesh. The wandb run id is derived from the folder once and
stored in it (``wandb_id``), so a restart with ``--ckpt_path last`` logs into the same wandb run
and finds the same ``last.ckpt``.

:func:`start_fit` is how ``dmtrec fit`` opens the folder: it takes the folder's lock
(:mod:`dmtrec.runs.lock`), refuses to train over a previous run unless told to resume
(``--ckpt_path last``) or to start again (``run.overwrite``), resolves ``last`` to a checkpoint
that loads (:func:`dmtrec.runs.checkpoints.resume_checkpoint`) and turns file-system errors
into one line. A start that fails before training removes the folder it created.
``dmtrec lod`` opens its folder the same way; both go through :class:`dmtrec.runs.trainer.RunSession`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytorch_lightning as pl

from .checkpoints import resume_checkpoint
from .lock import LOCK_NAME, RunLock, acquire

log = logging.getLogger(__name__)

WANDB_MODES = ("offline", "online", "disabled")
# What a fit leaves in its folder; any of them means the name is taken.
FIT_MARKERS = ("config.yaml", "metrics.json", "checkpoints")
# Set by SLURM in a requeued job (1, 2, ... for the second, third, ... incarnation).
RESTART_COUNT_ENV = "SLURM_RESTART_COUNT"


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (exists, not writable); one line."""


@dataclass
class RunConfig:
    """Top-level ``run:`` section of an experiment config.

    Args:
        name: run name; the output folder is ``output_root/name``. Default: the first config
            file's stem, or "dmtrec".
        output_root: parent folder of run folders (relative paths are relative to the
            current directory).
        wandb: "offline" (default: nothing leaves the machine; `wandb sync` later),
            "online" or "disabled" (no wandb at all; a CSV log instead).
        project: wandb project name.
        checkpoint_every: save ``checkpoints/last.ckpt`` every this many iterations.
        export_frame: frame of the exported ``mesh/mesh.obj``: "dataset" (default: the input
            cameras' world frame, so the mesh overlays them) or "training" (the Y-up frame a
            Z-up NeRF-synthetic scene is turned into). ``mesh.glb`` is Y-up as glTF requires.
        overwrite: ``dmtrec fit`` without ``--ckpt_path`` on a name that already has a run
            deletes that run's folder and starts again (default: refuse).
    """

    name: Optional[str] = None
    output_root: str = "outputs"
    wandb: str = "offline"
    project: str = "dmtrec"
    checkpoint_every: int = 100
    export_frame: str = "dataset"
    overwrite: bool = False


@dataclass
class RunPaths:
    """Resolved identity and folders of one run."""

    name: str
    root: Path
    wandb_id: str

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"


def _slug(text: str) -> str:
    """ASCII letters, digits, ``_.-``: what a wandb run id may hold."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "run"


# A run folder name keeps Unicode letters and digits (``\w``), ``.`` and ``-``. '@' never
# survives that cleaning, so a mapped name (``readable@digest``) never equals a kept one.
_FOLDER_UNSAFE = re.compile(r"[^\w.-]+")
_FOLDER_MAX_BYTES = 160  # well under the 255 bytes most file systems allow, digest included


def run_folder_name(name: str) -> str:
    """The folder a run named ``name`` lives in: ``name`` itself when it is a safe file name on
    this file system (any script: ``试验一`` stays ``试验一``), else a readable form plus a digest
    of the original (``my run`` -> ``my-run@1a2b3c4d``), so that two different names never share
    a folder. ``metrics.json`` records both (``run_name``, ``run_folder``)."""
    kept = _FOLDER_UNSAFE.sub("-", name).strip("-.")
    if kept == name and _fits_file_system(name):
        return name
    readable = kept if _fits_file_system(kept) else _slug(unicodedata.normalize("NFKD", name))
    while len(readable.encode("utf-8")) > _FOLDER_MAX_BYTES:
        readable = readable[:-1]
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{readable.strip('-.') or 'run'}@{digest}"


def _fits_file_system(name: str) -> bool:
    if not name or len(name.encode("utf-8", "surrogatepass")) > _FOLDER_MAX_BYTES:
        return False
    try:
        name.encode(sys.getfilesystemencoding())
    except UnicodeEncodeError:
        return False
    return True


def plan_run(config: RunConfig, config_file: Optional[str] = None) -> RunPaths:
    """The run's name and folder, checked, without touching the file system; ``wandb_id`` is
    the one stored in the folder or "" for a run not started yet.

    Raises:
        ValueError: unknown ``run.wandb`` mode or ``run.checkpoint_every`` < 1.
    """
    if config.wandb not in WANDB_MODES:
        raise ValueError(f"run.wandb: unknown mode {config.wandb!r}; choose one of {', '.join(WANDB_MODES)}")
    if isinstance(config.checkpoint_every, bool) or config.checkpoint_every < 1:
        raise ValueError(f"run.checkpoint_every: must be >= 1, got {config.checkpoint_every!r}")
    name = config.name or (Path(config_file).stem if config_file else "dmtrec")
    root = Path(config.output_root).expanduser() / run_folder_name(name)
    id_file = root / "wandb_id"
    wandb_id = id_file.read_text().strip() if id_file.is_file() else ""
    return RunPaths(name=name, root=root, wandb_id=wandb_id)


def _ensure_wandb_id(paths: RunPaths) -> RunPaths:
    """Create the folder's wandb id if it has none: the name plus a digest of the folder and the
    time, so that a run started again under the same name (``run.overwrite``) is a new wandb run."""
    if paths.wandb_id:
        return paths
    digest = hashlib.sha1(f"{paths.root.resolve()}:{time.time_ns()}:{os.getpid()}".encode()).hexdigest()[:8]
    wandb_id = f"{_slug(paths.name)[:40]}-{digest}"
    id_file = paths.root / "wandb_id"
    tmp = id_file.with_name(id_file.name + ".tmp")
    tmp.write_text(wandb_id + "\n")
    os.replace(tmp, id_file)
    return RunPaths(name=paths.name, root=paths.root, wandb_id=wandb_id)


def resolve_run(config: RunConfig, config_file: Optional[str] = None) -> RunPaths:
    """Resolve the run folder and wandb id (creating the folder and its ``wandb_id`` file); what
    ``validate`` and ``test`` use (``fit`` goes through :func:`start_fit`).

    Raises:
        ValueError: unknown ``run.wandb`` mode or a run name that is empty after cleaning.
    """
    paths = plan_run(config, config_file)
    paths.root.mkdir(parents=True, exist_ok=True)
    return _ensure_wandb_id(paths)


def has_previous_fit(root: Path) -> bool:
    return any((root / marker).exists() for marker in FIT_MARKERS)


# What a run folder holds before its first checkpoint (a start that stopped early).
_RUN_ENTRIES = frozenset({LOCK_NAME, "wandb_id", "wandb", "csv"})


def _foreign_entries(root: Path) -> List[str]:
    """Names in ``root`` that no run put there (temporaries of atomic writes aside)."""
    if not root.is_dir():
        return []
    return sorted(e.name for e in root.iterdir() if e.name not in _RUN_ENTRIES and not e.name.startswith("."))


def is_rank_zero() -> bool:
    """This process is the first of its job (launchers set these for the others)."""
    return all(int(os.environ.get(key, "0") or 0) == 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


class RunStart(pl.Callback):
    """A fit's claim on its run folder: the lock, the checkpoint to resume from, and what to
    undo when the start fails. As a callback it notes when training has begun."""

    def __init__(self, paths: RunPaths, ckpt_path: Optional[str], lock: Optional[RunLock], created: bool):
        self.paths, self.ckpt_path, self.lock, self.created = paths, ckpt_path, lock, created
        self.training_started = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.training_started = True

    def finish(self, failed: bool) -> None:
        """Release the lock; after a failed start, remove the folder this start created."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if failed and self.created and not self.training_started:
            shutil.rmtree(self.paths.root, ignore_errors=True)


def _storage_error(path: Path, exc: OSError) -> RunFolderError:
    return RunFolderError(f"{path}: cannot write the run folder ({exc.strerror or exc})")


def start_fit(config: RunConfig, config_file: Optional[str], ckpt_path: Optional[str]) -> RunStart:
    """Open the run folder of a ``dmtrec fit`` (module docstring). Processes other than rank 0
    only resolve paths (rank 0 holds the lock for the job).

    Raises:
        RunFolderError: the folder is not writable, or holds a run and neither ``--ckpt_path``
            nor ``run.overwrite`` says what to do with it.
        RunFolderBusy: another live process is fitting this run.
        CheckpointError: ``--ckpt_path last`` and no checkpoint of the run loads.
    """
    paths = plan_run(config, config_file)
    root = paths.root
    if not is_rank_zero():
        if ckpt_path == "last":
            ckpt_path = _resume_path(paths, set_aside=False)
        return RunStart(paths, ckpt_path, None, created=False)
    if config.overwrite and ckpt_path is not None:
        raise RunFolderError(
            f"{root}: run.overwrite starts the run again and --ckpt_path {ckpt_path} resumes it; give one of them"
        )
    if root.exists() and not root.is_dir():
        raise RunFolderError(f"{root}: the run folder of run {paths.name!r} is a file; choose another --run.name")
    if ckpt_path is None and not config.overwrite and not has_previous_fit(root):
        foreign = _foreign_entries(root)
        if foreign:
            raise RunFolderError(
                f"{root}: holds files that are not a run's ({foreign[0]}); choose another --run.name or "
                "pass --run.overwrite true to replace the folder"
            )
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _storage_error(root, exc) from None
    lock = None
    start = RunStart(paths, ckpt_path, None, created)
    try:
        try:
            lock = start.lock = acquire(root)
        except OSError as exc:
            raise _storage_error(root, exc) from None
        _remove_temporaries(root)
        requeued = int(os.environ.get(RESTART_COUNT_ENV, "0") or 0) > 0 or (
            lock.took_over is not None and bool(lock.took_over.get("job"))
        )
        if ckpt_path is None and has_previous_fit(root):
            if config.overwrite:
                log.warning("%s: run.overwrite: deleting the previous run and starting again", root)
                _clear(root)
                paths = RunPaths(name=paths.name, root=root, wandb_id="")
            elif requeued:
                ckpt_path = _requeue_checkpoint(paths)
                log.warning("%s: requeued job: resuming the run from %s", root, ckpt_path)
            else:
                raise RunFolderError(
                    f"{root}: a run named {paths.name!r} exists; resume it with --ckpt_path last, start it again "
                    "with --run.overwrite true, or choose another --run.name"
                )
        if ckpt_path == "last":
            ckpt_path = _resume_path(paths, set_aside=True)
        try:
            start.paths = _ensure_wandb_id(paths)
        except OSError as exc:
            raise _storage_error(root, exc) from None
        start.ckpt_path = ckpt_path
        _warn_if_low_on_space(root)
        return start
    except BaseException:
        start.finish(failed=True)
        raise


def _requeue_checkpoint(paths: RunPaths) -> str:
    """``last``, or the newest ``hpc_ckpt_<n>.ckpt`` that Lightning's SLURM auto-requeue saved
    when it is newer than ``last.ckpt`` (Lightning picks those up only without --ckpt_path)."""
    hpc = sorted(paths.root.glob("hpc_ckpt_*.ckpt"), key=lambda p: p.stat().st_mtime)
    last = paths.last_checkpoint
    if hpc and (not last.is_file() or hpc[-1].stat().st_mtime > last.stat().st_mtime):
        return str(hpc[-1])
    return "last"


def _resume_path(paths: RunPaths, set_aside: bool) -> Optional[str]:
    found = resume_checkpoint(paths.checkpoints, set_aside=set_aside)
    if found is None:
        log.info("%s: no checkpoint yet: the run starts from the beginning", paths.checkpoints)
        return None
    return str(found)


def _remove_temporaries(root: Path) -> None:
    """Remove the temporary files and folders of atomic writes (:mod:`dmtrec.core.atomic`:
    ``.<name>.<random>.tmp...``, ``.old``) that a killed writer left in the run folder and its
    checkpoints; safe because this process holds the lock."""
    for folder in (root, root / "checkpoints"):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.startswith(".") and (".tmp" in entry.name or entry.name.endswith(".old")):
                log.info("%s: removing a temporary left by an interrupted write", entry)
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def _clear(root: Path) -> None:
    """Empty ``root`` except the lock this process holds."""
    for entry in root.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# Below this a checkpoint or the final bake may not fit; a warning, not an error (the need varies).
LOW_SPACE_BYTES = 256 * 2**20


def _warn_if_low_on_space(root: Path) -> None:
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return
    if free < LOW_SPACE_BYTES:
        log.warning("%s: only %.0f MiB free on this file system; checkpoints may fail", root, free / 2**20)
