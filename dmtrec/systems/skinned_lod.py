"""The optimisation half of ``dmtrec lod`` on a skinned asset as a LightningModule: every level
fitted over poses in turn (the method: :mod:`dmtrec.assets.skinned_lod`), under the run
machinery the static lod uses (:mod:`dmtrec.runs.command_run`: progress bar, wandb logger,
checkpoints, resume).

:class:`SkinnedLodSystem` drives one :class:`~dmtrec.assets.skinned_lod.LevelFit` per level
(``settings.iterations`` steps each, all its rate candidates stepped together by the level's one
Adam): the next level is prepared (its scene at the level's resolution, bind-pose QEM, transfers,
baseline scores) at the batch where it starts. Its state travels in the checkpoint (finished
levels with what the outputs need, the current level's baseline, candidates and Adam state), so
an interrupted run resumes the level it was on; every random choice of a step is seeded by
(seed, step), so a resumed run gives the same result as an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from dmtrec.assets.skinned_lod import (
    LevelFit,
    SkinnedLodSettings,
    SkinnedScene,
    level_from_state,
    level_state,
    posed_mesh,
)
from dmtrec.core.mesh import Mesh
from dmtrec.io.gltf_skin import Skin
from dmtrec.io.image import linear_to_srgb
from dmtrec.render.raster import get_rasterizer

from .grids import log_grid
from .level_chain import LevelChain

log = logging.getLogger(__name__)


class SkinnedLodSystem(LevelChain):
    """Every level of a skinned asset, fitted over poses in turn (module docstring).

    Args:
        mesh, material, skin, animations, light: the skinned original (bind pose, with UVs) and the probe's light.
        budgets: triangle budgets, finest first; resolutions: each level's image size.
        settings: :class:`~dmtrec.assets.skinned_lod.SkinnedLodSettings` (``res`` replaced per level).
        flip: FLIP in the held-out scores (when ``flip-evaluator`` is installed).

    After a run, :attr:`results` holds per level its report, the written level's state
    (:func:`~dmtrec.assets.skinned_lod.level_state`) and its contact-sheet row.
    """

    def __init__(
        self,
        mesh: Mesh,
        material,
        skin: Skin,
        animations,
        light,
        budgets: Sequence[int],
        resolutions: Sequence[int],
        settings: SkinnedLodSettings,
        flip: bool = True,
        rasterizer=None,
    ):
        super().__init__()
        self.automatic_optimization = False
        # Plain attributes, not submodules: the original stays out of the checkpoints.
        self.asset = (mesh, material, skin, animations, light, rasterizer or get_rasterizer("auto", "cpu"))
        self.budgets, self.resolutions = [int(b) for b in budgets], [int(r) for r in resolutions]
        self.settings, self.flip = settings, flip
        self.iteration = 0
        self.level_index = 0
        self.fit_state: Optional[LevelFit] = None  # the level being fitted
        self.results: List[Dict[str, Any]] = []  # finished levels

    # ------------------------------------------------------------------ chain state
    @property
    def progress_label(self) -> str:
        if self.fit_state is not None:
            step = self.fit_state.iteration
        else:  # between levels: the finished one, complete
            step = self.settings.iterations if self.results else 0
        return f"level {self.level_index + 1}/{len(self.budgets)} ({self.budgets[self.level_index]} triangles) " + (
            f"{step}/{self.settings.iterations}"
        )

    @property
    def pending_work(self) -> Optional[str]:
        if self.finished or self.fit_state is not None:
            return None
        index = len(self.results)
        return f"level {index + 1}/{len(self.budgets)}: poses, references, decimate, transfers, bind-pose QEM scores"

    def scene(self, index: int) -> SkinnedScene:
        """Level ``index``'s scene (its resolution); built once per resolution."""
        resolution = self.resolutions[index]
        cache = self.__dict__.setdefault("_scenes", {})
        if resolution not in cache:
            mesh, material, skin, animations, light, rasterizer = self.asset
            settings = replace(self.settings, res=resolution)
            cache[resolution] = SkinnedScene(mesh, material, skin, animations, light, rasterizer, settings)
        return cache[resolution]

    def _advance(self) -> bool:
        """Finish a level whose steps are done and start the next; True if a level started."""
        started = False
        while not self.finished:
            if self.fit_state is None:
                self.level_index = len(self.results)
                self.fit_state = LevelFit(self.scene(self.level_index), self.budgets[self.level_index], self.flip)
                started = True
            elif self.fit_state.done:
                self._finish_level()
            else:
                break
        return started

    def _finish_level(self) -> None:
        scene, index = self.scene(self.level_index), self.level_index
        baseline, fitted, final = self.fit_state.finish()
        row = sheet_row(scene, baseline, fitted)
        report = {
            "budget": self.budgets[index],
            "fraction": None,  # the command fills it
            "triangles": final.mesh.num_faces,
            "resolution": self.resolutions[index],
            "bind_pose_qem": baseline.report,
            "pose_fitted": fitted.report,
            "kept": final.report["kept"],
            "final": fitted.report if final is fitted else baseline.report,
            "validation": {"start": baseline.report["validation"], "pose_fitted": fitted.report["validation"]},
        }
        self.results.append({"report": report, "level": level_state(final), "sheet_row": row})
        self.fit_state = None
        self.iteration = self.settings.iterations * len(self.results)
        self._log_level(index, report, row)

    def _log_level(self, index: int, report: Dict[str, Any], row: Tensor) -> None:
        if self._trainer is None:
            return
        metrics = {
            f"level{index}/{kind}_{name}": float(report[key][name])
            for kind, key in (("a", "bind_pose_qem"), ("c", "pose_fitted"))
            for name in ("psnr", "worst_pose_psnr", "flip")
            if name in report[key]
        }
        metrics[f"level{index}/triangles"] = float(report["triangles"])
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)
            log_grid(logger, f"level{index}/original_a_c", linear_to_srgb(row.clamp(0, 1)), self.global_step)

    def levels(self) -> list:
        """The written levels (:class:`~dmtrec.assets.skinned_lod.SkinnedLevel`), finest first."""
        return [level_from_state(r["level"]) for r in self.results]

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["dmtrec_skinned_lod"] = {
            **self.chain_state(),
            "fit": self.fit_state.state_dict() if self.fit_state is not None else None,
        }

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint.get("dmtrec_skinned_lod")
        if state is None:
            raise ValueError("checkpoint has no skinned lod state (not written by dmtrec lod on a skinned asset)")
        self.load_chain_state(state)
        if state["fit"] is not None:
            index = self.level_index
            self.fit_state = LevelFit(self.scene(index), self.budgets[index], self.flip, saved=state["fit"])

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        if self.fit_state is None and not self.finished:
            self._advance()  # a fresh run: level 0 (a resumed one has its level from the checkpoint)
        return self.fit_state.optimizer if self.fit_state is not None else None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Here rather than in training_step: Lightning hooks its step counter into the optimizers
        # in use when the batch starts, so a new level's optimizer must exist by then.
        if self._advance() and self.fit_state is not None:
            self.trainer.strategy.optimizers = [self.fit_state.optimizer]

    def training_step(self, batch: Any, batch_idx: int) -> Optional[Tensor]:
        if self.finished or self.fit_state is None:
            self.trainer.should_stop = True
            return None
        fit = self.fit_state
        optimizer = self.optimizers()
        loss = fit.loss()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        fit.stepped()
        self.iteration += 1
        value = float(loss.detach())
        self.log("loss", value, prog_bar=True, batch_size=1)
        self.log_dict({"level": float(self.level_index), "candidates": float(len(fit.active))}, batch_size=1)
        if fit.done:
            self._finish_level()
        if self.finished:
            self.trainer.should_stop = True
        return loss.detach()


def sheet_row(scene: SkinnedScene, baseline, fitted) -> Tensor:
    """``[H, 3W, 3]``: original | (a) | (c) in (c)'s worst held-out pose, held-out view 0, over white."""
    pose = fitted.report["worst_index"]
    cams = scene.cameras["heldout"][:1]
    white = torch.ones(1, *cams.resolution, 3)
    ref = scene.references["heldout"][pose][:1]
    cells = [torch.lerp(white, ref[..., :3], ref[..., 3:4])]
    with torch.no_grad():
        for level in (baseline, fitted):
            posed = posed_mesh(scene, level, "heldout", pose)
            cells.append(scene.render(posed, level.material, cams, white, "heldout")[..., :3])
    return torch.cat([c[0] for c in cells], 1)
