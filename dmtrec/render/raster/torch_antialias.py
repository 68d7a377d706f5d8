"""``antialias`` in pure PyTorch: nvdiffrast's analytic silhouette antialiasing (Laine et al. 2020).

For every horizontally or vertically adjacent pixel pair whose triangle ids differ, the front
triangle of the two (the nearer one, or the only one) is examined at its own pixel centre. If
one of its silhouette edges crosses the segment between the two pixel centres (within 1/16
pixel), the two colours are blended by where it crosses, and the crossing point carries the
gradient to that edge's two vertices. An edge is a silhouette edge when it borders no other
triangle, or when the triangle across it lies on the same side of the edge in screen space
(the surface folds away there); :func:`construct_topology_hash` finds the triangles across.
All arithmetic follows nvdiffrast's kernels, including which edge is picked and its backward
pass (``1 / (dy + 1e-3 sign(dy))``, no position gradient where the blend saturates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch import Tensor

from . import torch_parallel
from .torch_common import float_to_tri_id, value_with_grad_of

CROSSING_TOLERANCE = 0.0625  # nvdiffrast accepts edges up to 1/16 pixel outside the segment
CROSSING_GRAD_EPS = 1e-3  # nvdiffrast's epsilon on the edge's pixel extent in backward
_NO_EDGE = -3.402823466e38  # nvdiffrast's -F32_MAX: "this edge does not cross"
PARALLEL_MIN_PIXELS = 1 << 14  # pixels of a batch below which one thread antialiases it


@dataclass(frozen=True)
class TopologyHash:
    """Edge adjacency of a triangle tensor, the torch backend's ``topology_hash``.

    ``opposite [F, 3]`` int64: for triangle ``f`` and edge ``k`` (the edge that does not touch
    vertex ``tri[f, k]``), the vertex of the other triangle across that edge, or -1 where the edge
    borders no other triangle. Like nvdiffrast's hash, an edge remembers the first two distinct
    opposite vertices (here in triangle order; nvdiffrast's order on non-manifold edges depends on
    thread timing), and triangles with a repeated vertex index are left out.
    """

    opposite: Tensor


def construct_topology_hash(tri: Tensor) -> TopologyHash:
    """Build the :class:`TopologyHash` of ``tri [F, 3]`` with sorts, no loop over edges."""
    tri = tri.long()
    num_tris = tri.shape[0]
    ends_a, ends_b = tri[:, [1, 2, 0]], tri[:, [2, 0, 1]]  # edge k joins vertices k+1 and k+2
    key = (torch.minimum(ends_a, ends_b) << 32 | torch.maximum(ends_a, ends_b)).reshape(-1)
    own = tri.reshape(-1)
    distinct = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 2] != tri[:, 0])
    entry = distinct.unsqueeze(1).expand(-1, 3).reshape(-1).nonzero().squeeze(1)
    key, own = key[entry], own[entry]

    # Unique (edge, opposite vertex) pairs, each at its first occurrence in triangle order.
    order = _lexsort(key, own)
    k_sorted, o_sorted = key[order], own[order]
    new_key = torch.ones_like(k_sorted, dtype=torch.bool)
    new_key[1:] = k_sorted[1:] != k_sorted[:-1]
    edge_of_entry = torch.empty_like(key)
    edge_of_entry[order] = new_key.cumsum(0) - 1  # edges numbered in key order
    first = new_key.clone()
    first[1:] |= o_sorted[1:] != o_sorted[:-1]
    u_key, u_own, u_pos = k_sorted[first], o_sorted[first], order[first]

    # Per edge, the first two distinct opposite vertices.
    order = _lexsort(u_key, u_pos)
    u_key, u_own = u_key[order], u_own[order]
    new_edge = torch.ones_like(u_key, dtype=torch.bool)
    new_edge[1:] = u_key[1:] != u_key[:-1]
    edge_id = new_edge.cumsum(0) - 1
    rank = torch.arange(u_key.numel(), device=tri.device) - new_edge.nonzero().squeeze(1)[edge_id]
    slots = torch.full((int(new_edge.sum()), 2), -1, dtype=torch.int64, device=tri.device)
    kept = rank < 2
    slots[edge_id[kept], rank[kept]] = u_own[kept]

    slot = slots[edge_of_entry]
    other = torch.where(slot[:, 0] == own, slot[:, 1], torch.where(slot[:, 1] == own, slot[:, 0], -1))
    opposite = torch.full((num_tris * 3,), -1, dtype=torch.int64, device=tri.device)
    opposite[entry] = other
    return TopologyHash(opposite.view(num_tris, 3))


def _lexsort(primary: Tensor, secondary: Tensor) -> Tensor:
    """Permutation sorting by ``primary`` then ``secondary``, stable."""
    by_secondary = torch.sort(secondary, stable=True).indices
    return by_secondary[torch.sort(primary[by_secondary], stable=True).indices]


def _same_sign(a: Tensor, b: Tensor) -> Tensor:
    return torch.signbit(a) == torch.signbit(b)


def _greater_ratio(n0: Tensor, n1: Tensor, d0: Tensor, d1: Tensor) -> Tensor:
    """nvdiffrast's ``n0 / d0 > n1 / d1`` without dividing."""
    return (n0 * d1 > n1 * d0) == _same_sign(d0, d1)


