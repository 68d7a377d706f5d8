"""The optimisation half of ``dmtrec lod`` as a LightningModule: appearance-driven refinement of
every level of detail in turn, with its held-out evaluation (the method and its defaults:
:mod:`dmtrec.assets.lod`).

:class:`LodSystem` runs the whole chain of levels as one run, the way the fit's
:class:`~dmtrec.systems.pipeline.ReconstructionSystem` runs its two passes: its own iteration
counter (``settings.iterations`` per level), the next level prepared (decimated, unwrapped, its
textures transferred and the QEM-only baseline scored) at the batch where it starts, with a fresh
optimizer. Its state travels in the checkpoint (finished levels with their results, the current
level's parameters and Adam state), so an interrupted run resumes the level it was on and skips
finished ones; every random choice is seeded by (seed, level, iteration), so a resumed run gives
the same result as an uninterrupted one. A level whose optimisation loses to its start on the
validation views is trained a second time from its start with the positions frozen
(``settings.retry_frozen``, :mod:`dmtrec.assets.lod`): a second phase of the same level, with its
own ``settings.iterations`` steps and optimizer, started at the batch after the first ends. The
command drives it with the fit's trainer pieces (run folder, wandb logger, checkpoints, progress
bar: :mod:`dmtrec.runs.trainer`).

It reuses the fit's image losses (:func:`dmtrec.metrics.image_losses.reconstruction_loss`, log-L1
after nvdiffrec's tonemap) and the relative Laplacian of :mod:`dmtrec.geometry.regularizers`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from dmtrec.assets.lod import (
    Level,
    LodScene,
    LodSettings,
    decimate,
    error_in_pixels,
    geometric_error,
    level_resolution,
)
from dmtrec.assets.lod_transfer import transfer_textures
from dmtrec.core.mesh import Mesh
from dmtrec.geometry.regularizers import laplacian_loss
from dmtrec.geometry.uv_unwrap import uv_unwrap
from dmtrec.io.image import linear_to_srgb
from dmtrec.metrics.flip import flip_score
from dmtrec.metrics.image import image_metrics
from dmtrec.metrics.image_losses import over_background, reconstruction_loss
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.raster import get_rasterizer

from .grids import log_grid
from .level_chain import LevelChain

log = logging.getLogger(__name__)

FIRST, RETRY = "optimised", "optimised_frozen"
"""The phases of a level, and the names of their results in ``report.json`` (``kept``, ``validation``)."""

LAPLACE_SHARE = 0.05
"""The relative Laplacian's automatic weight makes it start at this share of the image loss if the
initial Laplacian loss were the displacement's (nvdiffmodeling: 0.25; see :mod:`dmtrec.assets.lod`)."""


def heldout_loss(
    scene: LodScene, mesh: Mesh, material: TexturedMaterial, resolution: int, split: str = "heldout"
) -> float:
    """The training objective's image term on the held-out (or ``"train"``) views over a mid-grey background."""
    cams, ref = scene.views(resolution)[split]
    with torch.no_grad():
        bg = torch.full((cams.batch_size, resolution, resolution, 3), 0.5)
        parts = reconstruction_loss(scene.render(mesh, material, cams, bg, split), over_background(ref, bg))
    return float(parts["alpha"] + parts["color"])


def _mesh_state(mesh: Mesh) -> Dict[str, Tensor]:
    return {
        "v_pos": mesh.v_pos.detach().clone(),
        "t_pos_idx": mesh.t_pos_idx.clone(),
        "v_tex": mesh.v_tex.detach().clone(),
        "t_tex_idx": mesh.t_tex_idx.clone(),
    }


def _mesh(state: Dict[str, Tensor], v_pos: Optional[Tensor] = None) -> Mesh:
    v_pos = state["v_pos"] if v_pos is None else v_pos
    return Mesh(v_pos, state["t_pos_idx"], v_tex=state["v_tex"], t_tex_idx=state["t_tex_idx"])


def _frozen(textures: Dict[str, Tensor]) -> TexturedMaterial:
    material = TexturedMaterial.from_tensors(**{k: v.detach().clone() for k, v in textures.items()})
    material.requires_grad_(False)
    return material


