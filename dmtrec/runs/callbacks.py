"""Callbacks of a ``dmtrec fit`` run: the datamodule told which pass trains, and the final
evaluation and export. Both are handed the datamodule by the fit (:mod:`dmtrec.commands.fit`);
the model never reads the datamodule."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from dmtrec.datasets.datamodule import ReconDataModule
from dmtrec.geometry.uv_unwrap import texel_utilisation

from .evaluation import mean_metrics, reference_surface, score_test_views
from .outputs import EXPORT_FRAMES, export_frame_info, write_outputs
from .topology_report import draw_handle_loops, topology_report

log = logging.getLogger(__name__)


def save_final_checkpoint(trainer: pl.Trainer) -> None:
    """Save the final state as ``last.ckpt``, whatever ``checkpoint_every``: a resume of a finished
    run is then a no-op. Every rank calls it (it ends in a barrier); rank 0 writes."""
    if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.dirpath:
        trainer.save_checkpoint(Path(trainer.checkpoint_callback.dirpath) / "last.ckpt")


class TrainingPassToData(pl.Callback):
    """Tell ``datamodule`` which pass the model trains (``use_pass(pl_module.pass_number)``):
    at the start of training (a run resumed in pass 2 trains on pass 2's renders from its first
    batch on) and at the end of the batch in which the pass changed. The pass switches in the
    model's ``on_train_batch_start``, after the batch was drawn; no batch is drawn between that
    and this batch's end, so the renders drawn next are the new pass's
    (``data.train_resolution_mesh``). A batch drawn before keeps its size, which the model's
    cameras follow (:meth:`~dmtrec.systems.pipeline.ReconstructionSystem.cameras`)."""

    def __init__(self, datamodule: ReconDataModule):
        self.datamodule = datamodule
        self._told: Optional[int] = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._tell(pl_module.pass_number)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if pl_module.pass_number != self._told:
            self._tell(pl_module.pass_number)

    def _tell(self, pass_number: int) -> None:
        self.datamodule.use_pass(pass_number)
        self._told = pass_number


class FinalizeRun(pl.Callback):
    """When the pipeline has run all its iterations: evaluate the held-out (test) views of
    ``datamodule`` and, with a reference mesh (the model's ``reference_mesh`` file, else the mesh a
    reference-mesh dataset renders), the geometry; write the outputs (:mod:`dmtrec.runs.outputs`)
    and ``metrics.json`` (with ``run_name`` and its folder) into ``out_dir``, the OBJ in the frame
    ``export_frame`` (the dataset's world frame is the datamodule's ``train_from_world`` undone);
    log the metrics and the GLB to the logger.

    A run that stops early (interrupted, failed) writes nothing here: its checkpoint resumes it.
    """

    def __init__(
        self,
        out_dir: Path,
        export_frame: str = "dataset",
        datamodule: Optional[ReconDataModule] = None,
        run_name: Optional[str] = None,
    ):
        if export_frame not in EXPORT_FRAMES:
            raise ValueError(f"run.export_frame: expected one of {', '.join(EXPORT_FRAMES)}, got {export_frame!r}")
        self.out_dir = Path(out_dir)
        self.export_frame = export_frame
        self.datamodule = datamodule
        self.run_name = run_name
        self._started = time.monotonic()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.monotonic()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not getattr(pl_module, "finished", False):
            return
        save_final_checkpoint(trainer)
        if trainer.global_rank != 0:
            return
        pl_module.eval()
        metrics: Dict[str, Any] = {
            "iterations": pl_module.iteration,
            "passes": pl_module.passes,
            "fit_seconds_this_session": round(time.monotonic() - self._started, 2),
            # The run's name and the folder it maps to (dmtrec.runs.folder.run_folder_name).
            "run_name": self.run_name,
            "run_folder": self.out_dir.name,
        }
        datamodule = self.datamodule
        if datamodule is not None:
            log.info("export: evaluating the test views")
            datamodule.setup("test")
            metrics.update(mean_metrics(score_test_views(pl_module, datamodule.test_dataloader())))
        reference, _ = reference_surface(None, pl_module, None if datamodule is None else datamodule.reference_mesh)
        if reference is not None:
            report = pl_module.reference_metrics(reference)
            metrics.update({f"geometry_{k}": v for k, v in report.items()})
        log.info("export: baking the final mesh")
        mesh, textures = pl_module.bake_mesh()
        # texel_utilisation: share of the texture square the UV triangles cover (xatlas ~0.6-0.8;
        # the chart fallback of big meshes less), i.e. how much of texture_res the textures use.
        metrics.update(
            triangles=mesh.num_faces, vertices=mesh.num_vertices, texel_utilisation=round(texel_utilisation(mesh), 4)
        )
        # components, genus and where the handles are (issue 31), with a picture of each handle's loop
        topology, loop_components = topology_report(mesh)
        pictures = draw_handle_loops(mesh, loop_components, self.out_dir)
        topology["handle_loop_pictures"] = [str(p.relative_to(self.out_dir)) for p in pictures]
        metrics["topology"] = topology
        metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        train_from_world = torch.eye(4) if datamodule is None else datamodule.train_from_world
        metrics["export_frame"] = export_frame_info(self.export_frame, train_from_world)
        obj_transform = torch.linalg.inv(train_from_world) if self.export_frame == "dataset" else None
        log.info("export: writing mesh, textures, GLB and probe")
        paths = write_outputs(self.out_dir, mesh, textures, pl_module.light, metrics, obj_transform=obj_transform)
        log.info("outputs written to %s", self.out_dir)
        self._log(trainer, metrics, paths["glb"])

    @staticmethod
    def _log(trainer: pl.Trainer, metrics: Dict[str, Any], glb: Path) -> None:
        numeric = {
            f"final/{k}": float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for logger in trainer.loggers:
            logger.log_metrics(numeric, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                import wandb

                logger.experiment.log({"mesh": wandb.Object3D(str(glb))})
                logger.experiment.summary.update(numeric)
