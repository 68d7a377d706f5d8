"""The optimisation half of ``dmtrec lod``: appearance-driven refinement of a level of detail, its
held-out evaluation and the per-level pipeline (the method and its defaults: :mod:`dmtrec.assets.lod`).

It lives in ``systems`` because it trains: it reuses the fit's image losses
(:func:`dmtrec.systems.losses.reconstruction_loss`, log-L1 after nvdiffrec's tonemap) and the
relative Laplacian of :mod:`dmtrec.geometry.regularizers`.
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from dmtrec.assets.lod import Level, LodScene, LodSettings, decimate, level_resolution
from dmtrec.assets.lod_transfer import transfer_textures
from dmtrec.core.mesh import Mesh
from dmtrec.geometry.regularizers import laplacian_loss
from dmtrec.geometry.uv_unwrap import uv_unwrap
from dmtrec.io.image import linear_to_srgb
from dmtrec.metrics.image import image_metrics
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.raster import get_rasterizer

from .losses import over_background, reconstruction_loss

log = logging.getLogger(__name__)


def heldout_loss(scene: LodScene, mesh: Mesh, material: TexturedMaterial, resolution: int) -> float:
    """The training objective's image term on the held-out views over a mid-grey background."""
    cams, ref = scene.views(resolution)["heldout"]
    with torch.no_grad():
        bg = torch.full((cams.batch_size, resolution, resolution, 3), 0.5)
        parts = reconstruction_loss(scene.render(mesh, material, cams, bg), over_background(ref, bg))
    return float(parts["alpha"] + parts["color"])


def optimise_level(
    scene: LodScene, mesh: Mesh, material: TexturedMaterial, resolution: int, iterations: Optional[int] = None
) -> tuple[Mesh, TexturedMaterial, list]:
    """Optimise positions, normal map, kd and ks of a level against the original's renders.

    Returns the optimised mesh (normals and tangents dropped: recomputed from the positions),
    its material and the per-iteration training losses.
    """
    s = scene.settings
    iterations = s.iterations if iterations is None else iterations
    cams, ref = scene.views(resolution)["train"]
    generator = torch.Generator().manual_seed(s.seed + 1)
    material = TexturedMaterial.from_tensors(**{k: v.detach().clone() for k, v in material.to_tensors().items()})
    v0 = mesh.v_pos.detach().clone()
    offset = torch.zeros_like(v0, requires_grad=True)  # in units of the bounding radius
    texture_lr = s.lr if s.texture_lr is None else s.texture_lr
    optimizer = torch.optim.Adam([{"params": [offset]}, {"params": material.parameters(), "lr": texture_lr}], lr=s.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 10 ** (-0.0002 * it))
    faces = mesh.t_pos_idx
    laplace_weight = s.laplace_weight
    if laplace_weight is None:
        laplace_weight = 0.25 * 0.1 / max(float(laplacian_loss(v0 / scene.radius, faces)), 1e-12)
    losses = []
    start = time.perf_counter()
    for it in range(iterations):
        pick = torch.randint(0, cams.batch_size, (min(s.batch, cams.batch_size),), generator=generator)
        bg = torch.rand(pick.numel(), resolution, resolution, 3, generator=generator)
        current = Mesh(v0 + offset * scene.radius, faces, v_tex=mesh.v_tex, t_tex_idx=mesh.t_tex_idx)
        render = scene.render(current, material, cams[pick], bg)
        parts = reconstruction_loss(render, over_background(ref[pick], bg))
        lap = laplacian_loss(offset, faces)  # the Laplacian of the displacement: nvdiffmodeling's relative form
        loss = parts["color"] + parts["alpha"] + laplace_weight * lap
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        material.clamp_()
        losses.append(float(loss.detach()))
        if s.log_every and (it % s.log_every == 0 or it == iterations - 1):
            log.info(
                "lod %d faces: iteration %d/%d loss %.5f (%.1f s)",
                faces.shape[0],
                it + 1,
                iterations,
                losses[-1],
                time.perf_counter() - start,
            )
    final = Mesh((v0 + offset.detach() * scene.radius), faces, v_tex=mesh.v_tex, t_tex_idx=mesh.t_tex_idx)
    material.requires_grad_(False)
    return final, material, losses


# ----------------------------------------------------------------------------- evaluation


