"""Face and vertex normals and UV tangents of triangle meshes (differentiable)."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh

from .topology import cached

_FALLBACK_NORMAL = (0.0, 0.0, 1.0)


def safe_normalize(x: Tensor, eps: float = 1e-20) -> Tensor:
    """Unit vectors ``[..., C]``: ``x / |x|`` along the last dim, with a finite value and gradient
    where ``|x| = 0`` (zero vectors stay zero). The one normalisation of geometry and shading alike."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True).clamp_min(eps))


def face_normals(v_pos: Tensor, t_pos_idx: Tensor, unit: bool = True) -> Tensor:
    """``[F, 3]`` face normals ``(p1 - p0) x (p2 - p0)``; unnormalized, their length is twice the area."""
    p0, p1, p2 = (v_pos.index_select(0, t_pos_idx[:, i]) for i in range(3))  # backward: index_add, not index_put
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
    """A copy of ``mesh`` with MikkTSpace tangents: ``v_tng`` ``[G, 4]`` (unit tangent along
    increasing u, orthogonal to the normal, and the bitangent sign ``w = +-1``), ``t_tng_idx``
    ``[F, 3]``.

    MikkTSpace (Mikkelsen 2008, the frame Blender, Substance, Unity, Unreal and glTF assume) is
    what an engine reconstructs from a mesh, so a normal map optimised in this frame shades
    the same there. Per face, ``T_f`` is the unit ``dp/du``; at each corner it is projected into
    the vertex normal's tangent plane, normalised and weighted by the corner angle measured
    between the edges projected into that plane; corners are summed over their *group* and
    normalised. The bitangent is ``w * cross(n, t)``, ``w = +1`` where the face's UVs keep
    their orientation (v up, the Mesh/OBJ convention, which is also what glTF's TANGENT
    expects) and ``-1`` on mirrored faces.

    Groups (MikkTSpace's): the corners at one welded vertex whose faces are connected through
    shared edges across faces of the same UV orientation. Vertices are welded by their
    (position, normal, UV) *indices* where MikkTSpace compares values: the same partition for
    meshes whose index buffers hold no duplicate values, as dmtrec's and glTF's do. Faces of
    zero UV area take the orientation of a well-formed face at a corner and contribute no
    direction; faces with repeated positions contribute nothing (MikkTSpace's rules).
    Differentiable in the positions. Needs ``v_tex`` and ``v_nrm`` (:func:`compute_normals`).
    """
    if mesh.v_tex is None or mesh.t_tex_idx is None:
        raise ValueError("compute_tangents: mesh has no UVs (v_tex / t_tex_idx)")
    if mesh.v_nrm is None or mesh.t_nrm_idx is None:
        raise ValueError("compute_tangents: mesh has no normals; call compute_normals first")
    # index_select, not v[idx]: the same values, and a backward (index_add) several times faster.
    pos = _corners(mesh.v_pos, mesh.t_pos_idx)  # [F, 3, 3]
    tex = mesh.v_tex[mesh.t_tex_idx].to(pos.dtype)  # [F, 3, 2]
    nrm = _corners(mesh.v_nrm, mesh.t_nrm_idx).to(pos.dtype)  # [F, 3, 3]
    duv1, duv2 = tex[:, 1] - tex[:, 0], tex[:, 2] - tex[:, 0]
    dp1, dp2 = pos[:, 1] - pos[:, 0], pos[:, 2] - pos[:, 0]
    det = (duv1[:, 0] * duv2[:, 1] - duv1[:, 1] * duv2[:, 0]).detach()  # twice the signed UV area
    # MikkTSpace's vOs: det * dp/du, normalised with the sign of det, i.e. the unit dp/du.
    raw = dp1 * duv2[:, 1:2] - dp2 * duv1[:, 1:2]
    face_t = torch.where(det[:, None] < 0, -raw, raw)
    usable = (det.abs() > _TINY) & ((face_t.detach() ** 2).sum(-1) > _TINY)
    face_t = torch.where(usable[:, None], safe_normalize(face_t), torch.zeros_like(face_t))
    orient = _orientation(mesh, det, usable)  # [F] bool, per face

    # Per corner: the face tangent and the two edges, projected into the normal's plane.
    def project(v: Tensor) -> Tensor:
        v = v - (v * nrm).sum(-1, keepdim=True) * nrm
        return torch.where((v.detach() ** 2).sum(-1, keepdim=True) > _TINY, safe_normalize(v), v)

    corner_t = project(face_t[:, None, :].expand(-1, 3, -1))
    e_prev, e_next = project(pos.roll(1, dims=1) - pos), project(pos.roll(-1, dims=1) - pos)
    # The angle between the projected edges (atan2 keeps the gradient finite, unlike acos).
    angle = torch.atan2(torch.linalg.cross(e_prev, e_next, dim=-1).norm(dim=-1), (e_prev * e_next).sum(-1))
    degenerate = cached("degenerate_faces", (mesh.t_pos_idx,), lambda: _degenerate(mesh.t_pos_idx))
    weight = torch.where(degenerate[:, None], torch.zeros_like(angle), angle)

    t_tng_idx, first, sign = _tangent_groups(mesh, orient, degenerate, pos.dtype)
    acc = torch.zeros(first.shape[0], 3, dtype=pos.dtype, device=pos.device).index_add(
        0, t_tng_idx, (corner_t * weight[..., None]).reshape(-1, 3)
    )
    # A group without any tangent direction (MikkTSpace leaves a zero vector there) gets some
    # unit vector of the tangent plane: glTF requires unit tangents, and the frame is arbitrary.
    # The group's normal is its first corner's (all its corners index one normal).
    n = nrm.reshape(-1, 3).detach().index_select(0, first)
    axis = torch.zeros_like(n)
    axis[:, 0] = (n[:, 0].abs() <= 0.9).to(n.dtype)
    axis[:, 1] = (n[:, 0].abs() > 0.9).to(n.dtype)
    fallback = safe_normalize(torch.linalg.cross(n, axis, dim=-1))
    acc = torch.where((acc.detach() ** 2).sum(-1, keepdim=True) > _TINY, safe_normalize(acc), fallback)
    return mesh.copy(v_tng=torch.cat([acc, sign], -1), t_tng_idx=t_tng_idx.reshape(-1, 3))


