"""The one Trainer of a run, for ``dmtrec fit`` and ``dmtrec lod`` alike, and the session around it.

:class:`RunSession` opens the run folder (:func:`dmtrec.runs.folder.start_fit`: the folder's
lock, ``--ckpt_path last`` resolved to a checkpoint that loads, a fit over an existing run refused
unless it resumes or ``run.overwrite``), builds the Trainer with the run's pieces (logger,
``checkpoints/last.ckpt`` every ``run.checkpoint_every`` steps, crash-safe checkpoint files, the
pipeline's progress bar, deterministic CPU algorithms) and, when the command ends, closes the
wandb run and releases the folder (removing it when a start failed before training).
Importing it registers the ``dmtrec_ddp`` strategy (:mod:`dmtrec.runs.ddp`).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import ModelCheckpoint

from . import ddp  # noqa: F401  (importing it registers the dmtrec_ddp strategy)
from .checkpoints import SafeCheckpointIO
from .folder import RunConfig, RunPaths, RunStart, resolve_run, start_fit
from .logger import finish_wandb, run_logger
from .progress import PipelineProgressBar


def run_checkpoint(paths: RunPaths, every: int) -> ModelCheckpoint:
    """``<run>/checkpoints/last.ckpt`` every ``every`` optimizer steps (what ``--ckpt_path last`` resumes)."""
    return ModelCheckpoint(
        dirpath=str(paths.checkpoints),
        save_last=True,
        save_top_k=0,
        every_n_train_steps=every,
        # Always last.ckpt: the run folder has one writer (run.lock), never a last-v1.ckpt.
        enable_version_counter=False,
    )


def deterministic_on_cpu(trainer: pl.Trainer, configured=None) -> None:
    """Same config, seed and machine give the same run: on CPU the backward of advanced indexing
    (``index_put_`` with accumulate, behind every gather) sums in a thread-dependent order, so
    CPU runs use torch's deterministic algorithms unless ``trainer.deterministic`` is set
    (``configured``). GPUs keep torch's defaults (``--trainer.deterministic true`` asks for it there)."""

    if configured is None and isinstance(trainer.accelerator, CPUAccelerator):
        torch.use_deterministic_algorithms(True)


def ignore_manual_checkpoint_warning() -> None:
    """Checkpoints of dmtrec's manually optimised modules hold the state after the step together
    with the iteration that state belongs to (the module's own counter), which is what resuming
    needs; Lightning's warning about manual optimization does not apply."""
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")


@contextmanager
def deterministic_restored() -> Iterator[None]:
    """Restore torch's process-wide deterministic switch (set by :func:`deterministic_on_cpu`)
    afterwards, for whatever runs next in this process (tests, notebooks)."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])


class RunSession:
    """A command's run folder from opening to closing; a context manager whose exit closes it
    (failed when an exception leaves the block).

    ``dmtrec fit`` opens it with :meth:`start` (``validate`` and ``test`` with :meth:`resolve`),
    ``dmtrec lod`` with :meth:`start`; both build their Trainer with :meth:`trainer`.
    """

    def __init__(self) -> None:
        self.paths: Optional[RunPaths] = None
        self.run_start: Optional[RunStart] = None

    def start(self, run: RunConfig, config_file: Optional[str], ckpt_path: Optional[str]) -> Optional[str]:
        """Claim the run folder for training (:func:`~dmtrec.runs.folder.start_fit`); returns the
        checkpoint to resume from (None: from the beginning)."""
        self.run_start = start_fit(run, config_file, ckpt_path)
        self.paths = self.run_start.paths
        return self.run_start.ckpt_path

    def resolve(self, run: RunConfig, config_file: Optional[str]) -> RunPaths:
        """The run folder of a command that only reads the run (validate, test): no lock."""
        self.paths = resolve_run(run, config_file)
        return self.paths

    def trainer(
        self,
        run: RunConfig,
        make: Callable[..., pl.Trainer] = pl.Trainer,
        callbacks: Sequence[pl.Callback] = (),
        plugins: Sequence[Any] = (),
        progress_bar: bool = True,
        deterministic: Optional[bool] = None,
        **options: Any,
    ) -> pl.Trainer:
        """``make(logger=..., callbacks=..., plugins=..., default_root_dir=..., **options)`` with the
        run's pieces after ``callbacks`` and ``plugins``; ``deterministic`` is the configured
        ``trainer.deterministic`` (None: deterministic on CPU, :func:`deterministic_on_cpu`)."""
        if self.paths is None:
            raise RuntimeError("RunSession.trainer: open the run folder first (start or resolve)")
        pieces = [run_checkpoint(self.paths, run.checkpoint_every)]
        if progress_bar:
            pieces.append(PipelineProgressBar())
        if self.run_start is not None:
            pieces.append(self.run_start)
        trainer = make(
            logger=run_logger(self.paths, run.wandb, run.project),
            callbacks=[*callbacks, *pieces],
            # Crash-safe checkpoint files, weights-only loading (dmtrec.runs.checkpoints).
            plugins=[*plugins, SafeCheckpointIO()],
            default_root_dir=str(self.paths.root),
            **options,
        )
        deterministic_on_cpu(trainer, deterministic)
        ignore_manual_checkpoint_warning()
        return trainer

    def close(self, failed: bool) -> None:
        """Close the wandb run, release the lock; after a failed start, remove the folder it created."""
        finish_wandb(failed)
        if self.run_start is not None:
            self.run_start.finish(failed)

    def __enter__(self) -> "RunSession":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(failed=exc_type is not None)
