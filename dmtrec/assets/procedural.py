"""A procedural high-poly PBR asset: a displaced torus with kd, ks and fine-detail normal textures.

The torus is a periodic ``nu x nv`` grid (``2 nu nv`` triangles: 400 x 256 gives 204,800), closed and
edge-manifold, with a UV seam on each of its two circles (positions welded, UVs split). Its tube
surface is displaced along the normal by two octaves of bumps (medium ones a decimated mesh loses,
small ones it certainly loses); the normal map adds finer ridges still, the kd map is a coloured
tile pattern and the ks map varies roughness and metallic across the tiles. Everything follows
from the arguments: no randomness.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh
from dmtrec.core.types import PathLike
from dmtrec.io.obj import write_obj


def _displacement(u: Tensor, v: Tensor, amplitude: float) -> Tensor:
    """Bumps ``[...]`` at parameters ``u, v`` in [0, 1) (periodic)."""
    two_pi = 2 * math.pi
    return amplitude * (
        torch.sin(two_pi * 12 * u) * torch.sin(two_pi * 6 * v)
        + 0.35 * torch.sin(two_pi * 48 * u + 1.0) * torch.sin(two_pi * 20 * v)
    )


def displaced_torus(nu: int = 400, nv: int = 256, major: float = 1.0, minor: float = 0.4, amplitude: float = 0.03):
    """The displaced torus mesh (positions, faces, UVs): ``2 nu nv`` triangles.

    ``u`` runs around the main circle, ``v`` around the tube; UV ``(u, v)`` spans [0, 1]^2.
    """
    iu, iv = torch.meshgrid(torch.arange(nu), torch.arange(nv), indexing="ij")
    u, v = iu.double() / nu, iv.double() / nv
    phi, theta = 2 * math.pi * u, 2 * math.pi * v
    tube = minor + _displacement(u, v, amplitude)
    ring = major + tube * torch.cos(theta)
    pos = torch.stack([ring * torch.cos(phi), tube * torch.sin(theta), ring * torch.sin(phi)], -1).reshape(-1, 3)

    def vid(a: Tensor, b: Tensor, width: int, wrap: bool) -> Tensor:
        return ((a % nu) * width + (b % nv)) if wrap else (a * width + b)

    a, b = iu.reshape(-1), iv.reshape(-1)
    corners = [(a, b), (a + 1, b), (a + 1, b + 1), (a, b + 1)]
    quads_pos = [vid(x, y, nv, True) for x, y in corners]
    quads_tex = [vid(x, y, nv + 1, False) for x, y in corners]
    # Counter-clockwise seen from outside: (u, v) increase as (phi, theta) and the outward
    # normal is d/dtheta x d/dphi, so triangles go around as (0, 3, 2) and (0, 2, 1).
    t_pos = torch.cat(
        [
            torch.stack([quads_pos[0], quads_pos[3], quads_pos[2]], 1),
            torch.stack([quads_pos[0], quads_pos[2], quads_pos[1]], 1),
        ]
    )
    t_tex = torch.cat(
        [
            torch.stack([quads_tex[0], quads_tex[3], quads_tex[2]], 1),
            torch.stack([quads_tex[0], quads_tex[2], quads_tex[1]], 1),
        ]
    )
    tu, tv = torch.meshgrid(torch.arange(nu + 1), torch.arange(nv + 1), indexing="ij")
    v_tex = torch.stack([tu.reshape(-1).double() / nu, tv.reshape(-1).double() / nv], -1)
    return Mesh(pos.float(), t_pos.long(), v_tex=v_tex.float(), t_tex_idx=t_tex.long())


def procedural_textures(resolution: int = 1024) -> dict[str, Tensor]:
    """``{"kd", "ks", "normal"}`` ``[H, W, 3]`` maps (row 0 = top, v = 1) of the asset."""
    rows = torch.arange(resolution, dtype=torch.float64)
    v = 1.0 - (rows + 0.5) / resolution
    u = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    tile = ((torch.floor(uu * 16) + torch.floor(vv * 8)) % 2)[..., None]
    hue = torch.stack(
        [
            0.5 + 0.4 * torch.sin(2 * math.pi * uu),
            0.45 + 0.3 * torch.cos(2 * math.pi * vv * 2),
            0.35 + 0.25 * torch.sin(2 * math.pi * (uu + vv)),
        ],
        -1,
    )
    kd = (hue * (0.55 + 0.45 * tile)).clamp(0.02, 1.0) ** 2.2  # linear
    roughness = 0.25 + 0.6 * tile[..., 0]
    metallic = 0.8 * (1 - tile[..., 0]) * (torch.sin(2 * math.pi * 4 * uu) > 0).double()
    ks = torch.stack([torch.zeros_like(uu), roughness, metallic], -1)
    # Fine ridges as a height field; its texel-space gradient tilts the normal.
    height = torch.sin(2 * math.pi * 96 * uu) * torch.sin(2 * math.pi * 48 * vv)
    dh_du = torch.gradient(height, dim=1)[0] * resolution / (2 * math.pi * 96)
    dh_dv = -torch.gradient(height, dim=0)[0] * resolution / (2 * math.pi * 48)
    normal = torch.nn.functional.normalize(torch.stack([-0.6 * dh_du, -0.6 * dh_dv, torch.ones_like(uu)], -1), dim=-1)
    return {"kd": kd.float(), "ks": ks.float(), "normal": normal.float()}


def write_procedural_asset(folder: PathLike, nu: int = 400, nv: int = 256, texture_res: int = 1024) -> Path:
    """Write ``folder/torus.obj`` (+ MTL and PNG maps) and return its path (``2 nu nv`` triangles)."""
    mesh = displaced_torus(nu, nv)
    return write_obj(Path(folder), mesh, procedural_textures(texture_res), name="torus")
