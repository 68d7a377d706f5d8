"""What the static and the skinned lod systems share: a chain of levels, ``settings.iterations``
steps each, paced by a loader of step numbers (:class:`LevelChain`)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class LevelChain(pl.LightningModule):
    """A LightningModule that optimises ``budgets`` levels in turn; subclasses keep ``settings``
    (with ``iterations``), ``budgets``, ``iteration``, ``level_index`` and ``results`` (one entry per
    finished level)."""

    @property
    def total_iters(self) -> int:
        return self.settings.iterations * len(self.budgets)

    @property
    def finished(self) -> bool:
        return len(self.results) == len(self.budgets)

    def chain_state(self) -> dict:
        """What a checkpoint keeps of the chain itself (subclasses add their level's state)."""
        return {
            "budgets": self.budgets,
            "iteration": self.iteration,
            "level_index": self.level_index,
            "results": self.results,
        }

    def load_chain_state(self, state: dict) -> None:
        """Restore :meth:`chain_state`; a checkpoint of other budgets is refused."""
        if list(state["budgets"]) != self.budgets:
            raise ValueError(f"checkpoint is of the budgets {state['budgets']}, not {self.budgets}")
        self.iteration, self.level_index = int(state["iteration"]), int(state["level_index"])
        self.results = list(state["results"])

    def train_dataloader(self):
        # The batches only pace the loop: every view, pose and background comes from the module's
        # own seeded draw (resume-exact), so the loader yields step numbers.
        return torch.utils.data.DataLoader(range(max(1, self.total_iters)), batch_size=None)
