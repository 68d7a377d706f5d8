"""Signed distance functions with dmtrec's sign convention: positive **inside**, negative outside.

Analytic shapes for initialisation, tests and benchmarks, and the SDF of a closed triangle
mesh (distance to the surface, signed by ray parity) for initialising DMTet from a mesh. The
point-triangle distance is :func:`dmtrec.geometry.closest_point.closest_on_triangles`; the
candidate triangles here come from a grid of bins (exact near the surface), not from centroids.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh

from .closest_point import closest_on_triangles


def sphere_sdf(points: Tensor, radius: float, center: Sequence[float] = (0.0, 0.0, 0.0)) -> Tensor:
    """``[N]`` signed distance of ``[N, 3]`` points to a sphere (positive inside)."""
    c = torch.as_tensor(center, dtype=points.dtype, device=points.device)
    return radius - (points - c).norm(dim=-1)


def torus_sdf(points: Tensor, major_radius: float, minor_radius: float) -> Tensor:
    """``[N]`` signed distance to a torus around the z axis (positive inside the tube)."""
    ring = points[..., :2].norm(dim=-1) - major_radius
    return minor_radius - torch.sqrt(ring**2 + points[..., 2] ** 2)


def _segment_starts(count: Tensor) -> Tensor:
    """For items laid out in consecutive segments of ``count[i]``, each item's segment start."""
    return torch.repeat_interleave(torch.cumsum(count, 0) - count, count)


