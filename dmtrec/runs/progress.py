"""The progress bar of ``dmtrec fit`` and ``dmtrec lod``: the pipeline's own iterations, not Lightning's epochs.

Lightning's default bar counts epochs of the training dataloader (``Epoch 11: 17/40``), which
says nothing about a run whose length is ``iters_dmtet + iters_mesh`` pipeline iterations. This
bar shows one line for the whole run::

    pass 1/2 dmtet 312/600 | loss 0.0412 | 3.1 it/s | 04:12 left (whole run)

and names the steps between iterations (the bake at the pass switch) while they run. The
export at the end logs its own steps (:class:`dmtrec.runs.callbacks.FinalizeRun`).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks.progress import ProgressBar
from tqdm import tqdm


class PipelineProgressBar(ProgressBar):
    """A tqdm bar over ``pl_module.total_iters`` iterations (rate and ETA are the whole run's),
    counting ``pl_module.iteration``; its label is the module's ``progress_label`` (the fit:
    :func:`dmtrec.systems.pipeline.describe` of its stage) plus the loss, replaced by ``pending_work`` (a line, or None)
    while the work between two stages runs. Used by ``dmtrec fit`` and ``dmtrec lod``."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._bar: Optional[tqdm] = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        (self._bar.write if self._bar is not None else print)(sep.join(map(str, args)), **kwargs)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or trainer.global_rank != 0:
            return
        self._bar = tqdm(
            total=pl_module.total_iters,
            initial=pl_module.iteration,
            dynamic_ncols=True,
            file=sys.stderr,
            unit="it",
            bar_format="{desc} |{bar:20}| {rate_fmt} | {remaining} left{postfix}",
        )
        self._bar.set_description_str(self._label(pl_module))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        # Callbacks run before the module's own hook, where the work between stages runs (the
        # fit's bake at the pass switch, the next level's decimation in lod).
        work = getattr(pl_module, "pending_work", None) if self._bar is not None else None
        if work:
            self._bar.set_description_str(work)
            self._bar.refresh()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if self._bar is None:
            return
        self._bar.n = pl_module.iteration
        self._bar.total = pl_module.total_iters  # a run may grow (lod's frozen-position retries)
        self._bar.set_description_str(self._label(pl_module), refresh=False)
        loss = trainer.callback_metrics.get("loss")
        if loss is not None:
            self._bar.set_postfix_str(f"loss {float(loss):.4f}", refresh=False)
        self._bar.refresh()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @staticmethod
    def _label(pl_module: pl.LightningModule) -> str:
        return pl_module.progress_label
