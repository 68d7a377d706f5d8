"""Procedural test objects of known topology for the validation suite (issue 31): shapes that
stress what real objects have (holes of genus 1 and 2, thin fins and handles, deep concavities),
each an SDF (dmtrec's convention: positive inside) extracted with marching tetrahedra, plus a
parametric genus-0 pebble that carries a high-frequency texture.

Every shape is Y-up, fits in ``[-1, 1]^3``, and states its true genus and component count
(:data:`SHAPES`); the tests check them against :func:`dmtrec.metrics.topology.mesh_topology`.
Everything follows from the arguments: no randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Tuple

import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh
from dmtrec.core.types import PathLike
from dmtrec.geometry.marching_tets import marching_tetrahedra
from dmtrec.geometry.tetgrid import tet_grid
from dmtrec.io.obj import write_obj

# ---------------------------------------------------------------- SDF primitives ([N, 3] -> [N])


def _torus(p: Tensor, center, major: float, minor: float, axis: int = 1) -> Tensor:
    """A torus around the coordinate ``axis`` through ``center``."""
    q = p - torch.as_tensor(center, dtype=p.dtype)
    plane = [i for i in range(3) if i != axis]
    ring = q[:, plane].norm(dim=1) - major
    return minor - torch.sqrt(ring**2 + q[:, axis] ** 2)


def _capped_cylinder(p: Tensor, radius: float, y0: float, y1: float) -> Tensor:
    """A Y-axis cylinder of ``radius`` between heights ``y0 < y1`` (exact SDF)."""
    dr = p[:, [0, 2]].norm(dim=1) - radius
    dy = torch.maximum(y0 - p[:, 1], p[:, 1] - y1)
    outside = torch.stack([dr.clamp_min(0), dy.clamp_min(0)], 1).norm(dim=1)
    return -(outside + torch.maximum(dr, dy).clamp_max(0))


def _box(p: Tensor, center, half) -> Tensor:
    q = (p - torch.as_tensor(center, dtype=p.dtype)).abs() - torch.as_tensor(half, dtype=p.dtype)
    return -(q.clamp_min(0).norm(dim=1) + q.max(dim=1).values.clamp_max(0))


def _smooth_union(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Union with a fillet of size ``k`` (polynomial smooth max, inside positive)."""
    h = (0.5 + 0.5 * (a - b) / k).clamp(0, 1)
    return b + (a - b) * h + k * h * (1 - h)


def cup_sdf(p: Tensor) -> Tensor:
    """Genus 0, a deep concavity: a cylindrical cup, 1.2 wide, its well 1.25 deep."""
    outer = _capped_cylinder(p, 0.6, -0.7, 0.7)
    well = _capped_cylinder(p, 0.48, -0.55, 1.0)
    return torch.minimum(outer, -well)


def mug_sdf(p: Tensor) -> Tensor:
    """Genus 1, a thin handle (tube 0.12 across) on the cup (moved -0.2 in x to fit)."""
    p = p + torch.tensor([0.2, 0.0, 0.0], dtype=p.dtype)
    handle = _torus(p, (0.72, 0.0, 0.0), 0.32, 0.06, axis=2)
    well = _capped_cylinder(p, 0.48, -0.55, 1.0)
    return torch.minimum(torch.maximum(cup_sdf(p), handle), -well)


def fins_sdf(p: Tensor) -> Tensor:
    """Genus 0, thin fins: a hub with twelve radial fins 0.08 thick (two cells of a 64-grid over
    2.4) and a disk cap."""
    hub = _capped_cylinder(p, 0.3, -0.8, 0.8)
    shape = hub
    for k in range(6):
        angle = k * math.pi / 6  # six slabs through the hub: twelve fins
        c, s = math.cos(angle), math.sin(angle)
        q = torch.stack([c * p[:, 0] + s * p[:, 2], p[:, 1], -s * p[:, 0] + c * p[:, 2]], 1)
        shape = torch.maximum(shape, _box(q, (0.0, 0.0, 0.0), (0.9, 0.6, 0.04)))
    return torch.maximum(shape, _capped_cylinder(p, 0.75, 0.6, 0.68))


def torus_sdf(p: Tensor) -> Tensor:
    """Genus 1: a torus lying flat (around Y), tilted a little so no view is axis-aligned."""
    c, s = math.cos(0.35), math.sin(0.35)
    q = torch.stack([p[:, 0], c * p[:, 1] - s * p[:, 2], s * p[:, 1] + c * p[:, 2]], 1)
    return _torus(q, (0.0, 0.0, 0.0), 0.7, 0.25)


