"""Checkpoint files that survive crashes, full disks and untrusted input.

* Writes (:class:`SafeCheckpointIO`, the Trainer's CheckpointIO plugin, so ModelCheckpoint and
  ``trainer.save_checkpoint`` both go through it): the checkpoint is written and fsynced under a
  temporary name beside the target, the current file is kept as ``previous-<name>`` (a hard
  link, so there is no moment without a ``last.ckpt``), then the new file is renamed into place.
  A crash or a full disk at any point leaves the last complete checkpoint under one of the two
  names. ``previous-last.ckpt`` does not match Lightning's ``last*.ckpt`` pattern on purpose.
* Reads (:func:`load_checkpoint_file`): always ``weights_only`` (tensors and plain data; a
  crafted pickle cannot run code) unless ``DMTREC_TRUST_CHECKPOINTS=1``; a damaged or foreign
  file is reported in one line naming it.
* Resuming (:func:`resume_checkpoint`): ``--ckpt_path last`` takes ``last.ckpt`` if it loads,
  otherwise reports it and falls back to ``previous-last.ckpt``.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.core.saving import _load_state

from dmtrec.core.atomic import atomic_path
from dmtrec.core.types import PathLike

log = logging.getLogger(__name__)

LAST_NAME = "last.ckpt"
TRUST_ENV = "DMTREC_TRUST_CHECKPOINTS"


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read; the message is one line naming the file."""


def previous_path(path: PathLike) -> Path:
    """Where the checkpoint that ``path`` replaced is kept."""
    path = Path(path)
    return path.with_name(f"previous-{path.name}")


def _complete(path: Path) -> bool:
    """Cheap check that a file is a whole torch zip archive (its central directory, at the end,
    is readable): a checkpoint cut short by a crash fails it."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _keep_previous(path: Path) -> None:
    """Keep the current ``path`` (if complete) as :func:`previous_path`, without ever removing ``path``."""
    if not path.is_file() or not _complete(path):
        return
    with atomic_path(previous_path(path)) as tmp:
        tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:  # no hard links on this file system
            shutil.copy2(path, tmp)


def save_checkpoint_file(checkpoint: Dict[str, Any], path: PathLike) -> None:
    """Write ``checkpoint`` to ``path`` crash-safely (module docstring).

    Raises:
        CheckpointError: the write failed (no space, permissions, ...); ``path`` and its
            previous version are as they were.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            _keep_previous(path)
        _fsync_folder(path.parent)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CheckpointError(f"{path}: cannot write the checkpoint ({reason}); the previous one is kept") from exc


def load_checkpoint_file(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a Lightning checkpoint written by dmtrec, weights-only unless ``DMTREC_TRUST_CHECKPOINTS=1``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: damaged, not a checkpoint, or refused by the weights-only loader.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    trusted = os.environ.get(TRUST_ENV) == "1"
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        if trusted or "weights_only" not in str(exc).lower().replace(" ", "_"):
            raise CheckpointError(f"{path}: damaged checkpoint ({_first_line(exc)})") from None
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects besides tensors and plain data, which could run "
            f"code; if you trust it, set {TRUST_ENV}=1"
        ) from None
    except Exception as exc:  # truncated zip, zero bytes, random bytes: torch raises many kinds
        raise CheckpointError(f"{path}: damaged checkpoint, cannot be read ({_first_line(exc)})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def _first_line(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception (torch's zip errors run to a paragraph)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0].split('. ')[0].rstrip('.')}" if text else type(exc).__name__


def load_module(cls: type, path: PathLike, map_location: Any = "cpu"):
    """``cls.load_from_checkpoint`` through :func:`load_checkpoint_file` (weights-only, one-line errors)."""
    # Lightning's own loader minus its torch.load: hyper-parameters, hooks and state dict as
    # load_from_checkpoint does them.

    return _load_state(cls, load_checkpoint_file(path, map_location))


def resume_checkpoint(folder: PathLike, set_aside: bool = False) -> Optional[Path]:
    """The checkpoint ``--ckpt_path last`` resumes from in the checkpoint ``folder``.

    ``last.ckpt`` when it loads; otherwise (damaged) the previous good one, with a warning that
    says which. With ``set_aside`` the damaged file is renamed ``last.ckpt.damaged`` so that the
    next save does not keep it as the previous one. None when there is no checkpoint at all.

    Raises:
        CheckpointError: there are checkpoints but none loads.
    """
    last = Path(folder) / LAST_NAME
    candidates = [p for p in (last, previous_path(last)) if p.is_file()]
    problems = []
    for candidate in candidates:
        try:
            state = load_checkpoint_file(candidate).get("dmtrec_pipeline") or {}
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if candidate != last and last.is_file():
            log.warning("%s; resuming from %s (iteration %s) instead", problems[0], candidate, state.get("iteration"))
            if set_aside:
                os.replace(last, last.with_name(last.name + ".damaged"))
        return candidate
    if problems:
        raise CheckpointError(
            "; ".join(problems) + ("" if len(problems) > 1 else "; no previous checkpoint to fall back on")
        )
    return None


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO that writes with :func:`save_checkpoint_file` and reads with
    :func:`load_checkpoint_file`."""

    def save_checkpoint(
        self, checkpoint: Dict[str, Any], path: PathLike, storage_options: Optional[Any] = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(
        self, path: PathLike, map_location: Optional[Callable] = lambda storage, loc: storage, weights_only: Any = None
    ) -> Dict[str, Any]:
        return load_checkpoint_file(path, map_location)
