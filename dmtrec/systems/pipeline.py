"""The two-pass reconstruction as one LightningModule.

Pass 1 ("dmtet") optimises a DMTet grid (SDF + offsets; or FlexiCubes, see ``geometry``), a
volumetric material and the light; at its end the extracted mesh is UV-unwrapped, the volumetric
material baked into 2D textures, and pass 2 ("mesh") optimises vertex positions, textures and
light with fixed topology and a Laplacian regularizer. Either pass can run alone (``passes``).

The pipeline state (stage, iteration) is the module's own and travels in the checkpoint:
Lightning's ``global_step`` counts optimizer steps, which equals the iteration count here
because one optimizer (one param group per parameter kind) steps once per batch, but the
schedules read :attr:`iteration`, never ``global_step``.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor

from dmtrec.geometry import Mesh
from dmtrec.geometry.mesh_geometry import MeshGeometry
from dmtrec.geometry.ops import drop_small_components
from dmtrec.geometry.regularizers import laplacian_loss
from dmtrec.geometry.sdf_morphology import clean_sdf, guarded_sdf_morphology
from dmtrec.geometry.uv_unwrap import uv_unwrap
from dmtrec.io.mesh_files import read_mesh
from dmtrec.metrics.geometry import geometry_report
from dmtrec.metrics.image import image_metrics
from dmtrec.metrics.image_losses import FIT_LOSSES, over_background, reconstruction_loss
from dmtrec.render.bake import bake_volumetric
from dmtrec.render.camera import Cameras
from dmtrec.render.carving import background_points, carved_sdf
from dmtrec.render.raster import get_rasterizer
from dmtrec.render.render_mesh import render_mesh
from dmtrec.render.visibility import filled_sdf

from . import distributed, schedules
from .config import GEOMETRIES, PASSES, DMTetConfig, LightConfig, MaterialConfig, MeshPassConfig, OptimConfig
from .grids import image_grid, log_grid, save_grid

log = logging.getLogger(__name__)

_EPS = 1e-8  # torch's (and nvdiffrec's) Adam eps


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the message names the iteration and every loss term."""


def _textures(material) -> Dict[str, Tensor]:
    """A textured material's maps as plain ``[H, W, C]`` tensors (kd, ks and, if any, normal)."""
    return {k: v for k, v in material.to_tensors().items() if v is not None}


def describe(stage: str, passes: str, pass_iteration: int, pass_length: int) -> str:
    """The progress bar's label: ``pass 1/2 dmtet 312/600`` (``pass 1/1`` when one pass runs alone)."""
    total_passes = 2 if passes == "both" else 1
    number = 1 if (stage == "dmtet" or passes == "mesh") else 2
    return f"pass {number}/{total_passes} {stage} {pass_iteration}/{pass_length}"


def _as_config(value: Any, cls: type) -> Any:
    """A private copy of a config section (the signature's defaults are shared instances)."""
    if value is None:
        return cls()
    if isinstance(value, dict):
        return cls(**value)
    return replace(value)


