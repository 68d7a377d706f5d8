"""Scenes and an independent float64 reference rasterizer for the rasterizer tests."""

from __future__ import annotations

import math

import numpy as np
import torch


def tris(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int32).reshape(-1, 3)


def pixel_to_clip(px, py, height, width):
    """Pixel coordinates (centre of pixel i at i + 0.5) -> clip x, y (w = 1)."""
    return 2.0 * np.asarray(px, dtype=np.float64) / width - 1.0, 2.0 * np.asarray(py, dtype=np.float64) / height - 1.0


def clip_from_pixels(points, height, width, z=0.0) -> torch.Tensor:
    """``[(X, Y), ...]`` in pixel coordinates -> ``[V, 4]`` float32 clip positions with w = 1."""
    pts = np.asarray(points, dtype=np.float64)
    x, y = pixel_to_clip(pts[:, 0], pts[:, 1], height, width)
    zz = np.broadcast_to(np.asarray(z, dtype=np.float64), x.shape)
    return torch.tensor(np.stack([x, y, zz, np.ones_like(x)], 1), dtype=torch.float32)


def perspective(
    fovy: float = math.radians(60), aspect: float = 1.0, near: float = 0.5, far: float = 20.0
) -> np.ndarray:
    """OpenGL projection (camera looks down -z)."""
    f = 1.0 / math.tan(fovy / 2)
    return np.array(
        [
            [f / aspect, 0, 0, 0],
            [0, f, 0, 0],
            [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, -1, 0],
        ]
    )


def project(points_cam, proj=None) -> np.ndarray:
    """Camera-space ``[N, 3]`` -> clip ``[N, 4]`` float64."""
    proj = perspective() if proj is None else proj
    pts = np.asarray(points_cam, dtype=np.float64)
    return np.concatenate([pts, np.ones((len(pts), 1))], 1) @ proj.T


def icosphere(subdivisions: int = 1):
    """Unit icosphere: vertices ``[V, 3]`` float64, faces ``[F, 3]`` int (outward, counter-clockwise)."""
    t = (1 + 5**0.5) / 2
    verts = [
        (-1, t, 0),
        (1, t, 0),
        (-1, -t, 0),
        (1, -t, 0),
        (0, -1, t),
        (0, 1, t),
        (0, -1, -t),
        (0, 1, -t),
        (t, 0, -1),
        (t, 0, 1),
        (-t, 0, -1),
        (-t, 0, 1),
    ]
    faces = [
        (0, 11, 5),
        (0, 5, 1),
        (0, 1, 7),
        (0, 7, 10),
        (0, 10, 11),
        (1, 5, 9),
        (5, 11, 4),
        (11, 10, 2),
        (10, 7, 6),
        (7, 1, 8),
        (3, 9, 4),
        (3, 4, 2),
        (3, 2, 6),
        (3, 6, 8),
        (3, 8, 9),
        (4, 9, 5),
        (2, 4, 11),
        (6, 2, 10),
        (8, 6, 7),
        (9, 8, 1),
    ]
    verts = [np.array(v, dtype=np.float64) / np.linalg.norm(v) for v in verts]
    for _ in range(subdivisions):
        cache, new_faces = {}, []

        def midpoint(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    return np.array(verts), np.array(faces)


def reference_raster(pos, tri, height, width, offset=(0.0, 0.0)):
    """Brute-force float64 rasterizer: the frustum-clipped triangle nearest at each pixel centre.

    A pixel (shifted by ``offset`` pixels) is covered when its perspective-correct barycentrics are
    all >= 0 and the point hit satisfies ``|z| <= w``. Returns ``ids [H, W]`` (triangle + 1, 0 =
    empty), ``u, v, zw [H, W]``. ``pos`` ``[V, 4]``, ``tri`` ``[F, 3]``, both array-likes.
    """
    pos = np.asarray(pos, dtype=np.float64)
    tri = np.asarray(tri, dtype=np.int64)
    ids = np.zeros((height, width), dtype=np.int64)
    u = np.zeros((height, width))
    v = np.zeros((height, width))
    zw = np.zeros((height, width))
    if len(tri) == 0:
        return ids, u, v, zw
    py, px = np.mgrid[0:height, 0:width]
    fx, fy = pixel_to_clip(px.reshape(-1) + 0.5 + offset[0], py.reshape(-1) + 0.5 + offset[1], height, width)
    p = pos[tri]  # [F, 3, 4]
    qx = p[None, :, :, 0] - fx[:, None, None] * p[None, :, :, 3]
    qy = p[None, :, :, 1] - fy[:, None, None] * p[None, :, :, 3]
    i, j = [1, 2, 0], [2, 0, 1]
    a = qx[..., i] * qy[..., j] - qy[..., i] * qx[..., j]
    with np.errstate(divide="ignore", invalid="ignore"):
        b = a / a.sum(-1, keepdims=True)
        w = (b * p[None, :, :, 3]).sum(-1)
        z = (b * p[None, :, :, 2]).sum(-1)
        covered = (b >= 0).all(-1) & (w > 0) & (np.abs(z) <= w)
        depth = np.where(covered, z / w, np.inf)
    best = depth.argmin(1)
    hit = np.isfinite(depth.min(1))
    rows = np.arange(len(best))
    ids.reshape(-1)[:] = np.where(hit, best + 1, 0)
    u.reshape(-1)[:] = np.where(hit, b[rows, best, 0], 0)
    v.reshape(-1)[:] = np.where(hit, b[rows, best, 1], 0)
    zw.reshape(-1)[:] = np.where(hit, depth[rows, best], 0)
    return ids, u, v, zw


def unambiguous_pixels(pos, tri, height, width, margin=0.1):
    """Reference ids, and a mask of pixels whose triangle stays the same when the sample moves by
    ``margin`` pixels in x or y (away from edges, clip boundaries and depth ties)."""
    ids = reference_raster(pos, tri, height, width)[0]
    stable = np.ones_like(ids, dtype=bool)
    for off in ((margin, 0), (-margin, 0), (0, margin), (0, -margin)):
        stable &= reference_raster(pos, tri, height, width, off)[0] == ids
    return ids, stable
