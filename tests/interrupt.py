"""A Trainer callback that stops a run as a crash would, for the resume tests of ``dmtrec lod``
and ``dmtrec bake`` (each module's ``iteration`` counts its finished steps)."""

from __future__ import annotations

import pytorch_lightning as pl


class Crash(RuntimeError):
    pass


class Interrupt(pl.Callback):
    """Stops the run as a crash would, when step ``at`` is about to run."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.iteration == self.at:
            raise Crash(f"stopped before step {self.at}")