class LodSystem(LevelChain):
    """Every level of detail of one asset, optimised in turn (module docstring).

    Args:
        mesh, material, light: the original asset (with UVs) and the probe's light.
        budgets: triangle budgets, finest first (:func:`dmtrec.assets.lod.level_budgets`).
        settings: :class:`dmtrec.assets.lod.LodSettings`.
        rasterizer: a rasterizer for the mesh's device (default: ``get_rasterizer("auto")``).

    After a run, :meth:`levels` holds the levels (optimised mesh and material, images, report).
    """

    def __init__(
        self,
        mesh: Mesh,
        material: TexturedMaterial,
        light,
        budgets: Sequence[int],
        settings: LodSettings,
        rasterizer=None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.settings = settings
        self.budgets = [int(b) for b in budgets]
        self.original_faces = mesh.num_faces
        # A plain attribute, not a submodule: the original's textures stay out of the checkpoints.
        self.scene = LodScene(mesh, material, light, rasterizer or get_rasterizer("auto", mesh.device), settings)
        self.iteration = 0
        self.level_index = 0
        self.current: Optional[Dict[str, Any]] = None  # the level being optimised (or just finished)
        self.results: List[Dict[str, Any]] = []  # finished levels
        self.extra_iters = 0  # steps of the frozen-position retries started so far (they lengthen the run)
        self.offset: Optional[torch.nn.Parameter] = None  # displacement, in bounding-radius units
        self.material: Optional[TexturedMaterial] = None

    # ------------------------------------------------------------------ chain state
    @property
    def total_iters(self) -> int:
        # The frozen-position retries lengthen the run beyond LevelChain's iterations x levels.
        return self.settings.iterations * len(self.budgets) + self.extra_iters

    @property
    def level_iteration(self) -> int:
        """Steps taken in the current level's current phase (its optimisation, or its retry)."""
        if self.current is None:
            return 0
        return self.iteration - self.current.get("phase_start", self.level_index * self.settings.iterations)

    @property
    def _next_level(self) -> Optional[int]:
        """Index of the level the next batch must prepare first, or None."""
        if self.finished:
            return None
        if self.current is None:
            return 0
        return self.level_index + 1 if self.current["done"] else None

    @property
    def progress_label(self) -> str:
        faces = self.current["qem"]["t_pos_idx"].shape[0] if self.current is not None else self.budgets[0]
        retry = " retry, positions frozen," if self.current is not None and self.current.get("phase") == RETRY else ""
        return (
            f"level {self.level_index + 1}/{len(self.budgets)} ({faces} triangles){retry} "
            f"{self.level_iteration}/{self.settings.iterations}"
        )

    @property
    def pending_work(self) -> Optional[str]:
        index = self._next_level
        if index is None:
            return None
        return f"level {index + 1}/{len(self.budgets)}: decimate, UV unwrap, texture transfer, QEM-only scores"

    def current_mesh(self) -> Mesh:
        """The current level's mesh at its optimised positions (detached)."""
        state = self.current["qem"]
        return _mesh(state, state["v_pos"] + self.offset.detach() * self.scene.radius)

    def _advance(self) -> bool:
        """Finish a level whose iterations are done and prepare the next (or the level's retry);
        True if a level or a retry started (a new optimizer is then needed)."""
        started = False
        while not self.finished:
            index = self._next_level
            if index is not None:
                self._start_level(index)
                started = True
            elif self.current.get("retry_pending"):
                self._start_retry()
                started = True
            elif self.level_iteration >= self.settings.iterations:
                self._finish_level()
            else:
                break
        return started

    def _start_level(self, index: int) -> None:
        s, scene = self.settings, self.scene
        start, cpu_start = time.perf_counter(), time.process_time()
        budget = self.budgets[index]
        fraction = budget / self.original_faces
        resolution = level_resolution(fraction, s, index)
        unwrap = uv_unwrap(decimate(scene.mesh, budget), timeout_s=s.xatlas_timeout, texture_res=s.texture_res)
        qem = unwrap.mesh
        textures = transfer_textures(scene.mesh, scene.material, qem, s.texture_res, scene.rasterizer)
        qem_material = _frozen(textures)
        t_prep = time.perf_counter() - start
        views_start = time.perf_counter()
        scene.views(resolution)
        t_views = time.perf_counter() - views_start
        qem_eval = evaluate(scene, qem, qem_material, resolution, s.flip)
        images = qem_eval.pop("images")
        qem_eval["heldout_loss"] = heldout_loss(scene, qem, qem_material, resolution)
        error = geometric_error(scene.mesh, qem)
        error = {
            **error,
            **{f"{k}_px": error_in_pixels(scene.mesh, v, resolution, s.fovy) for k, v in error.items()},
        }
        laplace_weight = s.laplace_weight
        if laplace_weight is None:  # nvdiffmodeling's rule with the measured image loss (assets.lod)
            image = heldout_loss(scene, qem, qem_material, resolution, "train")
            laplace_weight = (
                LAPLACE_SHARE * image / max(float(laplacian_loss(qem.v_pos / scene.radius, qem.t_pos_idx)), 1e-12)
            )
        self.level_index = index
        self.current = {
            "index": index,
            "budget": budget,
            "fraction": fraction,
            "resolution": resolution,
            "uv_method": unwrap.method,
            "laplace_weight": float(laplace_weight),
            "qem": _mesh_state(qem),
            "qem_textures": {k: v.clone() for k, v in textures.items()},
            "qem_metrics": qem_eval,
            "qem_validation": validation_score(scene, qem, qem_material, resolution),
            "qem_images": images,
            "geometric_error": error,
            # Off by default: measured on the torus, freezing below a pixel gains 0.38 dB at 5 % and
            # loses 1.31 dB at 1 % (dmtrec.assets.lod).
            "freeze_positions": error["max_px"] < s.freeze_below_px,
            "seconds": {"decimate_unwrap_transfer": t_prep, "reference_views": t_views, "optimise": 0.0},
            "cpu": time.process_time() - cpu_start,
            "done": False,
            "phase": FIRST,
            "phase_start": self.iteration,
            "candidates": {},
        }
        self._make_parameters()
        log.info(
            "level %d/%d: %d triangles (budget %d) at %d px; QEM-only PSNR %.2f dB",
            index + 1,
            len(self.budgets),
            qem.num_faces,
            budget,
            resolution,
            qem_eval["psnr"],
        )

    def _make_parameters(self) -> None:
        """The current level's parameters: the displacement (zero) and its textures (the QEM-only ones)."""
        self.offset = torch.nn.Parameter(torch.zeros_like(self.current["qem"]["v_pos"]))
        self.material = TexturedMaterial.from_tensors(**{k: v.clone() for k, v in self.current["qem_textures"].items()})

    def _start_retry(self) -> None:
        """The level's second phase: its parameters back to the start, positions frozen."""
        cur = self.current
        cur.update(retry_pending=False, phase=RETRY, phase_start=self.iteration)
        self.extra_iters += self.settings.iterations
        self._make_parameters()
        log.info(
            "level %d/%d: the optimised level lost to its start on the validation views; "
            "training again from the start with the positions frozen",
            cur["index"] + 1,
            len(self.budgets),
        )

    def _score_candidate(self) -> Dict[str, Any]:
        """The current parameters as a finished candidate: mesh, textures, held-out scores and
        images, validation scores."""
        cur, scene, s = self.current, self.scene, self.settings
        mesh = self.current_mesh()
        textures = {k: v.clone() for k, v in self.material.to_tensors().items()}
        material = _frozen(textures)
        scores = evaluate(scene, mesh, material, cur["resolution"], s.flip)
        images = scores.pop("images")
        scores["heldout_loss"] = heldout_loss(scene, mesh, material, cur["resolution"])
        validation = validation_score(scene, mesh, material, cur["resolution"])
        return {
            "mesh": _mesh_state(mesh),
            "textures": textures,
            "scores": scores,
            "validation": validation,
            "images": images,
        }

    def _retry_wanted(self) -> bool:
        """Whether the first phase, with trained positions, lost to the start on the validation views."""
        cur, s = self.current, self.settings
        trained = not cur.get("freeze_positions") and "position" not in s.skip_train
        lost = cur["candidates"][FIRST]["validation"]["psnr"] <= cur["qem_validation"]["psnr"]
        return s.retry_frozen and s.iterations > 0 and cur.get("phase", FIRST) == FIRST and trained and lost

    def _finish_level(self) -> None:
        cur, s = self.current, self.settings
        start, cpu_start = time.perf_counter(), time.process_time()
        cur.setdefault("candidates", {})[cur.get("phase", FIRST)] = self._score_candidate()
        cur["seconds_evaluate"] = cur.get("seconds_evaluate", 0.0) + time.perf_counter() - start
        if self._retry_wanted():
            # Switched at the next batch (_advance), so that a checkpoint written in between
            # holds this phase's optimizer, which a resume rebuilds from this phase's settings.
            cur["retry_pending"] = True
            cur["cpu"] += time.process_time() - cpu_start
            return
        candidates = cur["candidates"]
        validation = {"start": cur["qem_validation"], **{name: c["validation"] for name, c in candidates.items()}}
        # Never worse: a level is written as optimised only if it scores higher than its start (and
        # than the other optimised candidate) on the validation views; the reported held-out views
        # take no part in the choice.
        kept = "start"
        for name in candidates:
            if validation[name]["psnr"] > validation[kept]["psnr"]:
                kept = name
        opt_eval = candidates[FIRST]["scores"]
        images = {"qem": cur["qem_images"], "optimised": candidates[FIRST]["images"]}
        if kept == "start":
            mesh, textures = _mesh(cur["qem"]), {k: v.clone() for k, v in cur["qem_textures"].items()}
            images["final"] = images["qem"]
        else:
            mesh, textures = _mesh(candidates[kept]["mesh"]), candidates[kept]["textures"]
            images["final"] = candidates[kept]["images"]
        final = cur["qem_metrics"] if kept == "start" else candidates[kept]["scores"]
        seconds = dict(cur["seconds"], evaluate=cur["seconds_evaluate"])
        seconds["total"] = sum(seconds.values())
        # CPU time of all threads: wall time on an idle machine is about this / threads.
        seconds["cpu"] = cur["cpu"] + time.process_time() - cpu_start
        report = {
            "budget": cur["budget"],
            "fraction": cur["fraction"],
            "triangles": int(mesh.num_faces),
            "resolution": cur["resolution"],
            "uv_method": cur["uv_method"],
            "laplace_weight": cur["laplace_weight"],
            "qem_only": cur["qem_metrics"],
            "optimised": opt_eval,
            "kept": kept,
            "final": final,
            "validation": validation,
            "geometric_error": cur["geometric_error"],
            "positions": (
                "frozen" if cur.get("freeze_positions") or "position" in s.skip_train or kept == RETRY else "trained"
            ),
            "train_loss": {"first": cur.get("first_loss"), "last": cur.get("last_loss")},
            "seconds": seconds,
        }
        if RETRY in candidates:
            report["optimised_frozen"] = candidates[RETRY]["scores"]
        self.results.append({"report": report, "mesh": _mesh_state(mesh), "textures": textures, "images": images})
        cur["candidates"] = {}  # the written level is in the results; the checkpoints need no second copy
        cur["done"] = True
        retried = (
            f", retried with frozen positions {candidates[RETRY]['scores']['psnr']:.2f} dB"
            if RETRY in candidates
            else ""
        )
        log.info(
            "level %d/%d: %d triangles, held-out PSNR %.2f dB (QEM-only %.2f dB, optimised %.2f dB%s; kept %s)",
            cur["index"] + 1,
            len(self.budgets),
            mesh.num_faces,
            report["final"]["psnr"],
            cur["qem_metrics"]["psnr"],
            opt_eval["psnr"],
            retried,
            kept,
        )
        self._log_level(report, images)

    def _log_level(self, report: Dict[str, Any], images: Dict[str, Tensor]) -> None:
        if self._trainer is None:
            return
        index = self.current["index"]
        metrics = {
            f"level{index}/{kind}_{name}": float(value)
            for kind, key in (("qem", "qem_only"), ("opt", "optimised"))
            for name, value in report[key].items()
        }
        metrics[f"level{index}/triangles"] = float(report["triangles"])
        reference = over_background(self.scene.views(report["resolution"])["heldout"][1][:1], torch.ones(1))
        row = torch.cat([reference[0, ..., :3], images["qem"][0], images["optimised"][0]], dim=1)
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)
            log_grid(logger, f"level{index}/original_qem_optimised", linear_to_srgb(row.clamp(0, 1)), self.global_step)

    def levels(self) -> List[Level]:
        """The finished levels, finest first."""
        out = []
        for index, result in enumerate(self.results):
            report = result["report"]
            level = Level(
                index,
                report["budget"],
                report["fraction"],
                report["resolution"],
                _mesh(result["mesh"]),
                _frozen(result["textures"]),
            )
            level.report, level.images = report, result["images"]
            out.append(level)
        return out

    def reference_images(self) -> Dict[int, Tensor]:
        """``{resolution: [B, H, W, 3]}``: the original's held-out views over white, per level resolution."""
        return {
            r["report"]["resolution"]: over_background(
                self.scene.views(r["report"]["resolution"])["heldout"][1], torch.ones(1)
            )[..., :3]
            for r in self.results
        }

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["dmtrec_lod"] = {
            **self.chain_state(),
            "current": self.current,
            "extra_iters": self.extra_iters,
        }

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint.get("dmtrec_lod")
        if state is None:
            raise ValueError("checkpoint has no dmtrec lod state (not written by dmtrec lod)")
        self.load_chain_state(state)
        self.current = state["current"]
        self.extra_iters = int(state.get("extra_iters", 0))
        if self.current is not None:
            self._make_parameters()  # of the saved shapes; load_state_dict fills them

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        if self.current is None:
            self._advance()  # a fresh run: level 0 (a resumed one has its level from the checkpoint)
        return self._make_optimizer()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """Adam over the trained parameters (all but ``settings.skip_train``), one group each."""
        s = self.settings
        texture_lr = s.lr if s.texture_lr is None else s.texture_lr
        trained = {
            "position": (self.offset, s.lr),
            "normal": (self.material.normal.data if self.material.normal is not None else None, texture_lr),
            "kd": (self.material.kd.data, texture_lr),
            "ks": (self.material.ks.data, texture_lr),
        }
        groups = []
        for name, (param, lr) in trained.items():
            if param is None:
                continue
            frozen = (
                name == "position"
                and self.current is not None
                and (self.current.get("freeze_positions", False) or self.current.get("phase") == RETRY)
            )
            param.requires_grad_(name not in s.skip_train and not frozen)
            if param.requires_grad:
                groups.append({"name": name, "params": [param], "lr": lr, "base_lr": lr})
        return torch.optim.Adam(groups)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Here rather than in training_step: Lightning hooks its step counter into the optimizers
        # in use when the batch starts, so a new level's optimizer must exist by then.
        if self._advance():
            self.trainer.strategy.optimizers = [self._make_optimizer()]

    def training_step(self, batch: Any, batch_idx: int) -> Optional[Tensor]:
        if self.finished:
            self.trainer.should_stop = True
            return None
        start, cpu_start = time.perf_counter(), time.process_time()
        s, scene, cur = self.settings, self.scene, self.current
        it, resolution = self.level_iteration, cur["resolution"]
        optimizer = self.optimizers()
        factor = 10 ** (-0.0002 * it)  # nvdiffmodeling's LambdaLR
        for group in optimizer.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        cams, ref = scene.views(resolution)["train"]
        generator = torch.Generator().manual_seed(s.seed + 1 + 7919 * cur["index"] + 104729 * it)
        pick = torch.randint(0, cams.batch_size, (min(s.batch, cams.batch_size),), generator=generator)
        bg = torch.rand(pick.numel(), resolution, resolution, 3, generator=generator)
        faces = cur["qem"]["t_pos_idx"]
        mesh = _mesh(cur["qem"], cur["qem"]["v_pos"] + self.offset * scene.radius)
        parts = reconstruction_loss(scene.render(mesh, self.material, cams[pick], bg), over_background(ref[pick], bg))
        lap = laplacian_loss(self.offset, faces)  # the Laplacian of the displacement: nvdiffmodeling's relative form
        loss = parts["color"] + parts["alpha"] + cur["laplace_weight"] * lap
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.material.clamp_()
        self.iteration += 1
        value = float(loss.detach())
        cur.setdefault("first_loss", value)
        cur["last_loss"] = value
        cur["seconds"]["optimise"] += time.perf_counter() - start
        cur["cpu"] += time.process_time() - cpu_start
        self.log("loss", value, prog_bar=True, batch_size=1)
        self.log_dict(
            {
                "level": float(cur["index"]),
                "train/color": float(parts["color"].detach()),
                "train/alpha": float(parts["alpha"].detach()),
                "train/laplace": float(lap.detach()),
                "lr": optimizer.optimizer.param_groups[0]["lr"] / optimizer.optimizer.param_groups[0]["base_lr"],
            },
            batch_size=1,
        )
        if self.level_iteration >= s.iterations:
            self._finish_level()
        if self.finished:
            self.trainer.should_stop = True
        return loss.detach()


