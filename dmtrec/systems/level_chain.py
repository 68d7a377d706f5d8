"""What the static and the skinned lod systems share: a chain of levels, ``settings.iterations``
steps each, paced by a loader of step numbers (:class:`LevelChain`)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class LevelChain(pl.LightningModule):
    """A LightningModule that optimises ``budgets`` levels in turn; subclasses keep ``settings``
    (with ``iterations``), ``budgets`` and ``results`` (one entry per finished level)."""

    @property
    def total_iters(self) -> int:
        return self.settings.iterations * len(self.budgets)

    @property
    def finished(self) -> bool:
        return len(self.results) == len(self.budgets)

    def train_dataloader(self):
        # The batches only pace the loop: every view, pose and background comes from the module's
        # own seeded draw (resume-exact), so the loader yields step numbers.
        return torch.utils.data.DataLoader(range(max(1, self.total_iters)), batch_size=None)