def evaluate(scene: LodScene, mesh: Mesh, material: TexturedMaterial, resolution: int, flip: bool = True) -> dict:
    """Held-out PSNR / SSIM (sRGB over white, nvdiffrec's convention) and FLIP if available.

    Returns the means and the rendered held-out images ``"images"`` ``[B, H, W, 3]`` (linear, over white).
    """
    cams, ref = scene.views(resolution)["heldout"]
    with torch.no_grad():
        white = torch.ones(cams.batch_size, resolution, resolution, 3)
        pred = scene.render(mesh, material, cams, white)[..., :3]
    metrics = image_metrics(pred, ref, background=1.0)
    out = {"psnr": float(metrics["psnr"].mean()), "ssim": float(metrics["ssim"].mean())}
    score = flip_score(pred, over_background(ref, white)[..., :3]) if flip else None
    if score is not None:
        out["flip"] = score
    out["images"] = pred
    return out


def flip_score(pred: Tensor, ref: Tensor) -> Optional[float]:
    """Mean LDR FLIP (``flip-evaluator``) over views of linear ``[B, H, W, 3]`` images (sRGB-encoded first);
    None when ``flip-evaluator`` is not installed."""
    try:
        import flip_evaluator  # lazy: optional dependency (extra "lod")
    except ImportError:
        return None
    scores = []
    for p, r in zip(linear_to_srgb(pred.clamp(0, 1)), linear_to_srgb(ref.clamp(0, 1))):
        _, mean, _ = flip_evaluator.evaluate(
            np.ascontiguousarray(r.numpy(), dtype=np.float32),
            np.ascontiguousarray(p.numpy(), dtype=np.float32),
            "LDR",
            applyMagma=False,
        )
        scores.append(float(mean))
    return float(np.mean(scores))


def build_levels(
    mesh: Mesh, material: TexturedMaterial, light, budgets: Sequence[int], settings: LodSettings
) -> tuple[list[Level], dict]:
    """Decimate, unwrap, transfer, optimise and evaluate every level (finest first)."""
    rasterizer = get_rasterizer("auto", mesh.device)
    scene = LodScene(mesh, material, light, rasterizer, settings)
    original_faces = mesh.num_faces
    levels = []
    for index, budget in enumerate(budgets):
        start, cpu_start = time.perf_counter(), time.process_time()
        fraction = budget / original_faces
        resolution = level_resolution(fraction, settings, index)
        decimated = decimate(mesh, budget)
        unwrap = uv_unwrap(decimated, timeout_s=settings.xatlas_timeout, texture_res=settings.texture_res)
        qem = unwrap.mesh
        textures = transfer_textures(mesh, material, qem, settings.texture_res, rasterizer)
        qem_material = TexturedMaterial.from_tensors(**textures)
        qem_material.requires_grad_(False)
        t_prep = time.perf_counter() - start
        views_start = time.perf_counter()
        scene.views(resolution)
        t_views = time.perf_counter() - views_start
        qem_heldout = heldout_loss(scene, qem, qem_material, resolution)
        opt_start = time.perf_counter()
        opt_mesh, opt_material, losses = optimise_level(scene, qem, qem_material, resolution)
        t_opt = time.perf_counter() - opt_start
        qem_eval = evaluate(scene, qem, qem_material, resolution, settings.flip)
        opt_eval = evaluate(scene, opt_mesh, opt_material, resolution, settings.flip)
        level = Level(index, budget, fraction, resolution, opt_mesh, opt_material, qem, qem_material)
        level.images = {"qem": qem_eval.pop("images"), "optimised": opt_eval.pop("images")}
        level.report = {
            "budget": budget,
            "fraction": fraction,
            "triangles": opt_mesh.num_faces,
            "resolution": resolution,
            "uv_method": unwrap.method,
            "qem_only": {**qem_eval, "heldout_loss": qem_heldout},
            "optimised": {**opt_eval, "heldout_loss": heldout_loss(scene, opt_mesh, opt_material, resolution)},
            "train_loss": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None},
            "seconds": {
                "decimate_unwrap_transfer": t_prep,
                "reference_views": t_views,
                "optimise": t_opt,
                "total": time.perf_counter() - start,
                # CPU time of all threads: wall time on an idle machine is about this / threads.
                "cpu": time.process_time() - cpu_start,
            },
        }
        log.info(
            "level %d: %d triangles, PSNR %.2f dB (QEM-only %.2f dB)",
            index,
            opt_mesh.num_faces,
            opt_eval["psnr"],
            qem_eval["psnr"],
        )
        levels.append(level)
    reference_images = {
        level.resolution: over_background(scene.views(level.resolution)["heldout"][1], torch.ones(1))[..., :3]
        for level in levels
    }
    return levels, {"reference_images": reference_images, "radius": scene.radius}
