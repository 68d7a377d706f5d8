"""Texture transfer from a high-poly asset onto a new mesh by closest-surface lookup.

Every texel of the new mesh's UV atlas maps to a point on the new surface; its value comes from
the closest point of the original surface: kd and ks are looked up in the original's textures
at that point's UV, and the normal map holds the original's shading normal (its smooth normal
perturbed by its own normal map, if any) written in the new mesh's tangent frame, so a
decimated mesh keeps the look of the geometric detail it lost (a "normal bake").
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh
from dmtrec.geometry.normals import compute_normals, compute_tangents, safe_normalize
from dmtrec.render.bake import _dilate
from dmtrec.render.bsdf import perturb_normal
from dmtrec.render.material import TexturedMaterial

CANDIDATES = 16
"""Triangles (nearest by centroid) whose exact closest points are compared per query point."""


def closest_points(points: np.ndarray, v_pos: np.ndarray, faces: np.ndarray, k: int = CANDIDATES, chunk: int = 1 << 16):
    """Closest surface points of a triangle mesh.

    The ``k`` triangles with the nearest centroids (a KD-tree) are candidates; of those, the
    exact point-triangle closest point wins. Exact wherever the closest triangle is among the
    candidates, which holds for the dense originals this is meant for.

    Args:
        points: ``[N, 3]`` query points; v_pos ``[V, 3]``; faces ``[F, 3]``.
    Returns:
        ``(face [N] int64, barycentric [N, 3] float64, distance [N] float64)``.
    """
    from scipy.spatial import cKDTree  # lazy: only lod needs it

    v = np.asarray(v_pos, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    tree = cKDTree(v[f].mean(1))
    k = int(min(k, f.shape[0]))
    face_out = np.zeros(points.shape[0], np.int64)
    bary_out = np.zeros((points.shape[0], 3))
    dist_out = np.zeros(points.shape[0])
    for start in range(0, points.shape[0], chunk):
        p = np.asarray(points[start : start + chunk], dtype=np.float64)
        _, cand = tree.query(p, k=k)
        cand = cand.reshape(p.shape[0], k)
        tri = v[f[cand]]  # [n, k, 3, 3]
        d2, bary = _point_triangle(p[:, None, :], tri[..., 0, :], tri[..., 1, :], tri[..., 2, :])
        best = d2.argmin(1)
        rows = np.arange(p.shape[0])
        face_out[start : start + chunk] = cand[rows, best]
        bary_out[start : start + chunk] = bary[rows, best]
        dist_out[start : start + chunk] = np.sqrt(d2[rows, best])
    return face_out, bary_out, dist_out


def _point_triangle(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Squared distance ``[...]`` and barycentrics ``[..., 3]`` of the closest point of triangles ``abc`` to ``p``.

    Inside the triangle's prism the plane projection is closest; otherwise the closest of the
    three edge segments (each clamped projection).
    """
    e0, e1, ep = b - a, c - a, p - a
    d00, d01, d11 = (e0 * e0).sum(-1), (e0 * e1).sum(-1), (e1 * e1).sum(-1)
    d20, d21 = (ep * e0).sum(-1), (ep * e1).sum(-1)
    den = d00 * d11 - d01 * d01
    safe = np.where(np.abs(den) > 1e-30, den, 1.0)
    bv = (d11 * d20 - d01 * d21) / safe
    bw = (d00 * d21 - d01 * d20) / safe
    bu = 1.0 - bv - bw
    inside = (np.abs(den) > 1e-30) & (bu >= 0) & (bv >= 0) & (bw >= 0)
    plane = a + bv[..., None] * e0 + bw[..., None] * e1
    best_d2 = np.where(inside, ((p - plane) ** 2).sum(-1), np.inf)
    best_bary = np.stack([bu, bv, bw], -1)
    for i, (s, t) in enumerate(((a, b), (b, c), (c, a))):
        seg = t - s
        length2 = np.maximum((seg * seg).sum(-1), 1e-30)
        x = np.clip(((p - s) * seg).sum(-1) / length2, 0.0, 1.0)
        d2 = ((p - (s + x[..., None] * seg)) ** 2).sum(-1)
        bary = np.zeros(best_bary.shape)
        bary[..., i], bary[..., (i + 1) % 3] = 1.0 - x, x
        better = d2 < best_d2
        best_d2 = np.where(better, d2, best_d2)
        best_bary = np.where(better[..., None], bary, best_bary)
    return best_d2, best_bary


