"""Bake a volumetric material into 2D textures over a UV-unwrapped mesh (nvdiffrec's ``render_uv``).

Each texel covered by a triangle in UV space gets the material evaluated at the world position
the texel maps to. Uncovered texels are filled from their covered neighbours (a few rings of
dilation, then the mean colour) so that bilinear and mip-mapped lookups near UV seams do not
blend in garbage.

The normal channel is copied as nvdiffrec does: the volumetric material's tangent-space output
is reinterpreted in the tangent frame of the baked mesh's UVs.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from dmtrec.geometry.normals import safe_normalize

from .material import TexturedMaterial, VolumetricMaterial


@torch.no_grad()
def bake_volumetric(
    mesh, material: VolumetricMaterial, rasterizer, resolution: Union[int, Sequence[int]] = 1024, dilation: int = 16
) -> TexturedMaterial:
    """Sample ``material`` into kd / ks / normal textures over ``mesh``'s UV layout.

    Args:
        mesh: :class:`dmtrec.geometry.Mesh` with ``v_tex`` / ``t_tex_idx`` in [0, 1] (OBJ convention).
        material: the volumetric material to bake.
        rasterizer: any backend (rasterizes the UV layout).
        resolution: texture size ``H = W`` or ``(H, W)``.
        dilation: rings of texels grown out of the covered region before the remaining holes
            get the mean value.

    Returns:
        A :class:`TexturedMaterial` with the material's value ranges (textures row 0 = top).
    """
    if mesh.v_tex is None or mesh.t_tex_idx is None:
        raise ValueError("bake_volumetric: the mesh has no UVs (v_tex / t_tex_idx); unwrap it first")
    if mesh.is_empty:
        raise ValueError("bake_volumetric: the mesh is empty")
    height, width = (
        (resolution, resolution) if isinstance(resolution, int) else (int(resolution[0]), int(resolution[1]))
    )
    uv = mesh.v_tex.to(torch.float32)
    clip = torch.cat([uv * 2.0 - 1.0, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], -1)
    rast, _ = rasterizer.rasterize(clip[None], mesh.t_tex_idx.int(), (height, width))
    covered = rast[0, ..., 3] > 0
    pos, _ = rasterizer.interpolate(mesh.v_pos, rast, mesh.t_pos_idx.int())
    values = torch.zeros(height, width, material.out_min.numel(), device=pos.device)
    values[covered] = material.evaluate(pos[0][covered])
    values = _dilate(values, covered, dilation)
    values = values.flip(0)  # rasterized row 0 is v = 0, the bottom of the image
    lo, hi = material.out_min.tolist(), material.out_max.tolist()
    normal = safe_normalize(values[..., 6:9]) if material.perturbs_normals else None
    return TexturedMaterial.from_tensors(
        values[..., 0:3],
        values[..., 3:6],
        normal,
        kd_range=(lo[0:3], hi[0:3]),
        ks_range=(lo[3:6], hi[3:6]),
        normal_range=(lo[6:9], hi[6:9]) if normal is not None else None,
    )


def _dilate(values: Tensor, covered: Tensor, rings: int) -> Tensor:
    """Grow ``values [H, W, C]`` from ``covered [H, W]`` texels into their neighbours."""
    if not bool(covered.any()):
        return values
    image = values.permute(2, 0, 1)[None]
    mask = covered[None, None].to(values.dtype)
    for _ in range(rings):
        if bool(mask.all()):
            break
        total = F.avg_pool2d(image * mask, 3, stride=1, padding=1, count_include_pad=False)
        weight = F.avg_pool2d(mask, 3, stride=1, padding=1, count_include_pad=False)
        grown = (weight > 0) & (mask == 0)
        image = torch.where(grown, total / weight.clamp_min(1e-12), image)
        mask = torch.maximum(mask, grown.to(mask.dtype))
    mean = (image * mask).sum((2, 3), keepdim=True) / mask.sum()
    image = torch.where(mask > 0, image, mean)
    return image[0].permute(1, 2, 0)
