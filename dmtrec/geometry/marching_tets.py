"""Differentiable marching tetrahedra: per-vertex SDF on a tet mesh -> welded triangle mesh.

Sign convention (nvdiffrec's, used everywhere in dmtrec): ``sdf > 0`` is **inside** (occupied),
``sdf <= 0`` outside. Triangles are wound counter-clockwise seen from outside, so their normals
``(p1 - p0) x (p2 - p0)`` point from the occupied towards the empty side, provided the tets are
positively oriented (``det[v1 - v0, v2 - v0, v3 - v0] > 0``, as :mod:`.tetgrid` guarantees).

nvdiffrec's hand-written table winds every triangle the other way round (on its own,
positively oriented quartet grids its normals point into the ``sdf > 0`` region); its shading
is two-sided, so it never noticed. Here the table is derived geometrically at import time
and the winding is tested, so normals, culling and exported files agree.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh

from .tetgrid import TET_EDGES, tet_edge_topology


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    """Triangle table ``[16, 6]`` (local edge ids, two triangles, 0-padded) and counts ``[16]``.

    Case index = sum over corners i of ``occupied_i << i``. Winding is decided geometrically on
    a positive reference tet: the triangle normal must point away from the occupied corners.
    An affine map with positive determinant keeps that sign, and so do crossing points that
    slide along their edges, so the table holds for every positively oriented tet.
    """
    ref = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    midpoint = {e: ref[list(pair)].mean(0) for e, pair in enumerate(TET_EDGES)}
    table = np.zeros((16, 6), dtype=np.int64)
    counts = np.zeros(16, dtype=np.int64)
    for case in range(16):
        inside = [i for i in range(4) if case >> i & 1]
        outside = [i for i in range(4) if not case >> i & 1]
        if not inside or not outside:
            continue
        if len(inside) == 2:
            (a, b), (c, d) = inside, outside
            ring = [(a, c), (a, d), (b, d), (b, c)]  # consecutive edges share a corner
        else:
            lone = inside[0] if len(inside) == 1 else outside[0]
            ring = [tuple(sorted((lone, o))) for o in range(4) if o != lone]
        ring = [TET_EDGES.index(tuple(sorted(e))) for e in ring]
        p = [midpoint[e] for e in ring]
        normal = np.cross(p[1] - p[0], p[2] - p[0])
        if normal @ (ref[outside].mean(0) - ref[inside].mean(0)) < 0:
            ring = ring[::-1]
        tris = [ring[0], ring[1], ring[2]] + ([ring[0], ring[2], ring[3]] if len(ring) == 4 else [])
        counts[case] = len(tris) // 3
        table[case, : len(tris)] = tris
    return table, counts


TRIANGLE_TABLE, NUM_TRIANGLES = _build_tables()


def marching_tetrahedra(
    verts: Tensor,
    sdf: Tensor,
    tets: Tensor,
    *,
    edges: Optional[Tensor] = None,
    tet_edges: Optional[Tensor] = None,
    with_uv: bool = False,
) -> Mesh:
    """Extract the ``sdf = 0`` surface of a tet mesh as a welded triangle mesh.

    Every edge whose endpoints have different signs (``sdf > 0`` inside) carries one output
    vertex at the linear zero crossing ``p = (s_a p_b - s_b p_a) / (s_a - s_b)``, shared by
    all tets around that edge; each crossed tet gives one or two triangles wound outward.
    The output is differentiable w.r.t. ``verts`` and ``sdf``; the topology is not.

    Args:
        verts: ``[V, 3]`` float vertex positions (may require grad).
        sdf: ``[V]`` or ``[V, 1]`` float SDF values (may require grad); ``> 0`` is inside.
        tets: ``[T, 4]`` integer tets, positively oriented.
        edges, tet_edges: the grid's ``[E, 2]`` unique edges and ``[T, 6]`` local-edge indices
            (:func:`.tetgrid.tet_edge_topology`); computed here when omitted, pass them
            (e.g. from a :class:`.tetgrid.TetGrid`) to save that work on every call.
        with_uv: also return per-triangle UVs: each crossed tet owns a fixed square cell of
            a ``ceil(sqrt(T))``-sided grid, its triangles take the cell's two halves
            (nvdiffrec's layout for the volumetric-texture pass, where UVs only give tangents).
    Returns:
        A :class:`Mesh` with ``v_pos`` ``[Vo, 3]`` (dtype of ``verts``), ``t_pos_idx``
        ``[Fo, 3]`` int64 and, with ``with_uv``, ``v_tex`` ``[4 Tc, 2]`` / ``t_tex_idx`` ``[Fo, 3]``.
        Faces are ordered by tet index. No sign change gives ``Vo = Fo = 0`` (still on the
        autograd graph, so losses built on it backpropagate zeros).
    """
    _check_inputs(verts, sdf, tets)
    sdf = sdf.reshape(-1)
    device = verts.device
    if edges is None or tet_edges is None:
        edges, tet_edges = tet_edge_topology(tets, verts.shape[0])

    with torch.no_grad():
        occupied = sdf > 0
        crossing = occupied[edges[:, 0]] != occupied[edges[:, 1]]
        edge_to_vertex = torch.cumsum(crossing, 0) - 1  # valid where crossing
        case = (occupied[tets].long() << torch.arange(4, device=device)).sum(1)
        num_tris = torch.as_tensor(NUM_TRIANGLES, device=device)[case]
        crossed = torch.nonzero(num_tris > 0).squeeze(1)
        case, num_tris = case[crossed], num_tris[crossed]
        local = torch.as_tensor(TRIANGLE_TABLE, device=device)[case]  # [Tc, 6]
        corner_vertex = edge_to_vertex[torch.gather(tet_edges[crossed], 1, local)]
        keep = torch.arange(2, device=device) < num_tris[:, None]  # [Tc, 2]
        faces = corner_vertex.reshape(-1, 2, 3)[keep]
        ends = edges[crossing]

    s_a, s_b = sdf[ends[:, 0]].unsqueeze(1), sdf[ends[:, 1]].unsqueeze(1)
    p_a, p_b = verts[ends[:, 0]], verts[ends[:, 1]]
    # s_a and s_b have opposite signs (one > 0, the other <= 0): the denominator is never 0.
    v_pos = (s_a * p_b - s_b * p_a) / (s_a - s_b)

    mesh = Mesh(v_pos, faces)
    if with_uv:
        mesh.v_tex, mesh.t_tex_idx = _tet_cell_uvs(crossed, keep, tets.shape[0], verts.dtype)
    return mesh


def _tet_cell_uvs(crossed: Tensor, keep: Tensor, num_tets: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Per-triangle UVs: tet t owns square cell t of an N x N grid (N = ceil(sqrt(T)))."""
    n = max(1, int(np.ceil(np.sqrt(num_tets))))
    cell = 1.0 / n
    inset = 0.05 * cell  # a gap between cells so bilinear lookups stay inside one triangle pair
    x0 = (crossed % n).to(dtype) * cell + inset
    y0 = torch.div(crossed, n, rounding_mode="floor").to(dtype) * cell + inset
    side = cell - 2 * inset
    corners = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=dtype, device=crossed.device) * side
    v_tex = (torch.stack((x0, y0), 1)[:, None, :] + corners).reshape(-1, 2)
    base = 4 * torch.arange(crossed.shape[0], device=crossed.device)[:, None, None]
    halves = torch.tensor([[0, 1, 2], [0, 2, 3]], device=crossed.device)
    t_tex_idx = (base + halves)[keep]
    return v_tex, t_tex_idx


def _check_inputs(verts: Tensor, sdf: Tensor, tets: Tensor) -> None:
    if verts.ndim != 2 or verts.shape[1] != 3 or not verts.is_floating_point():
        raise ValueError(f"marching_tetrahedra: verts must be float [V, 3], got {tuple(verts.shape)} {verts.dtype}")
    if sdf.reshape(-1).shape[0] != verts.shape[0] or not sdf.is_floating_point() or sdf.ndim > 2:
        raise ValueError(
            f"marching_tetrahedra: sdf must be float [V] with V={verts.shape[0]}, got {tuple(sdf.shape)} {sdf.dtype}"
        )
    if tets.ndim != 2 or tets.shape[1] != 4 or tets.is_floating_point():
        raise ValueError(f"marching_tetrahedra: tets must be integer [T, 4], got {tuple(tets.shape)} {tets.dtype}")
    if sdf.device != verts.device or tets.device != verts.device:
        raise ValueError(
            f"marching_tetrahedra: verts ({verts.device}), sdf ({sdf.device}) and tets "
            f"({tets.device}) must be on one device"
        )


__all__ = ["marching_tetrahedra", "TRIANGLE_TABLE", "NUM_TRIANGLES"]