def double_torus_sdf(p: Tensor) -> Tensor:
    """Genus 2: two tori (around Y) side by side, merged with a fillet."""
    a = _torus(p, (-0.42, 0.0, 0.0), 0.4, 0.17)
    b = _torus(p, (0.42, 0.0, 0.0), 0.4, 0.17)
    return _smooth_union(a, b, 0.08)


def button_sdf(p: Tensor) -> Tensor:
    """Genus 2: a thick round button (disk 1.6 across, 0.3 thick) with two holes 0.36 across,
    lying flat (around Y)."""
    disk = _capped_cylinder(p, 0.8, -0.15, 0.15)
    holes = [_capped_cylinder(p - torch.tensor([x, 0.0, 0.0], dtype=p.dtype), 0.18, -1.0, 1.0) for x in (-0.3, 0.3)]
    return torch.minimum(disk, -torch.maximum(*holes))


def sdf_mesh(sdf: Callable[[Tensor], Tensor], resolution: int = 128, extent: float = 2.2) -> Mesh:
    """The zero set of ``sdf`` in the cube of side ``extent`` by marching tetrahedra on a
    generated grid of ``resolution``; a closed edge-manifold mesh (watertight, outward)."""
    grid = tet_grid(resolution)
    # shifted off the shapes' round coordinates: an SDF exactly 0 at a grid vertex would collapse
    # triangles there (degenerate, non-manifold once welded)
    verts = grid.vertices.double() * extent + torch.tensor([1.234e-3, 0.713e-3, 0.377e-3], dtype=torch.float64)
    values = sdf(verts)
    mesh = marching_tetrahedra(verts.float(), values.float(), grid.tets, edges=grid.edges, tet_edges=grid.tet_edges)
    return Mesh(mesh.v_pos.detach(), mesh.t_pos_idx)


# ---------------------------------------------------------------- a textured parametric pebble


