"""Appearance-driven levels of detail (Hasselgren et al. 2021, "nvdiffmodeling") for PBR game assets.

Per level: quadric edge-collapse decimation to the triangle budget (``fast-simplification``),
an xatlas UV atlas (:func:`dmtrec.geometry.uv_unwrap.uv_unwrap`), textures transferred from the
original by closest-surface lookup (:mod:`.lod_transfer`; this "QEM-only" mesh is the
baseline), then optimisation of the vertex positions, a tangent-space normal map and the kd / ks
textures so that PBR renders of the level under the probe match renders of the original.

Viewing distance. A level holding a fraction ``f`` of the original's triangles is meant to be
shown while the asset covers about ``f`` of the screen *area* (constant triangles per pixel),
i.e. ``sqrt(f)`` of its height: on a screen where the whole asset spans ``res`` pixels, the
level spans ``res * sqrt(f)``. Each level is therefore judged (trained and evaluated) on views
framing the asset's bounding sphere at ``max(min_res, round(res * sqrt(f)))`` pixels, each
pixel supersampled ``spp x spp`` (nvdiffmodeling trains far levels at low resolution with
many samples per pixel). ``lods.glb``'s ``MSFT_screencoverage`` hints follow the same rule: a
level is shown down to the geometric mean of its ``f`` and the next level's.

Defaults (:class:`LodSettings`) and where they come from (nvdiffmodeling ``train.py`` and
``configs/*.json``):

* Adam, learning rate 0.01 for every parameter (``train.py``'s default), decayed by
  ``10 ** (-0.0002 * it)`` (its ``LambdaLR``); positions are optimised in units of the asset's
  bounding-sphere radius (nvdiffmodeling normalises meshes to unit size for the same reason).
* log-L1 image loss (``--loss logl1``, its default) on renders composited over random per-pixel
  background colours (``randomBgColor``), plus nvdiffrec's alpha MSE
  (:func:`dmtrec.systems.losses.reconstruction_loss`).
* relative Laplacian on the positions (``relative_laplacian``), weighted as nvdiffmodeling weights
  its Laplacian when no factor is given: ``0.25 * 0.1 / L`` with ``L`` the Laplacian loss of the
  initial mesh (its "assume RMSE ~= 0.1" rule; for the relative form, whose initial value is 0,
  ``L`` is taken of the initial positions themselves, in bounding-radius units). A fixed weight
  (``laplace_weight``) overrides it.
* minimum roughness 0.08 (``--min-roughness``), random views over the sphere (its
  ``random_rotation_translation``), batch 8 (its configs), texture resolution 1024 and 5000
  iterations on a GPU. The CPU defaults here are smaller (batch 4, 512^2 textures, 200
  iterations, a pool of pre-rendered reference views instead of a fresh view per iteration);
  all are settings.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from dmtrec.assets.lod_transfer import transfer_textures
from dmtrec.assets.views import load_asset, load_probe, render_reference, view_cameras
from dmtrec.geometry.mesh import Mesh
from dmtrec.geometry.regularizers import laplacian_loss
from dmtrec.geometry.uv_unwrap import uv_unwrap
from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.metrics.image import image_metrics
from dmtrec.metrics.topology import mesh_topology
from dmtrec.render.camera import Cameras
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.raster import get_rasterizer
from dmtrec.render.render_mesh import render_mesh
from dmtrec.systems.losses import composite, reconstruction_loss

log = logging.getLogger(__name__)

MIN_BUDGET = 4
BUDGET_SLACK = 0.95
"""A level has at most its budget of triangles and at least this fraction of it."""


@dataclass
class LodSettings:
    """Settings of ``dmtrec lod`` (see the module docstring for where the defaults come from).

    Attributes:
        res: screen height (pixels) on which the whole asset would fill the view; level ``f``
            is judged at ``res * sqrt(f)`` pixels (at least ``min_res``).
        min_res: smallest level resolution.
        level_res: per-level resolutions overriding ``res`` / ``min_res`` (one per level).
        spp: supersampling per axis of training and evaluation renders (both sides).
        iterations, batch, lr: optimisation steps, views per step, Adam learning rate.
        laplace_weight: weight of the relative Laplacian (positions in bounding-radius units);
            None: nvdiffmodeling's automatic factor (module docstring).
        texture_res: side of the kd / ks / normal textures of each level.
        train_views, heldout_views: pool of reference views optimised on / held out for metrics.
        fovy: camera field of view in degrees; views frame the bounding sphere.
        probe_res: cube-map face size of the probe's light.
        seed: the views and the background noise.
        xatlas_timeout: seconds before UV unwrapping falls back to a per-triangle atlas.
        flip: compute FLIP on held-out views when ``flip-evaluator`` is installed.
    """

    res: int = 512
    min_res: int = 64
    level_res: Optional[list] = None
    spp: int = 2
    iterations: int = 200
    batch: int = 4
    lr: float = 0.01
    laplace_weight: Optional[float] = None
    texture_res: int = 512
    train_views: int = 24
    heldout_views: int = 6
    fovy: float = 45.0
    probe_res: int = 64
    seed: int = 0
    xatlas_timeout: float = 120.0
    flip: bool = True
    log_every: int = 25


@dataclass
class Level:
    """One level of detail: its mesh (with UVs) and material, and what it measured."""

    index: int
    budget: int
    fraction: float
    resolution: int
    mesh: Mesh
    material: TexturedMaterial
    qem_mesh: Mesh = None
    qem_material: TexturedMaterial = None
    report: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- inputs


def check_closed_manifold(mesh: Mesh, path) -> dict:
    """The mesh's topology; ``ValueError`` (one line naming ``path``) if it is not a closed edge-manifold surface."""
    if mesh.is_empty:
        raise ValueError(f"{path}: mesh has no triangles")
    topo = mesh_topology(mesh.v_pos, mesh.t_pos_idx)
    if not topo["edge_manifold"]:
        raise ValueError(f"{path}: mesh is not edge-manifold (edges shared by more than two triangles)")
    if topo["boundary_edges"]:
        raise ValueError(f"{path}: mesh is open ({topo['boundary_edges']} boundary edges); lod needs a closed surface")
    return topo


