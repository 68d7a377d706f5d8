"""The system's calls into geometry, rendering and file IO, in one place.

Each function is one step of nvdiffrec's loop, named for what the pipeline needs; keeping the
calls here keeps :mod:`dmtrec.systems.pipeline` about the schedule and the state, not about
the other packages' signatures.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import Tensor

from dmtrec.geometry import Mesh
from dmtrec.geometry import ops as geometry_ops
from dmtrec.geometry.dmtet import DMTetGeometry
from dmtrec.geometry.flexicubes import FlexiCubesGeometry
from dmtrec.geometry.regularizers import laplacian_loss
from dmtrec.geometry.sdf_morphology import sdf_morphology
from dmtrec.geometry.uv_unwrap import uv_unwrap
from dmtrec.render.bake import bake_volumetric
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial, VolumetricMaterial
from dmtrec.render.render_mesh import render_mesh
from dmtrec.render.visibility import hidden_points

from .config import DMTetConfig, LightConfig, MaterialConfig

log = logging.getLogger(__name__)

TEXTURE_KEYS = ("kd", "ks", "normal")


# ---------------------------------------------------------------------- construction
def build_dmtet(cfg: DMTetConfig):
    """The pass-1 DMTet module (SDF + offsets on the configured tet grid)."""
    return DMTetGeometry(
        resolution=cfg.resolution,
        scale=cfg.scale,
        grid_file=cfg.grid_file,
        init=cfg.init,
        seed=cfg.seed,
        offset_bound=cfg.offset_bound,
    )


def build_flexicubes(cfg: DMTetConfig):
    """The pass-1 FlexiCubes module (SDF, offsets and per-cube weights on a voxel grid)."""
    if cfg.grid_file:
        raise ValueError("model.dmtet.grid_file: a tet grid file does not apply to model.geometry 'flexicubes'")
    return FlexiCubesGeometry(resolution=cfg.resolution, scale=cfg.scale, init=cfg.init, seed=cfg.seed)


def build_volumetric_material(cfg: MaterialConfig, geometry):
    """The pass-1 volumetric (hash-grid + MLP) material over the DMTet grid's bounding box."""
    lo, hi = geometry.grid_aabb()  # the grid's box (nvdiffrec getAABB), not the current surface's
    return VolumetricMaterial(
        aabb=torch.stack([lo, hi]),
        kd_range=(cfg.kd_min, cfg.kd_max),
        ks_range=(cfg.ks_min, cfg.ks_max),
        perturb_normals=cfg.normal_map,
        **cfg.volumetric,
    )


def build_light(cfg: LightConfig):
    """The environment light: from an HDR probe file, constant, or random (nvdiffrec)."""
    if cfg.init == "random":
        return EnvironmentLight.random(base_res=cfg.base_res, scale=0.5 * cfg.scale, bias=0.25 * cfg.scale)
    if cfg.init == "constant":
        return EnvironmentLight.constant(0.5 * cfg.scale, base_res=cfg.base_res)
    path = Path(cfg.init)
    if path.suffix.lower() != ".hdr":
        raise ValueError(f"model.light.init: expected 'random', 'constant' or a .hdr probe file, got {cfg.init!r}")
    return EnvironmentLight.from_hdr(path, base_res=cfg.base_res, scale=cfg.scale)


def complete_textures(textures: Dict[str, Tensor], cfg: MaterialConfig) -> Dict[str, Tensor]:
    """Fill missing kd / ks / normal maps of an input mesh: kd the middle of its range; ks
    occlusion 0, roughness the middle of its range, metallic 0 (nvdiffrec reads a mesh without
    ks as ks = 0, clamped into the range, and clears occlusion), each clamped into the configured
    range; the unperturbed normal (0, 0, 1)."""
    res = cfg.texture_res
    out = dict(textures)
    if "kd" not in out:
        out["kd"] = (0.5 * (torch.tensor(cfg.kd_min) + torch.tensor(cfg.kd_max))).expand(res, res, 3).clone()
    if "ks" not in out:
        ks_min, ks_max = torch.tensor(cfg.ks_min), torch.tensor(cfg.ks_max)
        ks = torch.stack([torch.tensor(0.0), 0.5 * (ks_min[1] + ks_max[1]), torch.tensor(0.0)])
        out["ks"] = torch.minimum(torch.maximum(ks, ks_min), ks_max).expand(res, res, 3).clone()
    if "normal" not in out and cfg.normal_map:
        out["normal"] = torch.tensor([0.0, 0.0, 1.0]).expand(res, res, 3).clone()
    return out


def build_textured_material(textures: Dict[str, Tensor], cfg: MaterialConfig):
    """The pass-2 material: learnable 2D textures clamped to the configured ranges."""
    normal = textures.get("normal") if cfg.normal_map else None
    return TexturedMaterial.from_tensors(
        kd=textures["kd"],
        ks=textures["ks"],
        normal=normal,
        kd_range=(cfg.kd_min, cfg.kd_max),
        ks_range=(cfg.ks_min, cfg.ks_max),
    )


def textured_material_like_state(state_dict: Dict[str, Tensor], prefix: str, cfg: MaterialConfig):
    """A pass-2 material with the texture shapes of a saved one (values come from
    ``load_state_dict``)."""
    # TexturedMaterial keeps each map as a Texture2D whose texels are the parameter "<key>.data".
    textures = {
        key: torch.zeros(state_dict[f"{prefix}{key}.data"].shape[-3:])
        for key in TEXTURE_KEYS
        if f"{prefix}{key}.data" in state_dict
    }
    return build_textured_material(complete_textures(textures, cfg), cfg)


def material_textures(material) -> Dict[str, Tensor]:
    """The pass-2 material's textures as plain ``[H, W, C]`` tensors (kd, ks, normal)."""
    return {k: v for k, v in material.to_tensors().items() if v is not None}