# ----------------------------------------------------------------------------- evaluation


def evaluate(
    scene: LodScene, mesh: Mesh, material: TexturedMaterial, resolution: int, flip: bool = True, split: str = "heldout"
) -> dict:
    """Held-out (or ``split``) PSNR / SSIM (sRGB over white, nvdiffrec's convention) and FLIP if available.

    Returns the means and the rendered images ``"images"`` ``[B, H, W, 3]`` (linear, over white).
    """
    cams, ref = scene.views(resolution)[split]
    with torch.no_grad():
        white = torch.ones(cams.batch_size, resolution, resolution, 3)
        pred = scene.render(mesh, material, cams, white, split)[..., :3]
    metrics = image_metrics(pred, ref, background=1.0)
    out = {"psnr": float(metrics["psnr"].mean()), "ssim": float(metrics["ssim"].mean())}
    score = flip_score(pred, over_background(ref, white)[..., :3]) if flip else None
    if score is not None:
        out["flip"] = score
    out["images"] = pred
    return out


def validation_score(scene: LodScene, mesh: Mesh, material: TexturedMaterial, resolution: int) -> dict:
    """PSNR / SSIM on the validation views, which decide whether a level keeps its start."""
    out = evaluate(scene, mesh, material, resolution, flip=False, split="validation")
    out.pop("images")
    return out