def level_budgets(
    num_faces: int, levels: Optional[Sequence[float]] = None, faces: Optional[Sequence[int]] = None, path=""
) -> list[int]:
    """Triangle budgets, finest first, from fractions of ``num_faces`` or absolute counts.

    Raises ``ValueError`` for a budget above the input's count or below :data:`MIN_BUDGET`.
    """
    if (levels is None) == (faces is None):
        raise ValueError(f"{path}: give either level fractions or face counts")
    if levels is not None:
        bad = [f for f in levels if not 0.0 < f <= 1.0]
        if bad:
            raise ValueError(f"{path}: level fractions must be in (0, 1], got {bad[0]}")
        budgets = [int(math.floor(f * num_faces)) for f in levels]
    else:
        budgets = [int(f) for f in faces]
    for budget in budgets:
        if budget > num_faces:
            raise ValueError(f"{path}: budget of {budget} triangles is above the mesh's {num_faces}")
        if budget < MIN_BUDGET:
            raise ValueError(f"{path}: budget of {budget} triangles is below the minimum of {MIN_BUDGET}")
    return sorted(budgets, reverse=True)


def level_resolution(fraction: float, settings: LodSettings, index: int) -> int:
    """Image size at which a level of ``fraction`` of the triangles is judged (module docstring)."""
    if settings.level_res:
        return int(settings.level_res[index])
    return int(min(settings.res, max(settings.min_res, round(settings.res * math.sqrt(fraction)))))


# ----------------------------------------------------------------------------- decimation


def decimate(mesh: Mesh, budget: int) -> Mesh:
    """Quadric edge-collapse decimation of ``mesh``'s positions to at most ``budget`` triangles.

    Uses ``fast-simplification`` (sp4cerat's QEM, MIT). Degenerate triangles and unused vertices
    are dropped. When the result falls short of :data:`BUDGET_SLACK` of the budget (collapses
    remove two triangles at a time and degenerates are dropped), the target is raised and the
    run repeated. Returns a mesh with positions and faces only.
    """
    import fast_simplification  # lazy: optional dependency (extra "lod")

    points = mesh.v_pos.detach().cpu().double().numpy()
    triangles = mesh.t_pos_idx.cpu().numpy().astype(np.int64)
    if budget >= triangles.shape[0]:
        return _compact(points, triangles, mesh.v_pos.device)
    target = budget
    best = None
    for _ in range(8):
        v, f = fast_simplification.simplify(points, triangles, target_count=min(target, triangles.shape[0]))
        f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
        if f.shape[0] <= budget:
            best = (v, f)
            if f.shape[0] >= BUDGET_SLACK * budget:
                break
            target += max(1, budget - f.shape[0])
        else:
            target -= max(1, f.shape[0] - budget)
    if best is None:
        raise ValueError(f"decimation could not reach the budget of {budget} triangles")
    return _compact(best[0], best[1], mesh.v_pos.device)