def antialias(
    color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor, topology: TopologyHash, pos_gradient_boost: float = 1.0
) -> Tensor:
    """Antialias silhouette edges of ``color``; arguments are assumed checked.

    Args:
        color: ``[B, H, W, C]``.
        rast: ``[B, H, W, 4]`` from ``rasterize(pos, tri)``.
        pos: ``[B, V, 4]``, or ``[V, 4]`` shared by all images.
        tri: ``[F, 3]``.
        topology: :func:`construct_topology_hash` of ``tri``.
        pos_gradient_boost: factor on the gradients sent to ``pos``.

    Returns:
        ``[B, H, W, C]``: ``color`` plus, for each pixel pair split by a silhouette edge,
        ``alpha * (colour of the other pixel - own colour)`` at one of the two pixels.
    """
    batch = color.shape[0]
    groups = [(0, batch)]
    if pos.dim() == 3 and color[..., 0].numel() >= PARALLEL_MIN_PIXELS:
        groups = torch_parallel.split(batch, torch_parallel.threads())
    # Images are independent: with several threads, groups of them find their crossings in
    # parallel (no autograd there); the differentiable blend is then built here, group by group.
    # A pixel's blends come from its own image in the same order, and the position gradients
    # reach that image's own vertices, so every result is the same bit for bit.
    dtype = color.dtype

    def group(t: Tensor, g: Tuple[int, int]) -> Tensor:  # a whole batch stays itself (no slice node)
        return t if len(groups) == 1 or (t is pos and pos.dim() == 2) else t[g[0] : g[1]]

    def crossings(g: Tuple[int, int]) -> dict:
        with torch.no_grad():
            return _crossings(group(rast, g), group(pos, g), tri, topology, dtype)

    found = torch_parallel.parallel_map(crossings, groups)
    parts = []
    for g, c in zip(groups, found):
        alpha, live, group_pos = c["alpha"], c["live"], group(pos, g)
        if pos.requires_grad and live.numel() > 0:
            # Position gradients flow through the crossing point of unsaturated blends only.
            height, width = rast.shape[1:3]
            surrogate = -pos_gradient_boost * _edge_crossing(
                group_pos, c["ends"], c["x"], c["y"], c["vertical"], width, height
            )
            alpha = alpha.index_copy(0, live, value_with_grad_of(alpha[live], surrogate.to(dtype)))
        group_color = group(color, g)
        pix0, pix1 = c["pix0"], c["pix1"]
        flat_color = group_color.reshape(-1, group_color.shape[-1])
        blend = alpha.unsqueeze(1) * (flat_color.index_select(0, pix1) - flat_color.index_select(0, pix0))
        parts.append(flat_color.index_add(0, torch.where(alpha > 0, pix0, pix1), blend).view(group_color.shape))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _crossings(rast: Tensor, pos: Tensor, tri: Tensor, topology: TopologyHash, dtype: torch.dtype) -> dict:
    """The silhouette crossings of a group of images (no autograd): per blended pixel pair, its two
    pixels ``pix0, pix1`` (flat in the group), ``alpha`` and, for the unsaturated blends ``live``
    (indices into those), the edge ``ends [n, 2]`` (vertex rows of ``pos``) and the pair's
    ``x, y, vertical`` for :func:`_edge_crossing`."""
    batch, height, width = rast.shape[:3]
    num_verts = pos.shape[-2]
    ids = rast[..., 3].detach()
    depth = rast[..., 2].detach().reshape(-1)
    flat_ids = ids.reshape(-1)

    # Work items: pixel pairs (p0, p1) with p1 right of (d = 0) or below (d = 1) p0, all horizontal
    # pairs first, each kind in row-major order. Found as flat indices of one mask (a 1D nonzero
    # costs far less than a 3D one's coordinates); ids are decoded at the pairs only.
    num_pixels = batch * height * width
    split = torch.zeros(2, batch, height, width, dtype=torch.bool, device=ids.device)
    torch.ne(ids[:, :, :-1], ids[:, :, 1:], out=split[0, :, :, :-1])
    torch.ne(ids[:, :-1, :], ids[:, 1:, :], out=split[1, :, :-1, :])
    pairs = split.view(-1).nonzero().squeeze(1)
    vertical = pairs >= num_pixels
    pix0 = torch.where(vertical, pairs - num_pixels, pairs)
    pix1 = pix0 + torch.where(vertical, width, 1)
    b = torch.div(pix0, height * width, rounding_mode="floor")
    y = torch.div(pix0 - b * (height * width), width, rounding_mode="floor")
    x = pix0 - (b * height + y) * width

    tri0 = float_to_tri_id(flat_ids.index_select(0, pix0)) - 1
    tri1 = float_to_tri_id(flat_ids.index_select(0, pix1)) - 1
    face = torch.where(tri0 >= 0, tri0, tri1)
    both = (tri0 >= 0) & (tri1 >= 0)
    face = torch.where(both, torch.where(depth[pix0] < depth[pix1], tri0, tri1), face)
    from_second = face == tri1  # then measure from p1's centre
    keep = ((face >= 0) & (face < tri.shape[0])).nonzero().squeeze(1)
    b, y, x, vertical, pix0, pix1, face, from_second = (
        t[keep] for t in (b, y, x, vertical, pix0, pix1, face, from_second)
    )
    x = x + (from_second & ~vertical).long()
    y = y + (from_second & vertical).long()

    vert_base = (b * num_verts).unsqueeze(1) if pos.dim() == 3 else 0
    vidx = tri.long()[face] + vert_base  # [n, 3]
    across = topology.opposite[face]
    oidx = torch.where(across < 0, vidx, across + vert_base)
    # Per corner k, contiguous [n] columns: arithmetic on [n, 3] views with index lists costs a
    # gather per operand. The float operations are the same.
    columns = pos.detach().reshape(-1, 4).to(dtype).t()
    columns = [columns[c].contiguous() for c in (0, 1, 3)]
    half_w, half_h = 0.5 * width, 0.5 * height
    cx = x.to(dtype) + 0.5 - half_w
    cy = y.to(dtype) + 0.5 - half_h

    def to_pixels(idx: Tensor) -> Tuple[List[Tensor], List[Tensor]]:
        px, py = [], []
        for k in range(3):
            corner = idx[:, k]
            inv_w = 1.0 / columns[2].index_select(0, corner)
            px.append(columns[0].index_select(0, corner) * inv_w * half_w - cx)
            py.append(columns[1].index_select(0, corner) * inv_w * half_h - cy)
        return px, py

    (vx, vy), (ox, oy) = to_pixels(vidx), to_pixels(oidx)
    i, j = [1, 2, 0], [2, 0, 1]
    own_area = (vx[1] - vx[0]) * (vy[2] - vy[0]) - (vx[2] - vx[0]) * (vy[1] - vy[0])
    silhouette = [
        _same_sign((vx[i[k]] - ox[k]) * (vy[j[k]] - oy[k]) - (vx[j[k]] - ox[k]) * (vy[i[k]] - oy[k]), own_area)
        for k in range(3)
    ]

    # Along the pair's axis: swap x and y for vertical pairs.
    vx, vy = (
        [torch.where(vertical, b, a) for a, b in zip(vx, vy)],
        [torch.where(vertical, a, b) for a, b in zip(vx, vy)],
    )
    ex = [vx[j[k]] - vx[i[k]] for k in range(3)]
    ey = [vy[j[k]] - vy[i[k]] for k in range(3)]
    direction = torch.where(from_second, -1.0, 1.0).to(dtype)
    reach = [direction * (vx[i[k]] * ey[k] - vy[i[k]] * ex[k]) for k in range(3)]  # crossing * ey, to the other pixel
    for k in range(3):
        no_cross = _same_sign(vy[i[k]], vy[j[k]])
        reach[k] = torch.where(no_cross, _NO_EDGE, reach[k])
        ey[k] = torch.where(no_cross, 1.0, ey[k])

    g10 = _greater_ratio(reach[1], reach[0], ey[1], ey[0])
    g20 = _greater_ratio(reach[2], reach[0], ey[2], ey[0])
    g21 = _greater_ratio(reach[2], reach[1], ey[2], ey[1])
    third = g20 & g21
    edge = torch.where(third, 2, torch.where(g10, 1, 0))

    def pick(t: List[Tensor]) -> Tensor:  # the chosen edge's entry
        return torch.where(third, t[2], torch.where(g10, t[1], t[0]))

    usable = pick(silhouette) & (pick(ey).abs() >= pick(ex).abs())
    crossing = torch.where(usable, pick(reach) / pick(ey), _NO_EDGE)
    hit = ((crossing > -CROSSING_TOLERANCE) & (crossing < 1.0 + CROSSING_TOLERANCE)).nonzero().squeeze(1)
    crossing, direction, edge = crossing[hit], direction[hit], edge[hit]
    alpha = direction * (0.5 - crossing.clamp(0.0, 1.0))

    live = ((alpha.abs() < 0.5) & (alpha != 0)).nonzero().squeeze(1)
    rows = hit[live]
    first = (edge[live] + 1) % 3
    ends = vidx[rows].gather(1, torch.stack([first, (first + 1) % 3], 1))
    return {
        "pix0": pix0[hit],
        "pix1": pix1[hit],
        "alpha": alpha,
        "live": live,
        "ends": ends,
        "x": x[rows],
        "y": y[rows],
        "vertical": vertical[rows],
    }


