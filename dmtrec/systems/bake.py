"""The optimisation half of ``dmtrec bake`` as a LightningModule, so that a bake runs under the
fit's Trainer like ``dmtrec lod`` (progress bar, wandb logger, checkpoints, resume after a kill:
:mod:`dmtrec.runs.command_run`).

:class:`BakeSystem` steps :class:`dmtrec.assets.unlit_bake.ViewFit` (Adam from the point sample,
the method of :func:`dmtrec.assets.unlit_bake.fit_unlit`) once per batch. Its checkpoint holds the
values and Adam's state (Lightning's), and the fit's view order and generator state (here), so a
resumed bake draws the same views in the same order as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor

from dmtrec.assets.unlit_bake import as_baked, unlit_view_fit
from dmtrec.core.mesh import Mesh
from dmtrec.render.camera import Cameras


class BakeSystem(pl.LightningModule):
    """The unlit bake's Adam steps from the point sample (module docstring).

    Args:
        mesh: the mesh baked onto (with its render frame).
        target: ``"texture"`` or ``"vertex"``.
        point: the point-sampled bake, ``[T, T, 3]`` or ``[V, 3]``, the start and the prior.
        cameras, references: the training views and their PBR renders ``[B, H, W, 4]``.
        fit: :func:`~dmtrec.assets.unlit_bake.fit_unlit`'s options (steps, lr, batch, loss,
            seed, prior_weight).
    """

    def __init__(
        self, mesh: Mesh, target: str, point: Tensor, cameras: Cameras, references: Tensor, rasterizer, **fit: Any
    ):
        super().__init__()
        self.automatic_optimization = False
        self.target = target
        baked = as_baked(target, point)
        # A submodule (texture) or a parameter (vertex colours): the values travel in the checkpoint.
        self.baked = baked if target == "texture" else torch.nn.Parameter(baked)
        prior_weight = fit.pop("prior_weight", 0.0)
        self.fit = unlit_view_fit(
            mesh, self.baked, cameras, references, rasterizer, prior=point, prior_weight=prior_weight, **fit
        )
        self.losses: List[float] = []

    @property
    def total_iters(self) -> int:
        return self.fit.steps

    @property
    def iteration(self) -> int:
        return self.fit.iteration

    @property
    def finished(self) -> bool:
        return self.fit.iteration >= self.fit.steps

    @property
    def progress_label(self) -> str:
        return f"bake {self.fit.iteration}/{self.fit.steps}"

    pending_work: Optional[str] = None

    def values(self) -> Tensor:
        """The optimised values, ``[T, T, 3]`` or ``[V, 3]`` (detached)."""
        return (self.baked.kd.data[0] if self.target == "texture" else self.baked).detach().clone()

    def train_dataloader(self):
        # The batches only pace the loop: the views come from the fit's own seeded order.
        return torch.utils.data.DataLoader(range(max(1, self.fit.steps)), batch_size=None)

    def configure_optimizers(self):
        return self.fit.make_optimizer()

    def training_step(self, batch: Any, batch_idx: int) -> Optional[Tensor]:
        if self.finished:
            self.trainer.should_stop = True
            return None
        value = self.fit.step(self.optimizers())
        self.losses.append(value)
        self.log("loss", value, prog_bar=True, batch_size=1)
        if self.finished:
            self.fit.done()
            self.trainer.should_stop = True
        return torch.tensor(value)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["dmtrec_bake"] = {"fit": self.fit.state_dict(), "losses": list(self.losses), "steps": self.fit.steps}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint.get("dmtrec_bake")
        if state is None:
            raise ValueError("checkpoint has no dmtrec bake state (not written by dmtrec bake)")
        self.fit.load_state_dict(state["fit"])
        self.losses = list(state["losses"])