class _BoxBins:
    """Axis-aligned boxes binned on a regular D-dimensional grid of cells, in CSR form.

    Every box is listed in each cell it overlaps, so the boxes that may contain a point are
    exactly those listed in the point's cell.
    """

    def __init__(self, box_lo: Tensor, box_hi: Tensor, lo: Tensor, hi: Tensor, cells: int):
        self.lo, self.cells = lo, cells
        self.size = ((hi - lo) / cells).clamp_min(1e-12)
        dims = box_lo.shape[1]
        c0, c1 = self._cell(box_lo), self._cell(box_hi)
        span = c1 - c0 + 1  # [M, D]
        count = span.prod(1)
        box = torch.repeat_interleave(torch.arange(box_lo.shape[0], device=lo.device), count)
        local = torch.arange(box.shape[0], device=lo.device) - _segment_starts(count)
        flat = torch.zeros_like(box)
        for d in range(dims):  # unravel `local` within the box's span, ravel into the global cell id
            inner = span[box, d + 1 :].prod(1) if d + 1 < dims else torch.ones_like(box)
            flat = flat * cells + c0[box, d] + (local // inner) % span[box, d]
        order = torch.argsort(flat)
        self.items = box[order]
        self.per_cell = torch.bincount(flat, minlength=cells**dims)
        self.cell_start = torch.cumsum(self.per_cell, 0) - self.per_cell

    def _cell(self, x: Tensor) -> Tensor:
        return ((x - self.lo) / self.size).floor().long().clamp(0, self.cells - 1)

    def pairs(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """``(point_id, box_id)`` for every box listed in each point's cell (none outside the grid)."""
        inside = ((points >= self.lo) & (points <= self.lo + self.size * self.cells)).all(1)
        c = self._cell(points)
        flat = torch.zeros_like(c[:, 0])
        for d in range(c.shape[1]):
            flat = flat * self.cells + c[:, d]
        n = torch.where(inside, self.per_cell[flat], torch.zeros_like(flat))
        point_id = torch.repeat_interleave(torch.arange(points.shape[0], device=points.device), n)
        offset = torch.arange(point_id.shape[0], device=points.device) - _segment_starts(n)
        return point_id, self.items[self.cell_start[flat[point_id]] + offset]


def inside_mesh(points: Tensor, v_pos: Tensor, t_pos_idx: Tensor, rays: int = 3, seed: int = 0) -> Tensor:
    """``[N]`` bool: is each ``[N, 3]`` point inside the closed triangle mesh?

    Counts crossings of ``rays`` rays in random (seeded) directions, each an even/odd parity
    test, and takes the majority, so a ray grazing an edge or slipping through a small hole
    is outvoted. Triangles are binned on a 2-D grid across each ray direction, so the cost is
    about ``N`` times the triangles per bin, not ``N * F``.
    """
    gen = torch.Generator().manual_seed(seed)
    votes = torch.zeros(points.shape[0], dtype=torch.int64, device=points.device)
    for _ in range(rays):
        rot, _r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
        rot = rot.to(points.device)
        votes += _ray_parity(points.double() @ rot, v_pos.double() @ rot, t_pos_idx)
    return votes * 2 > rays


def _ray_parity(p: Tensor, v: Tensor, faces: Tensor) -> Tensor:
    """``[N]`` int64 1 where the ray from ``p`` towards +z crosses an odd number of triangles."""
    tri = v[faces]  # [F, 3, 3]
    cells = int(min(256, max(1, round(faces.shape[0] ** 0.5 / 2))))
    bins = _BoxBins(
        tri[..., :2].min(1).values, tri[..., :2].max(1).values, v[:, :2].min(0).values, v[:, :2].max(0).values, cells
    )
    point_id, cand = bins.pairs(p[:, :2])
    q, t = p[point_id], tri[cand]
    a, b, c = t[:, 0], t[:, 1], t[:, 2]

    def edge_fn(u: Tensor, w: Tensor) -> Tensor:  # 2-D cross product (w - u) x (q - u)
        return (w[:, 0] - u[:, 0]) * (q[:, 1] - u[:, 1]) - (w[:, 1] - u[:, 1]) * (q[:, 0] - u[:, 0])

    e0, e1, e2 = edge_fn(b, c), edge_fn(c, a), edge_fn(a, b)
    area = e0 + e1 + e2
    hit_xy = ((e0 > 0) & (e1 > 0) & (e2 > 0)) | ((e0 < 0) & (e1 < 0) & (e2 < 0))
    z = (e0 * a[:, 2] + e1 * b[:, 2] + e2 * c[:, 2]) / torch.where(area == 0, torch.ones_like(area), area)
    hits = (hit_xy & (z > q[:, 2])).long()
    return torch.zeros(p.shape[0], dtype=torch.int64, device=v.device).index_add(0, point_id, hits) % 2


def mesh_distance(points: Tensor, mesh: Mesh, max_samples: int = 2048, seed: int = 0) -> Tensor:
    """Unsigned distance from ``[N, 3]`` points to a triangle mesh, ``[N]`` float64, detached.

    Exact within one bin of the surface: triangles are binned on a 3-D grid of about
    ``sqrt(F / 4)`` cells per side (their boxes dilated by one cell) and a point checks the
    triangles listed in its own cell. Farther away it is the distance to the nearest of at
    most ``max_samples`` surface points (vertices and centroids), an overestimate by at most
    their spacing, harmless where only a rough magnitude matters.
    """
    if mesh.is_empty:
        raise ValueError("mesh_distance: the mesh has no faces")
    with torch.no_grad():
        points = points.double()  # float64: marching-tets output has slivers
        v_pos = mesh.v_pos.detach().to(points.device, torch.float64)
        tri = v_pos[mesh.t_pos_idx.to(points.device)]  # [F, 3, 3]
        cells = int(min(128, max(2, round((tri.shape[0] / 4) ** 0.5))))
        lo, hi = v_pos.min(0).values, v_pos.max(0).values
        pad = (hi - lo).max() / cells
        bins = _BoxBins(tri.min(1).values - pad, tri.max(1).values + pad, lo - pad, hi + pad, cells)
        reach = float(bins.size.min())  # any triangle within this distance of a point is a candidate

        dist = torch.full((points.shape[0],), float("inf"), dtype=torch.float64, device=points.device)
        chunk = 1 << 16
        for start in range(0, points.shape[0], chunk):
            p = points[start : start + chunk]
            point_id, cand = bins.pairs(p)
            t = tri[cand]
            _, d = closest_on_triangles(p[point_id], t)
            dist[start : start + chunk] = dist[start : start + chunk].scatter_reduce(0, point_id, d, "amin")

        far = torch.nonzero(dist > reach).squeeze(1)
        if far.numel():
            samples = torch.cat([v_pos, tri.mean(1)])
            if samples.shape[0] > max_samples:
                gen = torch.Generator().manual_seed(seed)
                samples = samples[torch.randperm(samples.shape[0], generator=gen)[:max_samples].to(points.device)]
            for start in range(0, far.shape[0], chunk):
                idx = far[start : start + chunk]
                dist[idx] = torch.minimum(dist[idx], torch.cdist(points[idx], samples).min(1).values)
        return dist


def mesh_sdf(points: Tensor, mesh: Mesh) -> Tensor:
    """Signed distance from ``[N, 3]`` points to a closed triangle mesh: positive inside.

    :func:`mesh_distance` signed by :func:`inside_mesh`. Returns ``[N]`` in the dtype of
    ``points``, detached.
    """
    dist = mesh_distance(points, mesh)
    inside = inside_mesh(points, mesh.v_pos.detach().to(points.device), mesh.t_pos_idx.to(points.device))
    return torch.where(inside, dist, -dist).to(points.dtype)