def pebble(nu: int = 256, nv: int = 128) -> Mesh:
    """Genus 0: a squashed, bumpy sphere as a lat-long grid with UVs (seam at ``u = 0``, poles
    as fans): ``2 nu (nv - 1)`` triangles. ``u`` runs around Y, ``v`` from the bottom pole."""
    iu = torch.arange(nu + 1, dtype=torch.float64)
    iv = torch.arange(1, nv, dtype=torch.float64)
    uu, vv = torch.meshgrid(iu / nu, iv / nv, indexing="ij")
    phi, theta = 2 * math.pi * uu, math.pi * vv
    radius = 0.85 + 0.06 * torch.sin(3 * phi) * torch.sin(theta) ** 2 + 0.04 * torch.cos(2 * theta)
    ring = radius * torch.sin(theta)
    pos = torch.stack([ring * torch.cos(phi), -0.8 * radius * torch.cos(theta), -ring * torch.sin(phi)], -1)
    rings = pos[:nu].reshape(-1, 3)  # u = 1 is u = 0: positions shared, UVs not
    bottom, top = torch.tensor([[0.0, -0.8 * 0.89, 0.0]]), torch.tensor([[0.0, 0.8 * 0.89, 0.0]])
    v_pos = torch.cat([rings, bottom.double(), top.double()]).float()
    rows = nv - 1
    south, north = nu * rows, nu * rows + 1
    tex = torch.stack([uu.reshape(-1), vv.reshape(-1)], -1)
    v_tex = torch.cat([tex, torch.stack([(iu + 0.5) / nu, torch.zeros(nu + 1, dtype=torch.float64)], -1)])
    v_tex = torch.cat([v_tex, torch.stack([(iu + 0.5) / nu, torch.ones(nu + 1, dtype=torch.float64)], -1)]).float()
    south_tex, north_tex = (nu + 1) * rows, (nu + 1) * rows + nu + 1
    a, b = torch.meshgrid(torch.arange(nu), torch.arange(rows - 1), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    p = lambda i, j: (i % nu) * rows + j  # noqa: E731
    t = lambda i, j: i * rows + j  # noqa: E731
    # counter-clockwise from outside: v climbs towards +Y, u turns clockwise seen from +Y
    quads_pos = torch.cat(
        [
            torch.stack([p(a, b), p(a + 1, b), p(a + 1, b + 1)], 1),
            torch.stack([p(a, b), p(a + 1, b + 1), p(a, b + 1)], 1),
        ]
    )
    quads_tex = torch.cat(
        [
            torch.stack([t(a, b), t(a + 1, b), t(a + 1, b + 1)], 1),
            torch.stack([t(a, b), t(a + 1, b + 1), t(a, b + 1)], 1),
        ]
    )
    i = torch.arange(nu)
    caps_pos = torch.cat(
        [
            torch.stack([torch.full_like(i, south), p(i + 1, 0), p(i, 0)], 1),
            torch.stack([torch.full_like(i, north), p(i, rows - 1), p(i + 1, rows - 1)], 1),
        ]
    )
    caps_tex = torch.cat(
        [
            torch.stack([south_tex + i, t(i + 1, 0), t(i, 0)], 1),
            torch.stack([north_tex + i, t(i, rows - 1), t(i + 1, rows - 1)], 1),
        ]
    )
    return Mesh(v_pos, torch.cat([quads_pos, caps_pos]), v_tex=v_tex, t_tex_idx=torch.cat([quads_tex, caps_tex]))


def stripes_texture(resolution: int = 1024) -> Tensor:
    """``[H, W, 3]`` linear kd: 64 x 32 checks with thin dark stripes between them, a hue
    gradient over the whole (detail a 256-texture pass 2 cannot hold at 1 texel per check edge)."""
    v = 1.0 - (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
    u = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    check = ((torch.floor(uu * 64) + torch.floor(vv * 32)) % 2)[..., None]
    stripe = ((torch.frac(uu * 64) < 0.12) | (torch.frac(vv * 32) < 0.12)).double()[..., None]
    hue = torch.stack(
        [0.55 + 0.4 * torch.sin(2 * math.pi * uu), 0.5 + 0.35 * torch.cos(2 * math.pi * vv), 0.35 + 0.2 * uu], -1
    )
    srgb = hue * (0.45 + 0.55 * check) * (1 - 0.8 * stripe)
    return (srgb.clamp(0.02, 1.0) ** 2.2).float()


# ---------------------------------------------------------------- named shapes


@dataclass(frozen=True)
class Shape:
    """A suite object: how to build it, its true topology and its material.

    ``kd``: linear base colour (ignored where ``textured``); ``roughness``, ``metallic``: the
    constant ks of the material (nvdiffrec's ORM: occlusion 0)."""

    build: Callable[[], Mesh]
    genus: int
    components: int
    kd: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    roughness: float = 0.6
    metallic: float = 0.0
    textured: bool = False


SHAPES: Dict[str, Shape] = {
    "cup": Shape(lambda: sdf_mesh(cup_sdf), 0, 1, kd=(0.55, 0.2, 0.12), roughness=0.55),
    "mug": Shape(lambda: sdf_mesh(mug_sdf), 1, 1, kd=(0.75, 0.72, 0.65), roughness=0.15),
    "fins": Shape(lambda: sdf_mesh(fins_sdf), 0, 1, kd=(0.2, 0.35, 0.6), roughness=0.6),
    "torus": Shape(lambda: sdf_mesh(torus_sdf), 1, 1, kd=(0.08, 0.3, 0.12), roughness=0.12),
    "double_torus": Shape(lambda: sdf_mesh(double_torus_sdf), 2, 1, kd=(0.9, 0.9, 0.92), roughness=0.3, metallic=1.0),
    "button": Shape(lambda: sdf_mesh(button_sdf), 2, 1, kd=(1.0, 0.72, 0.3), roughness=0.25, metallic=1.0),
    "pebble": Shape(pebble, 0, 1, roughness=0.5, textured=True),
}
"""The procedural suite objects (``genus``/``components`` are the true values)."""


def shape_textures(shape: Shape, resolution: int = 1024) -> Dict[str, Tensor]:
    """``{"kd", "ks"}`` maps of a shape's material: constant 1 x 1 unless textured."""
    kd = stripes_texture(resolution) if shape.textured else torch.tensor([[shape.kd]], dtype=torch.float32)
    ks = torch.tensor([[[0.0, shape.roughness, shape.metallic]]], dtype=torch.float32)
    return {"kd": kd, "ks": ks}


def write_shape(name: str, folder: PathLike, texture_res: int = 1024) -> Path:
    """Write ``folder/<name>.obj`` (+ MTL, PNG maps) for a :data:`SHAPES` entry; returns its path."""
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}: expected one of {', '.join(SHAPES)}")
    shape = SHAPES[name]
    mesh = shape.build()
    if mesh.v_tex is None:  # constant maps: every corner samples the one texel
        mesh = Mesh(
            mesh.v_pos,
            mesh.t_pos_idx,
            v_tex=torch.full((1, 2), 0.5),
            t_tex_idx=torch.zeros_like(mesh.t_pos_idx),
        )
    return write_obj(Path(folder), mesh, shape_textures(shape, texture_res), name=name)