class ReconstructionSystem(pl.LightningModule):
    """nvdiffrec's reconstruction (two passes) from batches of posed RGBA views.

    Args:
        passes: "both" (pass 1 then pass 2), "dmtet" (pass 1 only) or "mesh" (pass 2 only,
            refining ``mesh_pass.init_mesh``).
        iters_dmtet: iterations of pass 1.
        iters_mesh: iterations of pass 2.
        loss: image loss on the colour ("logl1" as nvdiffrec, "logl2", "smape", "mse", "relmse", "l1").
        geometry: pass 1's surface, "dmtet" (nvdiffrec) or "flexicubes" (nvdiffrec's ``bob_flexi``);
            both read the ``dmtet`` section.
        dmtet, material, light, optim, mesh_pass: the config sections (:mod:`dmtrec.systems.config`).
        rasterizer: "auto", "torch" or "nvdiffrast".
        reference_mesh: mesh file for the final Chamfer report (without one, the run's finaliser
            uses the mesh a reference-mesh dataset renders, :class:`dmtrec.runs.callbacks.FinalizeRun`).
        metric_samples: surface samples per mesh for the Chamfer report.
        grid_views: views shown per validation image grid.

    Batches follow :mod:`dmtrec.datasets`: ``c2w [B, 4, 4]``, ``proj [B, 4, 4]``,
    ``img [B, H, W, 4]`` (linear RGB, straight alpha), ``background [B, H, W, 3]``.
    """

    def __init__(
        self,
        passes: str = "both",
        iters_dmtet: int = 5000,
        iters_mesh: int = 5000,
        loss: str = "logl1",
        geometry: str = "dmtet",
        dmtet: DMTetConfig = DMTetConfig(),
        material: MaterialConfig = MaterialConfig(),
        light: LightConfig = LightConfig(),
        optim: OptimConfig = OptimConfig(),
        mesh_pass: MeshPassConfig = MeshPassConfig(),
        rasterizer: str = "auto",
        reference_mesh: Optional[str] = None,
        metric_samples: int = 20000,
        grid_views: int = 4,
    ):
        super().__init__()
        if passes not in PASSES:
            raise ValueError(f"model.passes: unknown value {passes!r}; choose one of {', '.join(PASSES)}")
        if loss not in FIT_LOSSES:
            raise ValueError(f"model.loss: unknown image loss {loss!r}; choose one of {', '.join(FIT_LOSSES)}")
        if geometry not in GEOMETRIES:
            raise ValueError(f"model.geometry: unknown value {geometry!r}; choose one of {', '.join(GEOMETRIES)}")
        for name, value in (("iters_dmtet", iters_dmtet), ("iters_mesh", iters_mesh)):
            if value < 0:
                raise ValueError(f"model.{name} must be >= 0, got {value}")
        self.automatic_optimization = False
        self.passes, self.iters_dmtet, self.iters_mesh, self.loss_kind = passes, iters_dmtet, iters_mesh, loss
        self.geometry_kind = geometry
        self.dmtet_cfg = _as_config(dmtet, DMTetConfig)
        self.material_cfg = _as_config(material, MaterialConfig)
        self.light_cfg = _as_config(light, LightConfig)
        self.optim_cfg = _as_config(optim, OptimConfig)
        self.mesh_cfg = _as_config(mesh_pass, MeshPassConfig)
        self.save_hyperparameters(
            {
                "passes": passes,
                "iters_dmtet": iters_dmtet,
                "iters_mesh": iters_mesh,
                "loss": loss,
                "geometry": geometry,
                "dmtet": asdict(self.dmtet_cfg),
                "material": asdict(self.material_cfg),
                "light": asdict(self.light_cfg),
                "optim": asdict(self.optim_cfg),
                "mesh_pass": asdict(self.mesh_cfg),
                "rasterizer": rasterizer,
                "reference_mesh": reference_mesh,
                "metric_samples": metric_samples,
                "grid_views": grid_views,
            }
        )
        self.rasterizer_backend = rasterizer
        self.reference_mesh_path = reference_mesh
        self.metric_samples, self.grid_views = metric_samples, grid_views
        self._rasterizer = None

        if passes == "mesh" and not self.mesh_cfg.init_mesh:
            raise ValueError("model.mesh_pass.init_mesh: passes 'mesh' needs an input mesh file to refine")

        self.iteration = 0
        self.light = self.light_cfg.build()
        self.stage = "dmtet"
        self._carved: Optional[Tensor] = None  # [V] bool: grid vertices some training view saw as background
        if passes == "mesh":
            mesh, textures = read_mesh(self.mesh_cfg.init_mesh)
            textures = textures if self.mesh_cfg.keep_textures else None
            self._enter_mesh_stage(*self._prepare_input_mesh(mesh, textures))
        else:
            self.geometry = self.dmtet_cfg.build(geometry)
            self.material = self.material_cfg.volumetric_material(self.geometry)
        self._update_trainable()

    # ------------------------------------------------------------------ pipeline state
    @property
    def total_iters(self) -> int:
        return {"both": self.iters_dmtet + self.iters_mesh, "dmtet": self.iters_dmtet, "mesh": self.iters_mesh}[
            self.passes
        ]

    @property
    def finished(self) -> bool:
        return self.iteration >= self.total_iters

    @property
    def about_to_bake(self) -> bool:
        """Pass 1 has run its iterations and pass 2 follows: the next batch starts with the bake."""
        return self.stage == "dmtet" and self.passes == "both" and self.iteration >= self.iters_dmtet

    @property
    def pending_work(self) -> Optional[str]:
        """What the next batch does before its step (the progress bar's line), or None."""
        return "bake: UV unwrap + texture bake (pass 1 -> 2)" if self.about_to_bake else None

    @property
    def progress_label(self) -> str:
        return describe(self.stage, self.passes, self.pass_iteration, self.pass_length)

    @property
    def pass_number(self) -> int:
        """1 (DMTet) or 2 (mesh): the pass that trains now. The fit tells the datamodule when it
        changes (:class:`dmtrec.runs.callbacks.TrainingPassToData`)."""
        return 1 if self.stage == "dmtet" else 2

    @property
    def pass_iteration(self) -> int:
        """Iteration within the current pass (what the schedules read)."""
        offset = self.iters_dmtet if (self.stage == "mesh" and self.passes == "both") else 0
        return self.iteration - offset

    @property
    def pass_length(self) -> int:
        return self.iters_dmtet if self.stage == "dmtet" else self.iters_mesh

    @property
    def light_trainable(self) -> bool:
        """Whether the light learns in the current pass (``light.optimize``, and not in pass 2
        under ``light.lock``, nvdiffrec's ``lock_light``)."""
        return self.light_cfg.optimize and not (self.stage == "mesh" and self.light_cfg.lock)

    def _update_trainable(self) -> None:
        # A frozen light's parameters stop requiring grad, so that its split-sum mips are built
        # once (EnvironmentLight.ensure_mips) instead of at every step, as nvdiffrec's Trainer.
        for param in self.light.parameters():
            param.requires_grad_(self.light_trainable)
        if self.stage == "mesh":
            self.material.requires_grad_(not self.mesh_cfg.lock_material)

    @property
    def rasterizer(self):
        if self._rasterizer is None or self._rasterizer.device != self.device:
            self._rasterizer = get_rasterizer(self.rasterizer_backend, self.device)
        return self._rasterizer

    def _prepare_input_mesh(self, mesh: Mesh, textures: Optional[Dict[str, Tensor]]) -> Tuple[Mesh, Dict[str, Tensor]]:
        """UVs and textures for a pass-2 input mesh: unwrap when it has no UVs, and start
        missing textures from the middle of their configured ranges."""
        if mesh.v_tex is None or mesh.t_tex_idx is None:
            mesh = uv_unwrap(mesh, texture_res=self.material_cfg.texture_res).mesh
            textures = None
        return mesh, self.material_cfg.complete_textures(textures or {})

    def _enter_mesh_stage(self, mesh: Mesh, textures: Dict[str, Tensor]) -> None:
        self.stage = "mesh"
        self.geometry = MeshGeometry.from_mesh(mesh, lock_pos=self.mesh_cfg.lock_pos)
        self.material = self.material_cfg.textured_material(textures)
        self._update_trainable()

    @torch.no_grad()
    def pass_one_surface(self) -> Mesh:
        """Pass 1's surface as it is baked (positions and faces): hidden pockets filled
        (``dmtet.fill_hidden_views``), narrow tunnels closed (``dmtet.close_filled``), then floaters
        dropped (``dmtet.min_component_fraction``). The learned SDF is left alone."""
        cfg = self.dmtet_cfg
        field = contextlib.nullcontext()
        if cfg.fill_hidden_views > 0 or cfg.close_filled > 0:
            sdf = self.geometry.sdf.detach()
            if cfg.fill_hidden_views > 0:
                sdf = filled_sdf(self.geometry, self.rasterizer, int(cfg.fill_hidden_views), cfg.min_component_fraction)
            if cfg.close_filled > 0:
                # After the filling: closing first would join the interior sheets to the shell, which
                # filling then keeps (Spot seed 1, 2 threads: Chamfer 0.0148 closing first, 0.0138 after).
                sdf = guarded_sdf_morphology(sdf, self.geometry.edges, "close", int(cfg.close_filled))
            field = self.geometry.sdf_replaced(sdf)
        with field:
            mesh = self.geometry.mesh(with_uv=False)
        mesh = Mesh(v_pos=mesh.v_pos.detach(), t_pos_idx=mesh.t_pos_idx)
        return drop_small_components(mesh, cfg.min_component_fraction)

    @torch.no_grad()
    def bake_mesh(self) -> Tuple[Mesh, Dict[str, Tensor]]:
        """The current surface with UVs and 2D textures: pass 1's surface is extracted (FlexiCubes:
        2 triangles per quad, as without gradients), unwrapped and its volumetric material baked;
        pass 2's mesh and textures as they are."""
        if self.stage == "mesh":
            return self.geometry.mesh(), _textures(self.material)
        clean_sdf(self.geometry, self.dmtet_cfg.morphology, self.dmtet_cfg.morphology_steps)
        mesh = self.pass_one_surface()
        if mesh.is_empty:
            raise RuntimeError(
                f"pass 1 ended at iteration {self.iteration} with an empty surface "
                "(all SDF values have one sign): nothing to bake"
            )
        # texture_res: the fallback atlas's margins are sized for the texture it will be baked into.
        mesh = uv_unwrap(mesh, texture_res=self.material_cfg.texture_res).mesh
        textures = _textures(bake_volumetric(mesh, self.material, self.rasterizer, self.material_cfg.texture_res))
        return mesh, textures

    def _start_mesh_pass(self) -> None:
        """Pass 1 -> pass 2: bake, swap the modules, and give the trainer a fresh optimizer.
        Under data parallelism rank 0 bakes and every rank enters pass 2 with its mesh."""
        mesh, textures = distributed.compute_on_rank_zero(self.trainer.strategy, self.bake_mesh)
        log.info(
            "pass 2 starts at iteration %d: %d vertices, %d triangles",
            self.iteration,
            mesh.num_vertices,
            mesh.num_faces,
        )
        self._enter_mesh_stage(mesh, textures)
        self.geometry.to(self.device)
        self.material.to(self.device)
        self.trainer.strategy.optimizers = [self._make_optimizer()]

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["dmtrec_pipeline"] = {"stage": self.stage, "iteration": self.iteration}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint.get("dmtrec_pipeline")
        if state is None:
            raise ValueError("checkpoint has no dmtrec pipeline state (not written by dmtrec's ReconstructionSystem)")
        if state["stage"] == "mesh" and self.stage != "mesh":
            # Build pass-2 modules of the saved shapes so that load_state_dict can fill them.
            sd = checkpoint["state_dict"]
            self.stage = "mesh"
            self.geometry = MeshGeometry.empty_like_state(sd, "geometry.", lock_pos=self.mesh_cfg.lock_pos)
            self.material = self.material_cfg.textured_material_like_state(sd, "material.")
            self._update_trainable()
        self.iteration = int(state["iteration"])

    # ------------------------------------------------------------------ optimisation
    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.optim_cfg
        lr_geometry, lr_material = cfg.lr_geometry, cfg.lr_material
        if self.stage == "mesh":
            lr_geometry = cfg.lr_mesh_geometry if cfg.lr_mesh_geometry is not None else lr_geometry
            lr_material = cfg.lr_mesh_material if cfg.lr_mesh_material is not None else lr_material
        groups: List[Dict[str, Any]] = []
        geometry_params = [p for p in self.geometry.parameters() if p.requires_grad]
        # FlexiCubes' per-cube weights get their own rate (model.dmtet.weight_lr, a factor); at 1
        # they stay in the geometry group, as before the option (checkpoints resume).
        cube_weights = getattr(self.geometry, "weights", None) if self.stage == "dmtet" else None
        if self.dmtet_cfg.weight_lr == 1.0:
            cube_weights = None
        if cube_weights is not None:
            geometry_params = [p for p in geometry_params if p is not cube_weights]
        if geometry_params:
            groups.append({"name": "geometry", "params": geometry_params, "lr": lr_geometry})
        if cube_weights is not None and cube_weights.requires_grad:
            groups.append(
                {"name": "cube_weights", "params": [cube_weights], "lr": lr_geometry * self.dmtet_cfg.weight_lr}
            )
        # nvdiffrec's gradient scales (hash-grid table x16, light x64) as Adam's eps / scale: the
        # same steps as scaling the gradients (see OptimConfig), without touching them.
        encoding = getattr(self.material, "encoding", None)
        table = list(encoding.parameters()) if isinstance(encoding, torch.nn.Module) else []
        table_ids = {id(p) for p in table}
        # Locked parts (lock_pos, lock_material: _update_trainable) stop requiring grad and stay out.
        material_params = [p for p in self.material.parameters() if p.requires_grad and id(p) not in table_ids]
        if material_params:
            groups.append({"name": "material", "params": material_params, "lr": lr_material})
        if table:
            groups.append(
                {"name": "hashgrid", "params": table, "lr": lr_material, "eps": _EPS / cfg.grad_scale_hashgrid}
            )
        if self.light_trainable:
            groups.append(
                {
                    "name": "light",
                    "params": list(self.light.parameters()),
                    "lr": cfg.lr_light if cfg.lr_light is not None else lr_material,
                    "eps": _EPS / cfg.grad_scale_light,
                }
            )
        if not groups:
            raise ValueError(
                "pass 2 has nothing to learn: model.mesh_pass.lock_pos and lock_material are set and the light is "
                "fixed (model.light.optimize false or model.light.lock)"
            )
        for group in groups:
            group["base_lr"] = group["lr"]
        # nvdiffrec: torch's default betas and eps. foreach: one multi-tensor update instead of a
        # loop over the parameters (torch picks it on GPUs only); the same arithmetic, bit for bit.
        return torch.optim.Adam(groups, eps=_EPS, foreach=True)

    def configure_optimizers(self):
        return self._make_optimizer()

    def _set_learning_rates(self, optimizer: torch.optim.Optimizer) -> Dict[str, float]:
        warmup = self.optim_cfg.warmup_dmtet if self.stage == "dmtet" else self.optim_cfg.warmup_mesh
        factor = schedules.lr_factor(self.pass_iteration, warmup, self.optim_cfg.decay)
        rates = {}
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
            rates[group["name"]] = group["lr"]
        return rates

    # ------------------------------------------------------------------ forward
    def cameras(self, batch: Dict[str, Tensor]) -> Cameras:
        img = batch["img"]
        return Cameras(c2w=batch["c2w"], proj=batch["proj"], resolution=(int(img.shape[1]), int(img.shape[2])))

    def render(self, batch: Dict[str, Tensor], with_smoothness: bool = False) -> Tuple[Mesh, Dict[str, Tensor]]:
        """Render the current surface for the batch's cameras over its background.

        Returns the mesh and the renderer's buffers (``"shaded" [B, H, W, 4]`` and the
        material buffers, see :func:`dmtrec.render.render_mesh.render_mesh`; with ``with_smoothness``
        also ``"kd_grad" [B, H, W, 1]``, the kd change under a lookup jitter).
        """
        mesh = self.geometry.mesh()
        if self.light_cfg.camera_space:
            # nvdiffrec's light.xfm(mv): the light is fixed relative to each camera.
            self.light.xfm(torch.linalg.inv(batch["c2w"]))
        buffers = render_mesh(
            mesh,
            self.material,
            self.light,
            self.cameras(batch),
            self.rasterizer,
            background=batch["background"],
            smoothness=with_smoothness,
        )
        return mesh, buffers

    def loss_terms(self, batch: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """nvdiffrec's loss for the current stage and iteration: image terms plus the weighted
        regularizers. Returns ``(terms, buffers)``; the loss is ``sum(terms.values())``."""
        it, progress = self.pass_iteration, self.pass_iteration / max(1, self.pass_length)
        target = over_background(batch["img"], batch["background"])
        mesh, buffers = self.render(batch, with_smoothness=self.material_cfg.smoothness > 0)
        terms = {f"image_{k}": v for k, v in reconstruction_loss(buffers["shaded"], target, self.loss_kind).items()}
        if self.stage == "dmtet":
            weight = schedules.sdf_reg_weight(
                progress, self.dmtet_cfg.sdf_reg, self.dmtet_cfg.sdf_reg_end, self.dmtet_cfg.sdf_reg_ramp
            )
            terms["sdf_reg"] = self.geometry.sdf_reg_loss() * weight
            if self.geometry_kind == "flexicubes" and self.dmtet_cfg.dev_reg > 0:
                terms["flexicubes_dev"] = self.geometry.dev_loss() * self.dmtet_cfg.dev_reg
            if self.geometry_kind == "flexicubes" and self.dmtet_cfg.weight_reg > 0:
                terms["flexicubes_weights"] = self.geometry.weight_loss() * self.dmtet_cfg.weight_reg
        else:
            weight = schedules.laplace_weight(progress, self.mesh_cfg.laplace_scale)
            if weight > 0 and self.geometry.v_pos.requires_grad:
                offset = self.geometry.initial_pos if self.mesh_cfg.laplace == "relative" else None
                laplace = laplacian_loss(mesh.v_pos, mesh.t_pos_idx, kind="uniform", reference=offset)
                terms["laplace"] = laplace * weight
        ramp = schedules.ramp_up(it, self.material_cfg.smoothness_ramp)
        if self.material_cfg.smoothness > 0 and "kd_grad" in buffers:
            terms["material_smooth"] = buffers["kd_grad"].mean() * self.material_cfg.smoothness * ramp
        if self.material_cfg.occlusion_reg > 0 and "ks" in buffers:
            # nvdiffrec's visibility prior: mean(ks.occlusion * alpha); the buffer is already
            # multiplied by the coverage.
            terms["occlusion_reg"] = buffers["ks"][..., 0:1].mean() * self.material_cfg.occlusion_reg * ramp
        if self.light_trainable and self.light_cfg.reg > 0:
            terms["light_reg"] = self.light.regularizer() * self.light_cfg.reg
        return terms, buffers

    def _check_finite(self, total: Tensor, terms: Dict[str, Tensor]) -> None:
        if bool(torch.isfinite(total)):
            return
        detail = ", ".join(f"{k}={float(v.detach()):.6g}" for k, v in terms.items())
        raise NonFiniteLossError(
            f"non-finite loss at iteration {self.iteration} (pass {self.pass_number}, step {self.pass_iteration} "
            f"of the pass): total={float(total.detach())}; terms: {detail}. The run stopped; the last good "
            "checkpoint is kept (resume with --ckpt_path last after fixing the cause, e.g. lower learning rates)."
        )

    @torch.no_grad()
    def carve(self, batch: Dict[str, Tensor]) -> None:
        """Mark the grid vertices that the batch's views see as background and set every vertex
        marked so far outside (``dmtet.carve_silhouettes``; :mod:`dmtrec.render.carving`)."""
        seen = background_points(
            self.geometry.deformed_vertices(), self.cameras(batch), batch["img"][..., 3], self.dmtet_cfg.carve_margin
        )
        self._carved = seen if self._carved is None else self._carved | seen
        self.geometry.sdf.data = carved_sdf(self.geometry.sdf.data, self._carved)

    def _cleanup_due(self) -> bool:
        """Whether pass 1 cleans its SDF before this iteration (every ``morphology_every``; 0: never)."""
        every, it = self.dmtet_cfg.morphology_every, self.pass_iteration
        return every > 0 and it > 0 and it % every == 0

    def on_train_batch_start(self, batch: Dict[str, Tensor], batch_idx: int) -> None:
        # Here rather than in training_step: Lightning hooks its step counter into the
        # optimizers in use when the batch starts, so the new optimizer must exist by then.
        if self.about_to_bake:
            self._start_mesh_pass()
        elif self.stage == "dmtet" and self._cleanup_due():
            clean_sdf(self.geometry, self.dmtet_cfg.morphology, self.dmtet_cfg.morphology_steps)

    def training_step(self, batch: Dict[str, Tensor], batch_idx: int) -> Optional[Tensor]:
        if self.finished:
            self.trainer.should_stop = True
            return None
        optimizer = self.optimizers()
        rates = self._set_learning_rates(optimizer.optimizer)
        if self.stage == "dmtet" and self.dmtet_cfg.carve_silhouettes:
            self.carve(batch)
        terms, _ = self.loss_terms(batch)
        total = torch.stack(list(terms.values())).sum()
        self._check_finite(total, terms)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        optimizer.step()
        with torch.no_grad():  # nvdiffrec's projections: textures back into their ranges, light non-negative
            self.material.clamp_()
            if self.light_trainable:
                self.light.clamp_(min=0.0)
        self.iteration += 1

        if self.finished:
            self.trainer.should_stop = True

        batch_size = int(batch["img"].shape[0])
        # The progress bar's values every step; the rest only in the steps whose logs Lightning
        # writes (each self.log call costs ~0.3 ms of Python on a CPU, 4 ms a step for all).
        self.log("loss", total.detach(), prog_bar=True, batch_size=batch_size)
        self.log("pass", float(self.pass_number), prog_bar=True, batch_size=batch_size)
        if self._logs_written_this_step():
            self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=batch_size)
            self.log_dict({f"lr/{k}": v for k, v in rates.items()}, batch_size=batch_size)
            self.log("train/iteration", float(self.iteration), batch_size=batch_size)
        return total.detach()

    def _logs_written_this_step(self) -> bool:
        """Whether Lightning hands this training step's logged values to the loggers (every
        ``log_every_n_steps`` and at the last step), the check Lightning's own
        LearningRateMonitor makes; True outside a trainer or if Lightning no longer offers it."""
        trainer = self._trainer
        connector = getattr(trainer, "_logger_connector", None)
        if connector is None or trainer.fast_dev_run:
            return True
        try:
            return bool(connector.should_update_logs)
        except (AttributeError, NotImplementedError):
            return True

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate_batch(self, batch: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """Image metrics (nvdiffrec's convention, per view) and the render buffers of a batch."""
        _, buffers = self.render(batch)
        metrics = image_metrics(buffers["shaded"][..., :3], batch["img"], background=batch["background"])
        return metrics, buffers

    def _eval_step(self, batch: Dict[str, Tensor], batch_idx: int, prefix: str) -> None:
        metrics, buffers = self.evaluate_batch(batch)
        batch_size = int(batch["img"].shape[0])
        for k, v in metrics.items():
            # sync_dist: under data parallelism each rank holds a share of the views.
            self.log(
                f"{prefix}/{k}",
                v.mean(),
                batch_size=batch_size,
                prog_bar=(k == "psnr" and prefix == "val"),
                sync_dist=True,
            )
        if batch_idx == 0 and not self.trainer.sanity_checking and self.global_rank == 0:
            self._write_grid(batch, buffers, prefix)

    def validation_step(self, batch: Dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: Dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _write_grid(self, batch: Dict[str, Tensor], buffers: Dict[str, Tensor], prefix: str) -> None:
        grid = image_grid(over_background(batch["img"], batch["background"]), buffers, self.grid_views)
        name = f"{prefix}_{self.iteration:06d}"
        save_grid(Path(self.trainer.default_root_dir) / "images" / f"{name}.png", grid)
        log_grid(
            self.logger,
            f"{prefix}/grid",
            grid,
            self.iteration,
            caption=f"pass {self.pass_number}, iteration {self.iteration}",
        )

    @torch.no_grad()
    def reference_metrics(self, reference: Mesh) -> Dict[str, Any]:
        """Geometry report (Chamfer, F-score, ...) of the current surface against ``reference``."""
        if self.stage == "dmtet":
            pred = self.pass_one_surface()  # the surface that is exported
        else:
            mesh = self.geometry.mesh()
            pred = Mesh(v_pos=mesh.v_pos.detach(), t_pos_idx=mesh.t_pos_idx)
        return geometry_report(pred, reference.to(pred.device), n_samples=self.metric_samples)
