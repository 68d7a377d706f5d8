"""The run's logger: wandb, offline unless ``run.wandb: online`` (into ``<run>/wandb``, under the
folder's own wandb id so that a resumed run logs into the same wandb run), or a CSV log with
``run.wandb: disabled``; and :func:`finish_wandb`, which closes the run at the end."""

from __future__ import annotations

import os
import sys

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from .folder import RunPaths


def run_logger(paths: RunPaths, wandb: str, project: str) -> Logger:
    """The run's logger: wandb (``offline`` by default, into ``<run>/wandb``, resuming the run's
    wandb id) or, with ``wandb: disabled``, a CSV log in ``<run>/csv``."""
    if wandb == "disabled":
        return CSVLogger(save_dir=str(paths.root), name="", version="csv")
    os.environ["WANDB_MODE"] = wandb
    return WandbLogger(
        name=paths.name,
        id=paths.wandb_id,
        save_dir=str(paths.root),
        project=project,
        offline=wandb == "offline",
        resume="allow",
    )


def finish_wandb(failed: bool) -> None:
    """Close the wandb run Lightning leaves open, so that the next command in this process
    (tests, notebooks) starts its own run instead of silently logging into this one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)