def _degenerate(t_pos_idx: Tensor) -> Tensor:
    """``[F]`` True where a face repeats a position index."""
    idx = t_pos_idx
    return (idx[:, 0] == idx[:, 1]) | (idx[:, 1] == idx[:, 2]) | (idx[:, 0] == idx[:, 2])


def _corners(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` (``[F, 3, C]``) by ``index_select``."""
    return values.index_select(0, index.reshape(-1)).view(*index.shape, values.shape[-1])


def _tangent_groups(
    mesh: Mesh, orient: Tensor, degenerate: Tensor, dtype: torch.dtype
) -> Tuple[Tensor, Tensor, Tensor]:
    """``(t_tng_idx [3F], first [G], sign [G, 1])``: :func:`_corner_groups`, each group's first
    corner and its bitangent sign (``+-1`` in ``dtype``: a group never mixes orientations),
    reused while the index tensors are unchanged and the faces' UV orientations are the same as
    when they were built. The orientation is the one input that is not topology alone: it
    follows the UVs and, on faces without a usable UV frame, the positions (``_orientation``),
    so it is compared (one O(F) check) rather than trusted."""
    memo = cached("tangent_groups", (mesh.t_pos_idx, mesh.t_nrm_idx, mesh.t_tex_idx), dict)
    if "orient" not in memo or not torch.equal(memo["orient"], orient):
        t_tng_idx = _corner_groups(mesh, orient, degenerate)
        groups = int(t_tng_idx.max()) + 1 if t_tng_idx.numel() else 0
        corner = torch.arange(t_tng_idx.numel(), device=t_tng_idx.device)
        first = torch.full((groups,), t_tng_idx.numel(), dtype=torch.int64, device=t_tng_idx.device)
        first = first.scatter_reduce(0, t_tng_idx, corner, reduce="amin")
        memo.clear()
        memo.update(orient=orient.clone(), t_tng_idx=t_tng_idx, first=first)
    if dtype not in memo:
        corner_orient = orient[:, None].expand(-1, 3).reshape(-1)
        memo[dtype] = (corner_orient.index_select(0, memo["first"]).to(dtype) * 2.0 - 1.0)[:, None]
    return memo["t_tng_idx"], memo["first"], memo[dtype]


# MikkTSpace's NotZero (|x| > FLT_MIN) in float32; squared lengths use the same floor.
_TINY = 1e-30


@torch.no_grad()
def _corner_groups(mesh: Mesh, orient: Tensor, degenerate: Tensor) -> Tensor:
    """``[3F]`` group id per corner: corners at one welded vertex, of one orientation, joined
    through the edges their faces share (connected components by label propagation)."""
    n = mesh.num_faces * 3
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=mesh.device)
    # Tuples become single int64 keys (mixed radix) because 1-D unique is much faster than rows.
    if mesh.t_nrm_idx is mesh.t_pos_idx or torch.equal(mesh.t_nrm_idx, mesh.t_pos_idx):
        # Smooth normals indexed like the positions (compute_normals) add no split: the
        # position indices already rank the pairs as unique's inverse would.
        key = mesh.t_pos_idx.long()
    else:
        key = mesh.t_pos_idx.long() * (int(mesh.t_nrm_idx.max()) + 1) + mesh.t_nrm_idx.long()
        key = torch.unique(key, return_inverse=True)[1]
    key = key * (int(mesh.t_tex_idx.max()) + 1) + mesh.t_tex_idx.long()
    welded = torch.unique(key, return_inverse=True)[1].reshape(-1, 3)  # [F, 3]
    # Each corner touches two edges of its face: (corner, next) and (previous, corner). Two
    # corners at the same welded vertex are adjacent when their faces share one of these edges
    # (sorted welded ends) and the orientation (mirrored faces never join).
    o = orient[:, None].expand(-1, 3).long()
    size = int(welded.max()) + 1
    incidences = []
    for a, b in ((welded, welded.roll(-1, dims=1)), (welded.roll(1, dims=1), welded)):
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        incidences.append((((lo * size + hi) * 2 + o) * 2 + (welded == hi).long()).reshape(-1))
    incidence = torch.unique(torch.cat(incidences), return_inverse=True)[1].reshape(2, n)
    # Degenerate faces join nothing (their corners keep singleton groups).
    alive = ~degenerate[:, None].expand(-1, 3).reshape(-1)
    label = torch.arange(n, device=welded.device)
    count = int(incidence.max()) + 1
    while True:
        best = torch.full((count,), n, dtype=torch.int64, device=welded.device)
        for k in range(2):
            best = best.scatter_reduce(0, incidence[k][alive], label[alive], reduce="amin")
        new = torch.where(alive, torch.minimum(label, torch.minimum(best[incidence[0]], best[incidence[1]])), label)
        if torch.equal(new, label):
            break
        label = new
    return torch.unique(label, return_inverse=True)[1]


def _orientation(mesh: Mesh, det: Tensor, usable: Tensor) -> Tensor:
    """``[F]`` True where the face's UVs keep their orientation; faces without a usable UV
    frame take it from a usable face at one of their corners (preserving where none)."""
    orient = det > 0
    if bool(usable.all()):
        return orient
    corner_vertex = mesh.t_pos_idx.reshape(-1)
    good = usable[:, None].expand(-1, 3).reshape(-1)
    votes = torch.zeros(mesh.num_vertices, dtype=torch.int64, device=det.device)
    votes = votes.index_add(0, corner_vertex[good], (orient[:, None].expand(-1, 3).reshape(-1)[good].long() * 2 - 1))
    has = torch.zeros(mesh.num_vertices, dtype=torch.bool, device=det.device)
    has[corner_vertex[good]] = True
    vote = (votes[mesh.t_pos_idx].sum(1) >= 0) | ~has[mesh.t_pos_idx].any(1)
    return torch.where(usable, orient, vote)
