"""Face and vertex normals and UV tangents of triangle meshes (differentiable)."""

from __future__ import annotations

import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh

_FALLBACK_NORMAL = (0.0, 0.0, 1.0)


def safe_normalize(x: Tensor, eps: float = 1e-20) -> Tensor:
    """``x / |x|`` along the last dim, with a finite value and gradient where ``|x| = 0``."""
    return x / torch.sqrt((x * x).sum(-1, keepdim=True).clamp_min(eps))


def face_normals(v_pos: Tensor, t_pos_idx: Tensor, unit: bool = True) -> Tensor:
    """``[F, 3]`` face normals ``(p1 - p0) x (p2 - p0)``; unnormalized, their length is twice the area."""
    p0, p1, p2 = (v_pos[t_pos_idx[:, i]] for i in range(3))
    n = torch.cross(p1 - p0, p2 - p0, dim=-1)
    return safe_normalize(n) if unit else n


def corner_angles(v_pos: Tensor, t_pos_idx: Tensor) -> Tensor:
    """``[F, 3]`` interior angle (radians) at each corner of each triangle."""
    p = v_pos[t_pos_idx]  # [F, 3, 3]
    e_next = safe_normalize(p.roll(-1, dims=1) - p)
    e_prev = safe_normalize(p.roll(1, dims=1) - p)
    cos = (e_next * e_prev).sum(-1)
    sin = torch.cross(e_next, e_prev, dim=-1).norm(dim=-1)
    # atan2 keeps the gradient finite at 0 and pi, unlike acos.
    return torch.atan2(sin, cos)


def vertex_normals(v_pos: Tensor, t_pos_idx: Tensor, weighting: str = "area") -> Tensor:
    """``[V, 3]`` unit vertex normals averaged from the incident faces.

    Args:
        v_pos: ``[V, 3]`` positions.
        t_pos_idx: ``[F, 3]`` int64 faces, counter-clockwise seen from outside.
        weighting: ``"area"`` (face normal weighted by triangle area, nvdiffrec's
            ``auto_normals``) or ``"angle"`` (by the corner angle, less sensitive to how a
            surface is triangulated).
    Vertices without faces (or with cancelling normals) get ``+z``.
    """
    n = face_normals(v_pos, t_pos_idx, unit=False)
    if weighting == "area":
        corner_weighted = n[:, None, :].expand(-1, 3, -1)
    elif weighting == "angle":
        corner_weighted = safe_normalize(n)[:, None, :] * corner_angles(v_pos, t_pos_idx)[..., None]
    else:
        raise ValueError(f"vertex_normals: weighting must be 'area' or 'angle', got {weighting!r}")
    acc = torch.zeros_like(v_pos).index_add(0, t_pos_idx.reshape(-1), corner_weighted.reshape(-1, 3))
    fallback = torch.tensor(_FALLBACK_NORMAL, dtype=v_pos.dtype, device=v_pos.device)
    acc = torch.where((acc * acc).sum(-1, keepdim=True) > 1e-20, acc, fallback)
    return safe_normalize(acc)


def compute_normals(mesh: Mesh, weighting: str = "area") -> Mesh:
    """A copy of ``mesh`` with smooth vertex normals (``t_nrm_idx = t_pos_idx``)."""
    return mesh.copy(v_nrm=vertex_normals(mesh.v_pos, mesh.t_pos_idx, weighting), t_nrm_idx=mesh.t_pos_idx)


def compute_tangents(mesh: Mesh) -> Mesh:
    """A copy of ``mesh`` with unit tangents along increasing u, orthogonal to the normals.

    Per face, the tangent solves ``dp = T du + B dv`` over the face's UV edges; tangents
    are summed at each normal index (``t_tng_idx = t_nrm_idx``, as nvdiffrec does) and
    Gram-Schmidt orthogonalised against the vertex normal (where the sum is nearly parallel
    to the normal, or zero, an arbitrary tangent-plane direction is used). Needs ``v_tex`` and ``v_nrm``
    (call :func:`compute_normals` first); faces with degenerate UVs contribute a clamped
    (large but finite) value, not NaN.
    """
    if mesh.v_tex is None or mesh.t_tex_idx is None:
        raise ValueError("compute_tangents: mesh has no UVs (v_tex / t_tex_idx)")
    if mesh.v_nrm is None or mesh.t_nrm_idx is None:
        raise ValueError("compute_tangents: mesh has no normals; call compute_normals first")
    pos = mesh.v_pos[mesh.t_pos_idx]  # [F, 3, 3]
    tex = mesh.v_tex[mesh.t_tex_idx].to(pos.dtype)  # [F, 3, 2]
    duv1, duv2 = tex[:, 1] - tex[:, 0], tex[:, 2] - tex[:, 0]
    dp1, dp2 = pos[:, 1] - pos[:, 0], pos[:, 2] - pos[:, 0]
    det = duv1[:, 0:1] * duv2[:, 1:2] - duv1[:, 1:2] * duv2[:, 0:1]
    det = torch.where(det >= 0, det.clamp_min(1e-6), det.clamp_max(-1e-6))
    tangent = (dp1 * duv2[:, 1:2] - dp2 * duv1[:, 1:2]) / det  # [F, 3]
    acc = torch.zeros_like(mesh.v_nrm).index_add(
        0, mesh.t_nrm_idx.reshape(-1), tangent[:, None, :].expand(-1, 3, -1).reshape(-1, 3)
    )
    acc = safe_normalize(acc)
    n = mesh.v_nrm
    ortho = acc - (acc * n).sum(-1, keepdim=True) * n
    # Where the summed tangent is (nearly) parallel to the normal, or zero, any direction in the
    # tangent plane beats a normalized rounding error: take one orthogonal to a coordinate axis.
    axis = torch.zeros_like(n)
    axis[:, 0] = (n[:, 0].abs() <= 0.9).to(n.dtype)
    axis[:, 1] = (n[:, 0].abs() > 0.9).to(n.dtype)
    ortho = torch.where((ortho * ortho).sum(-1, keepdim=True) > 1e-6, ortho, torch.cross(n, axis, dim=-1))
    return mesh.copy(v_tng=safe_normalize(ortho), t_tng_idx=mesh.t_nrm_idx)