def _compact(points: np.ndarray, faces: np.ndarray, device) -> Mesh:
    used, inverse = np.unique(faces.reshape(-1), return_inverse=True)
    return Mesh(
        torch.from_numpy(points[used].astype(np.float32)).to(device),
        torch.from_numpy(inverse.reshape(-1, 3).astype(np.int64)).to(device),
    )


# ----------------------------------------------------------------------------- optimisation


class LodScene:
    """The original asset under the probe, and its reference views for one resolution."""

    def __init__(self, mesh: Mesh, material: TexturedMaterial, light, rasterizer, settings: LodSettings):
        self.mesh, self.material, self.light, self.rasterizer = mesh, material, light, rasterizer
        self.settings = settings
        pos = mesh.v_pos.detach()
        self.centre = (pos.min(0).values + pos.max(0).values) / 2
        self.radius = float((pos - self.centre).norm(dim=-1).max())
        self._views: dict = {}

    def views(self, resolution: int) -> dict:
        """``{"train": (cameras, rgba), "heldout": (cameras, rgba)}`` at ``resolution`` (rendered once)."""
        if resolution not in self._views:
            s = self.settings
            out = {}
            for split, n, seed in (("train", s.train_views, s.seed), ("heldout", s.heldout_views, s.seed + 7919)):
                cams = view_cameras("sphere", n, self.mesh, s.fovy, resolution, seed)
                out[split] = (
                    cams,
                    render_reference(self.mesh, self.material, self.light, cams, self.rasterizer, s.spp),
                )
            self._views[resolution] = out
        return self._views[resolution]

    def render(self, mesh: Mesh, material: TexturedMaterial, cameras: Cameras, background: Tensor) -> Tensor:
        """``[B, H, W, 4]`` PBR render of a level over ``background`` (colour composited, coverage alpha)."""
        return render_mesh(
            mesh,
            material,
            self.light,
            cameras,
            self.rasterizer,
            background=background,
            spp=self.settings.spp,
            smoothness=False,
        )["shaded"]


def heldout_loss(scene: LodScene, mesh: Mesh, material: TexturedMaterial, resolution: int) -> float:
    """The training objective's image term on the held-out views over a mid-grey background."""
    cams, ref = scene.views(resolution)["heldout"]
    with torch.no_grad():
        bg = torch.full((cams.batch_size, resolution, resolution, 3), 0.5)
        parts = reconstruction_loss(scene.render(mesh, material, cams, bg), composite(ref, bg))
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
    optimizer = torch.optim.Adam([offset, *material.parameters()], lr=s.lr)
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
        parts = reconstruction_loss(render, composite(ref[pick], bg))
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
    score = flip_score(pred, composite(ref, white)[..., :3]) if flip else None
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


# ----------------------------------------------------------------------------- the whole run


def load_lod_inputs(mesh_path, probe_path, settings: LodSettings, device="cpu"):
    """Read and check the asset and the probe: ``(mesh with UVs, material, light, topology, notes)``.

    A mesh without UVs is unwrapped (its textures, if any, cannot apply then: factors are used).
    """
    notes = []
    mesh, material = load_asset(mesh_path, device)
    topology = check_closed_manifold(mesh, mesh_path)
    if mesh.v_tex is None:
        notes.append("the mesh had no UVs: unwrapped, material taken as constant factors")
        mesh = uv_unwrap(mesh, timeout_s=settings.xatlas_timeout).mesh
        textures = material.to_tensors()
        material = TexturedMaterial.from_tensors(
            kd=textures["kd"].mean((0, 1), keepdim=True), ks=textures["ks"].mean((0, 1), keepdim=True)
        )
        material.requires_grad_(False)
    light = load_probe(probe_path, settings.probe_res, device=device)
    return mesh, material, light, topology, notes


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
        level.resolution: composite(scene.views(level.resolution)["heldout"][1], torch.ones(1))[..., :3]
        for level in levels
    }
    return levels, {"reference_images": reference_images, "radius": scene.radius}


def contact_sheet(path, levels: Sequence[Level], references: dict, view: int = 0, cell: int = 192) -> None:
    """PNG grid: one row per level, columns original | QEM-only | optimised (held-out view ``view``)."""
    rows = []
    for level in levels:
        images = [references[level.resolution][view], level.images["qem"][view], level.images["optimised"][view]]
        cells = [
            torch.nn.functional.interpolate(img.permute(2, 0, 1)[None], size=(cell, cell), mode="nearest")[0]
            for img in images
        ]
        rows.append(torch.cat(cells, 2))
    sheet = torch.cat(rows, 1).permute(1, 2, 0)
    write_png(path, linear_to_srgb(sheet.clamp(0, 1)))


def settings_dict(settings: LodSettings) -> dict:
    return asdict(settings)
