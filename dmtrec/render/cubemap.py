"""Cube map and latitude-longitude (equirectangular) geometry.

Cube maps are ``[6, S, S, C]`` in nvdiffrast's layout (faces +x, -x, +y, -y, +z, -z; texel
``[face, row, col]``), so that ``rasterizer.texture(cube[None], directions,
boundary_mode="cube")`` samples them. Latlong images ``[H, W, C]`` follow nvdiffrec: row 0 is
the +y pole, the image centre column looks down -z, and azimuth grows towards +x.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmtrec.geometry.normals import safe_normalize


def _face_grid(res: int, device, dtype) -> tuple:
    """Texel-centre coordinates in [-1, 1]: ``(x [S, S], y [S, S])`` with x along columns."""
    c = (torch.arange(res, device=device, dtype=dtype) + 0.5) * (2.0 / res) - 1.0
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y


def face_to_direction(face: int, x: Tensor, y: Tensor) -> Tensor:
    """Unnormalized direction ``[..., 3]`` of face-local coordinates ``x, y`` in [-1, 1]
    (the inverse of nvdiffrast's cube face selection)."""
    one = torch.ones_like(x)
    axes = {
        0: (one, -y, -x),
        1: (-one, -y, x),
        2: (x, one, y),
        3: (x, -one, -y),
        4: (x, -y, one),
        5: (-x, -y, -one),
    }[face]
    return torch.stack(axes, dim=-1)


def cube_directions(res: int, device=None, dtype=torch.float32) -> Tensor:
    """Unit directions of the texel centres of an ``S = res`` cube map: ``[6, S, S, 3]``."""
    x, y = _face_grid(res, device, dtype)
    return safe_normalize(torch.stack([face_to_direction(f, x, y) for f in range(6)], 0))


def cube_texel_solid_angles(res: int, device=None, dtype=torch.float32) -> Tensor:
    """Exact solid angle of every texel ``[6, S, S]``; they sum to ``4 pi``."""
    edges = torch.linspace(-1.0, 1.0, res + 1, device=device, dtype=torch.float64)

    def corner_area(x: Tensor, y: Tensor) -> Tensor:
        # Solid angle of the face rectangle [0, x] x [0, y] seen from the cube centre.
        return torch.atan2(x * y, torch.sqrt(x * x + y * y + 1.0))

    y0, x0 = torch.meshgrid(edges[:-1], edges[:-1], indexing="ij")
    y1, x1 = torch.meshgrid(edges[1:], edges[1:], indexing="ij")
    area = corner_area(x1, y1) - corner_area(x0, y1) - corner_area(x1, y0) + corner_area(x0, y0)
    return area.to(dtype).expand(6, res, res).contiguous()


def latlong_directions(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Unit directions ``[H, W, 3]`` of a latlong image's pixel centres."""
    theta = (torch.arange(height, device=device, dtype=dtype) + 0.5) * (math.pi / height)
    phi = (torch.arange(width, device=device, dtype=dtype) + 0.5) * (2.0 * math.pi / width) - math.pi
    theta, phi = torch.meshgrid(theta, phi, indexing="ij")
    return torch.stack([torch.sin(theta) * torch.sin(phi), torch.cos(theta), -torch.sin(theta) * torch.cos(phi)], -1)


def direction_to_latlong_uv(directions: Tensor) -> Tensor:
    """Latlong texture coordinates ``[..., 2]`` in [0, 1] (u: azimuth, v: polar angle from +y)."""
    d = safe_normalize(directions)
    u = torch.atan2(d[..., 0], -d[..., 2]) / (2.0 * math.pi) + 0.5
    v = torch.acos(d[..., 1].clamp(-1.0, 1.0)) / math.pi
    return torch.stack([u, v], -1)


def sample_latlong(image: Tensor, directions: Tensor) -> Tensor:
    """Bilinear lookup of a latlong image ``[H, W, C]`` along ``directions [..., 3]`` -> ``[..., C]``.

    Azimuth wraps around; the polar angle clamps at the poles (no single texture boundary mode
    of the rasterizer does both, hence this sampler).
    """
    height, width = image.shape[:2]
    uv = direction_to_latlong_uv(directions.to(image.dtype))
    x = uv[..., 0] * width - 0.5
    y = (uv[..., 1] * height - 0.5).clamp(0.0, height - 1.0)
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0 = x0.long()
    y0 = y0.long()
    x1, y1 = (x0 + 1) % width, (y0 + 1).clamp(max=height - 1)
    x0 = x0 % width
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def latlong_to_cubemap(image: Tensor, res: int) -> Tensor:
    """Resample a latlong image ``[H, W, C]`` into a cube map ``[6, res, res, C]`` (bilinear)."""
    return sample_latlong(image, cube_directions(res, image.device, image.dtype))


def cubemap_to_latlong(cube: Tensor, height: int, width: int, rasterizer) -> Tensor:
    """Resample a cube map ``[6, S, S, C]`` into a latlong image ``[height, width, C]`` (bilinear,
    filtered across face edges by the rasterizer's cube-map texture lookup)."""
    directions = latlong_directions(height, width, cube.device, cube.dtype)
    return rasterizer.texture(cube[None], directions[None].contiguous(), filter_mode="linear", boundary_mode="cube")[0]