def _edge_crossing(
    pos: Tensor, ends: Tensor, x: Tensor, y: Tensor, vertical: Tensor, width: int, height: int
) -> Tensor:
    """Where edge ``ends [n, 2]`` crosses the pair's axis, in pixels from ``(x, y)``'s centre, as a
    differentiable function of ``pos`` with nvdiffrast's epsilon."""
    p = pos.reshape(-1, 4).index_select(0, ends.reshape(-1)).view(-1, 2, 4)
    inv_w = 1.0 / p[..., 3]
    flip = vertical.unsqueeze(1)
    along = torch.where(flip, p[..., 1], p[..., 0]) * inv_w
    across = torch.where(flip, p[..., 0], p[..., 1]) * inv_w
    half_along = torch.where(flip, 0.5 * height, 0.5 * width).to(p.dtype)
    half_across = torch.where(flip, 0.5 * width, 0.5 * height).to(p.dtype)
    centre_along = torch.where(vertical, y, x).to(p.dtype).unsqueeze(1) + 0.5 - half_along
    centre_across = torch.where(vertical, x, y).to(p.dtype).unsqueeze(1) + 0.5 - half_across
    ex = along * half_along - centre_along
    ey = across * half_across - centre_across
    dx, dy = ex[:, 1] - ex[:, 0], ey[:, 1] - ey[:, 0]
    eps = torch.copysign(torch.full_like(dy, CROSSING_GRAD_EPS), dy.detach())
    return (ex[:, 0] * dy - ey[:, 0] * dx) / (dy + eps)
