"""Mesh smoothness regularizers: uniform and cotangent Laplacians (differentiable)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .topology import cached


def unique_edges(t_pos_idx: Tensor, num_vertices: int) -> Tensor:
    """``[E, 2]`` int64 unique undirected edges of a triangle mesh, ``edges[:, 0] < edges[:, 1]``."""
    pairs = torch.cat([t_pos_idx[:, [0, 1]], t_pos_idx[:, [1, 2]], t_pos_idx[:, [2, 0]]]).long()
    lo, hi = torch.minimum(pairs[:, 0], pairs[:, 1]), torch.maximum(pairs[:, 0], pairs[:, 1])
    keys = torch.unique(lo * num_vertices + hi)
    return torch.stack((keys // num_vertices, keys % num_vertices), 1)


def uniform_laplacian(v_pos: Tensor, t_pos_idx: Tensor) -> Tensor:
    """``[V, 3]`` umbrella operator: mean of the edge neighbours minus the vertex (0 if isolated)."""
    i, j, degree = cached(
        "umbrella",
        (t_pos_idx,),
        lambda: _umbrella(v_pos.detach(), t_pos_idx),
        (v_pos.shape[0], v_pos.dtype, v_pos.device),
    )
    summed = torch.zeros_like(v_pos).index_add(0, i, v_pos.index_select(0, j)).index_add(0, j, v_pos.index_select(0, i))
    return torch.where(degree[:, None] > 0, summed / degree.clamp_min(1)[:, None] - v_pos, torch.zeros_like(v_pos))


def _umbrella(v_pos: Tensor, t_pos_idx: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The topology of :func:`uniform_laplacian`: edge ends ``i, j`` ``[E]`` and the degree ``[V]``
    (in ``v_pos``'s dtype; ``v_pos`` gives only the size, dtype and device)."""
    edges = unique_edges(t_pos_idx, v_pos.shape[0])
    i, j = edges[:, 0], edges[:, 1]
    degree = (
        torch.zeros_like(v_pos[:, 0])
        .index_add(0, i, torch.ones_like(i, dtype=v_pos.dtype))
        .index_add(0, j, torch.ones_like(j, dtype=v_pos.dtype))
    )
    return i, j, degree


def cotangent_laplacian(v_pos: Tensor, t_pos_idx: Tensor, field: Optional[Tensor] = None, eps: float = 1e-12) -> Tensor:
    """``[V, 3]`` cotangent Laplacian ``1/(2 A_i) sum_j (cot a_ij + cot b_ij) (x_j - x_i)``.

    Weights (cotangents of the angles opposite each edge, and ``A_i``, the barycentric area:
    a third of the incident triangle areas) come from ``v_pos``; the operator is applied to
    ``field`` ``[V, C]`` (default ``v_pos`` itself). Applied to the positions it vanishes on
    any flat mesh (linear precision), which the uniform Laplacian does not, and approximates
    the mean curvature normal ``-2 H n`` on a curved one. Gradients flow through the weights
    as well as the field.
    """
    x = v_pos if field is None else field
    p = v_pos[t_pos_idx]  # [F, 3, 3]
    area2 = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=-1).norm(dim=-1).clamp_min(eps)  # 2 * area
    vertex_area = torch.zeros_like(v_pos[:, 0]).index_add(
        0, t_pos_idx.reshape(-1), (area2 / 6.0)[:, None].expand(-1, 3).reshape(-1)
    )
    result = torch.zeros_like(x)
    for k in range(3):
        # The angle at corner k faces the edge (k+1, k+2): cot = (u . w) / |u x w|.
        i, j = t_pos_idx[:, (k + 1) % 3], t_pos_idx[:, (k + 2) % 3]
        u, w = p[:, (k + 1) % 3] - p[:, k], p[:, (k + 2) % 3] - p[:, k]
        flow = ((u * w).sum(-1) / area2)[:, None] * (x[j] - x[i])
        result = result.index_add(0, i, flow).index_add(0, j, -flow)
    return result / (2.0 * vertex_area.clamp_min(eps))[:, None]


def laplacian_loss(
    v_pos: Tensor, t_pos_idx: Tensor, kind: str = "uniform", reference: Optional[Tensor] = None
) -> Tensor:
    """Mean squared Laplacian over all ``V * 3`` entries (nvdiffrec's ``laplace_regularizer_const``).

    Args:
        v_pos: ``[V, 3]`` positions; t_pos_idx: ``[F, 3]`` int64 faces.
        kind: ``"uniform"`` (:func:`uniform_laplacian`) or ``"cotangent"``
            (:func:`cotangent_laplacian`, weights from the current ``v_pos``).
        reference: optional ``[V, 3]`` positions; the Laplacian is taken of the displacement
            ``v_pos - reference`` (nvdiffrec's "relative" mode, which keeps the detail of the
            initial mesh and only smooths the change).
    Returns:
        A scalar; 0 (still on the autograd graph) for a mesh without faces.
    """
    if kind not in ("uniform", "cotangent"):
        raise ValueError(f"laplacian_loss: kind must be 'uniform' or 'cotangent', got {kind!r}")
    if t_pos_idx.shape[0] == 0:
        return v_pos.sum() * 0.0
    x = v_pos if reference is None else v_pos - reference
    lap = uniform_laplacian(x, t_pos_idx) if kind == "uniform" else cotangent_laplacian(v_pos, t_pos_idx, x)
    return (lap**2).mean()