def _interpolate(values: Tensor, index: Tensor, face: Tensor, bary: Tensor) -> Tensor:
    """Per-corner attribute ``values[index[face]]`` blended with barycentrics: ``[N, C]``."""
    return (values[index[face]] * bary[..., None]).sum(1)


@torch.no_grad()
def transfer_textures(
    source: Mesh, material: TexturedMaterial, target: Mesh, resolution: int, rasterizer, dilation: int = 16
) -> dict[str, Tensor]:
    """Textures ``{"kd", "ks", "normal"}`` (``[H, W, C]``, row 0 = top) for ``target``'s UV atlas.

    Args:
        source: the original mesh with UVs; material: its textured material (normal map optional).
        target: the new mesh with UVs (``v_tex`` / ``t_tex_idx``), in the same space as ``source``.
        resolution: texture size (square).
        rasterizer: rasterizes the UV layout.
        dilation: texel rings grown past the UV charts (so mip maps do not bleed background in).
    """
    if target.v_tex is None or source.v_tex is None:
        raise ValueError("transfer_textures: both meshes need UVs")
    device = target.v_pos.device
    uv = target.v_tex.float()
    clip = torch.cat([uv * 2.0 - 1.0, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], -1)
    rast, _ = rasterizer.rasterize(clip[None], target.t_tex_idx.int(), (resolution, resolution))
    covered = rast[0, ..., 3] > 0
    target = compute_tangents(compute_normals(target))
    pos, _ = rasterizer.interpolate(target.v_pos, rast, target.t_pos_idx.int())
    nrm, _ = rasterizer.interpolate(target.v_nrm, rast, target.t_nrm_idx.int())
    tng, _ = rasterizer.interpolate(target.v_tng, rast, target.t_tng_idx.int())
    pos, nrm, tng = pos[0][covered], safe_normalize(nrm[0][covered]), tng[0][covered]
    # MikkTSpace tangents carry the bitangent's sign in w (-1 where the UVs are mirrored).
    sign, tng = torch.where(tng[:, 3:4] < 0, -1.0, 1.0), safe_normalize(tng[:, :3])

    face, bary, _ = closest_points(pos.cpu().numpy(), source.v_pos.cpu().numpy(), source.t_pos_idx.cpu().numpy())
    face = torch.from_numpy(face).to(device)
    bary = torch.from_numpy(bary).to(device=device, dtype=torch.float32)
    src_uv = _interpolate(source.v_tex.float(), source.t_tex_idx, face, bary)[None, :, None, :]  # [1, N, 1, 2]
    sample = material.sample(None, src_uv, None, rasterizer)
    source = compute_normals(source) if source.v_nrm is None else source
    world_n = safe_normalize(_interpolate(source.v_nrm, source.t_nrm_idx, face, bary))
    if sample.perturbation is not None:
        source = compute_tangents(source) if source.v_tng is None else source
        src_t = _interpolate(source.v_tng, source.t_tng_idx, face, bary)
        src_t = torch.cat([safe_normalize(src_t[:, :3]), src_t[:, 3:]], -1)
        world_n = perturb_normal(sample.perturbation[0, :, 0], world_n, src_t)
    # The inverse of perturb_normal's frame (tangent, w * (n x tangent), normal) on the target.
    tng = safe_normalize(tng - (tng * nrm).sum(-1, keepdim=True) * nrm)
    bitangent = safe_normalize(torch.linalg.cross(nrm, tng, dim=-1)) * sign
    local = torch.stack([(world_n * tng).sum(-1), (world_n * bitangent).sum(-1), (world_n * nrm).sum(-1)], -1)
    local = safe_normalize(torch.cat([local[:, :2], local[:, 2:].clamp_min(0.05)], -1))

    kd, ks = sample.kd[0, :, 0], sample.ks[0, :, 0]
    channels = [kd, ks, local] + ([sample.alpha[0, :, 0]] if sample.alpha is not None else [])
    values = torch.zeros(resolution, resolution, sum(c.shape[-1] for c in channels), device=device)
    values[covered] = torch.cat(channels, -1)
    values = _dilate(values, covered, dilation).flip(0)  # rasterized row 0 is v = 0, the image bottom
    out = {"kd": values[..., 0:3], "ks": values[..., 3:6], "normal": safe_normalize(values[..., 6:9])}
    if sample.alpha is not None:
        out["kd"] = torch.cat([out["kd"], values[..., 9:10]], -1)
    return {key: value.contiguous() for key, value in out.items()}
