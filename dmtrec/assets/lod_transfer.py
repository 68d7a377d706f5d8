"""Texture transfer from a high-poly asset onto a new mesh by closest-surface lookup.

Every texel of the new mesh's UV atlas maps to a point on the new surface; its value comes from
the closest point of the original surface (:func:`dmtrec.geometry.closest_point.closest_points`):
kd and ks are looked up in the original's textures at that point's UV, and the normal map holds
the original's shading normal (its smooth normal perturbed by its own normal map, if any)
written in the new mesh's tangent frame, so a decimated mesh keeps the look of the geometric detail it
lost (a "normal bake").
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh
from dmtrec.geometry.closest_point import closest_points
from dmtrec.geometry.normals import compute_normals, compute_tangents, safe_normalize
from dmtrec.render.bake import _dilate
from dmtrec.render.bsdf import perturb_normal
from dmtrec.render.material import TexturedMaterial


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

    # float64: the dense originals this reads have small triangles next to big ones.
    points, _ = closest_points(pos.double(), source.v_pos, source.t_pos_idx, chunk=1 << 16)
    src_uv = points.interpolate(source.v_tex.float(), source.t_tex_idx)[None, :, None, :]  # [1, N, 1, 2]
    sample = material.sample(None, src_uv, None, rasterizer)
    source = compute_normals(source) if source.v_nrm is None else source
    world_n = safe_normalize(points.interpolate(source.v_nrm, source.t_nrm_idx))
    if sample.perturbation is not None:
        source = compute_tangents(source) if source.v_tng is None else source
        src_t = points.interpolate(source.v_tng, source.t_tng_idx)
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