# ---------------------------------------------------------------------- per step
def render(
    mesh: Mesh, material, light, cameras, rasterizer, background: Tensor, with_smoothness: bool = False
) -> Dict[str, Tensor]:
    """Shade ``mesh`` (with normals and tangents) for ``cameras`` over ``background [B, H, W, 3]``.

    Returns the renderer's buffers: ``"shaded" [B, H, W, 4]`` (linear HDR composited over the
    background, coverage alpha), ``"kd"``, ``"ks"``, ``"normal"`` and, with
    ``with_smoothness``, ``"kd_grad" [B, H, W, 1]`` (kd change under a lookup jitter, zero
    where nothing is drawn).
    """
    return render_mesh(mesh, material, light, cameras, rasterizer, background=background, smoothness=with_smoothness)


def sdf_regularizer(geometry) -> Tensor:
    """nvdiffrec's SDF sign regularizer (BCE across sign-changing edges), unweighted."""
    return geometry.sdf_reg_loss()


def flexicubes_regularizer(geometry) -> Tensor:
    """FlexiCubes' L_dev of the geometry's last extraction, unweighted."""
    return geometry.dev_loss()


def laplacian(mesh: Mesh, reference: Optional[Tensor]) -> Tensor:
    """Uniform Laplacian of the positions, or of the displacement from ``reference`` (unweighted)."""
    return laplacian_loss(mesh.v_pos, mesh.t_pos_idx, kind="uniform", reference=reference)


def light_regularizer(light) -> Tensor:
    return light.regularizer()


def after_step(material, light, clamp_light: bool = True) -> None:
    """Post-step projections as nvdiffrec: textures back into their ranges, light non-negative."""
    with torch.no_grad():
        material.clamp_()
        if clamp_light:
            light.clamp_(min=0.0)


# ---------------------------------------------------------------------- pass transition and files
def cleanup_due(pass_iteration: int, every: int) -> bool:
    """Whether pass 1 cleans its SDF before this iteration (every ``every`` iterations; 0: never)."""
    return every > 0 and pass_iteration > 0 and pass_iteration % every == 0


def clean_sdf(geometry, mode: str, steps: int) -> None:
    """Close / open the pass-1 SDF's inside set in place (spurious handles), ``"none"``: unchanged.
    A clean-up that would leave no surface (every vertex on one side) is skipped with a warning:
    on a grid too coarse for the shape, every part is as thin as the bridges opening cuts (Spot on
    the quick start's grid 48 opened to nothing), and the fit would end with nothing to bake."""
    if mode == "none":
        return
    with torch.no_grad():
        cleaned = sdf_morphology(geometry.sdf, geometry.edges, mode, steps)
        inside = int((cleaned > 0).sum())
        if 0 < inside < cleaned.numel():
            geometry.sdf.copy_(cleaned)
            return
    before = int((geometry.sdf > 0).sum())
    log.warning(
        "model.dmtet.morphology: %s would leave %s of the grid's %d vertices inside (%d before), i.e. no surface: "
        "skipped (the grid is too coarse for the shape's thinnest parts)",
        mode,
        "none" if inside == 0 else "all",
        cleaned.numel(),
        before,
    )


def drop_small_components(mesh: Mesh, min_fraction: float) -> Mesh:
    """Remove floaters: pieces with fewer than ``min_fraction`` of the largest piece's faces."""
    return geometry_ops.drop_small_components(mesh, min_fraction)


@torch.no_grad()
def filled_sdf(geometry, rasterizer, views: int, min_component_fraction: float = 0.0) -> Tensor:
    """``[V]`` the pass-1 SDF with every outside grid vertex that none of ``views`` cameras around
    the grid sees set just inside (:func:`dmtrec.render.visibility.hidden_points`); the surface the
    cameras see keeps its exact zero crossings, hidden pockets and tunnels close. The cameras look
    past the floaters :func:`drop_small_components` would drop (``min_component_fraction``), which
    would otherwise hide what lies behind them and fill it.

    The depth maps' resolution follows the grid (a pixel about a quarter of a grid cell at the
    grids' 25/64 cubes per resolution step), so the 2-pixel gap filter stays below half a cell.
    """
    sdf = geometry.sdf.detach()
    inside = float((sdf > 0).float().mean())
    if inside > 0.5:
        # A random start (nvdiffrec's, ~90 % inside) leaves most of the grid inside after a short
        # fit: the object is carved out of solid, its outside is a thin air layer that would be
        # "hidden" and filled (a tiny Spot fit went from 17 to 14 dB). Filling needs an outside
        # exterior, e.g. a sphere start.
        log.warning("fill_hidden_views: %.0f %% of the grid is inside; not filling", 100 * inside)
        return sdf
    mesh = drop_small_components(geometry.mesh(with_uv=False), min_component_fraction)
    radius = 0.5 * math.sqrt(3.0) * geometry.scale
    resolution = max(128, round(8 * geometry.resolution / 3))
    hidden = hidden_points(mesh, geometry.deformed_vertices(), rasterizer, radius, views, resolution)
    # The magnitude of an inside value only moves crossings on the edges it now touches, all hidden.
    return torch.where(hidden & (sdf <= 0), sdf.abs().clamp_min(1e-4), sdf)


def unwrap(mesh: Mesh) -> Mesh:
    """UV-unwrap with xatlas (in a subprocess, with a per-triangle fallback)."""
    return uv_unwrap(mesh).mesh


def bake(mesh: Mesh, material, rasterizer, resolution: int) -> Dict[str, Tensor]:
    """Bake the volumetric material over the unwrapped mesh into 2D textures ``[R, R, C]``."""
    return material_textures(bake_volumetric(mesh, material, rasterizer, resolution))
