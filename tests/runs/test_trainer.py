"""``dmtrec fit`` and ``dmtrec lod`` build their Trainer in one place (:class:`dmtrec.runs.trainer.RunSession`):
seen from inside ``Trainer.fit``, both hold the run folder's lock, write crash-safe checkpoints to
``checkpoints/last.ckpt`` every ``run.checkpoint_every`` steps, show the pipeline's progress bar,
log where ``run.wandb`` says and run deterministic CPU algorithms; and a start that fails before
training leaves no folder behind for either."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from common import PROBE_HDR, QUICKSTART

from dmtrec.cli import main
from dmtrec.runs.folder import RunConfig

EVERY = 7


class Stopped(Exception):
    """Raised by the stand-in for ``Trainer.fit`` once it has looked at the trainer."""


@pytest.fixture
def plumbing(monkeypatch):
    """What ``Trainer.fit`` sees of the run's pieces (one dict per call); the fit itself stops there."""
    seen = []

    def fit(trainer, *args, **kwargs):
        root = Path(trainer.default_root_dir)
        checkpoint = trainer.checkpoint_callback
        seen.append(
            {
                "lock_pid": json.loads((root / "run.lock").read_text())["pid"],
                "checkpoint_io": type(trainer.strategy.checkpoint_io).__name__,
                "last": Path(checkpoint.dirpath) / "last.ckpt" == root / "checkpoints" / "last.ckpt",
                "every": checkpoint._every_n_train_steps,
                "progress_bar": type(trainer.progress_bar_callback).__name__,
                "logger": (type(trainer.logger).__name__, Path(trainer.logger.save_dir) == root),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
            }
        )
        raise Stopped

    monkeypatch.setattr(pl.Trainer, "fit", fit)
    return seen


def test_fit_and_lod_get_the_same_run_pieces(plumbing, tmp_path):
    pytest.importorskip("fast_simplification", reason="dmtrec lod needs the 'lod' extra (fast-simplification)")
    pytest.importorskip("scipy", reason="dmtrec lod's closest-surface lookup needs scipy")
    from dmtrec.assets.lod import LodSettings
    from dmtrec.assets.procedural import write_procedural_asset
    from dmtrec.commands.lod import run_lod

    fit_args = ["fit", "-c", str(QUICKSTART), "--run.output_root", str(tmp_path / "fit")]
    with pytest.raises(Stopped):
        main(fit_args + ["--run.wandb", "disabled", "--run.checkpoint_every", str(EVERY)])
    asset = write_procedural_asset(tmp_path / "asset", nu=40, nv=24, texture_res=64)
    settings = LodSettings(iterations=2, train_views=2, heldout_views=1, probe_res=32, texture_res=64, flip=False)
    run = RunConfig(wandb="disabled", checkpoint_every=EVERY)
    with pytest.raises(Stopped):
        run_lod(asset, PROBE_HDR, tmp_path / "lod" / "lods", settings, faces=[400], run=run)

    expected = {
        "lock_pid": os.getpid(),
        "checkpoint_io": "SafeCheckpointIO",
        "last": True,
        "every": EVERY,
        "progress_bar": "PipelineProgressBar",
        "logger": ("CSVLogger", True),
        "deterministic": True,
    }
    assert plumbing == [expected, expected]
    # Both starts failed before training: the folders they created are gone, lock included.
    assert not (tmp_path / "fit" / "quickstart").exists() and not (tmp_path / "lod" / "lods").exists()
