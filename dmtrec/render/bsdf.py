"""The BSDF nvdiffrec optimizes: Lambert diffuse plus GGX microfacet specular.

Specular: GGX (Trowbridge-Reitz) normal distribution with ``alpha = roughness ** 2``,
height-correlated Smith masking-shadowing, Schlick Fresnel. Materials use the metallic
workflow with ``ks = (occlusion, roughness, metallic)`` (glTF's ORM packing):
diffuse albedo ``kd * (1 - metallic)``, specular ``F0 = 0.04 * (1 - metallic) + kd * metallic``.

All functions broadcast over leading dimensions; vectors are ``[..., 3]``, scalars ``[..., 1]``.
They are used for point-light evaluation, for the DFG table (:mod:`dmtrec.render.dfg`) and,
through the split-sum approximation, by :class:`dmtrec.render.light.EnvironmentLight`.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from dmtrec.geometry.normals import safe_normalize

MIN_ROUGHNESS = 0.08
"""Roughness floor (nvdiffrec's): GGX with a smaller alpha is numerically too peaked."""

DIELECTRIC_F0 = 0.04
"""Normal-incidence Fresnel reflectance of non-metals."""

# Cosines are floored: the GGX terms divide by them. Unlike nvdiffrec they are not also capped
# at 1 - eps, which would flatten the GGX peak at low roughness (D then no longer integrates to 1).
_COS_EPS = 1e-4
# Below this view-to-shading-normal cosine the shading normal is blended towards the geometric one.
_BEND_THRESHOLD = 0.1


def dot(x: Tensor, y: Tensor) -> Tensor:
    """``[..., 3] x [..., 3] -> [..., 1]``."""
    return (x * y).sum(-1, keepdim=True)


def reflect(wo: Tensor, n: Tensor) -> Tensor:
    """Mirror ``wo`` (pointing away from the surface) about ``n``: ``2 (wo.n) n - wo``."""
    return 2.0 * dot(wo, n) * n - wo


def metallic_workflow(kd: Tensor, ks: Tensor) -> Tuple[Tensor, Tensor]:
    """Diffuse albedo and specular ``F0`` from ``kd [..., 3]`` and ``ks = (occlusion, roughness, metallic)``."""
    metallic = ks[..., 2:3]
    return kd * (1.0 - metallic), DIELECTRIC_F0 * (1.0 - metallic) + kd * metallic


def lambert(n: Tensor, wi: Tensor) -> Tensor:
    """Lambert BRDF times the cosine: ``max(n.wi, 0) / pi`` ``[..., 1]``."""
    return dot(n, wi).clamp_min(0.0) / math.pi


def fresnel_schlick(f0: Tensor, f90: float, cos_theta: Tensor) -> Tensor:
    cos_theta = cos_theta.clamp(0.0, 1.0)
    return f0 + (f90 - f0) * (1.0 - cos_theta) ** 5


def ndf_ggx(alpha_sq: Tensor, cos_theta: Tensor) -> Tensor:
    """GGX normal distribution ``D(h)`` for ``cos_theta = n.h`` (integrates ``D cos`` to 1)."""
    cos_theta = cos_theta.clamp(0.0, 1.0)
    d = (cos_theta * alpha_sq - cos_theta) * cos_theta + 1.0
    return alpha_sq / (d * d * math.pi)


def lambda_ggx(alpha_sq: Tensor, cos_theta: Tensor) -> Tensor:
    """Smith's Lambda for GGX."""
    cos_theta = cos_theta.clamp(_COS_EPS, 1.0)
    cos_sq = cos_theta * cos_theta
    tan_sq = (1.0 - cos_sq) / cos_sq
    return 0.5 * (torch.sqrt(1.0 + alpha_sq * tan_sq) - 1.0)


def masking_smith_ggx_correlated(alpha_sq: Tensor, cos_i: Tensor, cos_o: Tensor) -> Tensor:
    """Height-correlated Smith masking-shadowing ``G2 = 1 / (1 + Lambda(i) + Lambda(o))``."""
    return 1.0 / (1.0 + lambda_ggx(alpha_sq, cos_i) + lambda_ggx(alpha_sq, cos_o))


def ggx_alpha_sq(roughness: Tensor) -> Tensor:
    """``alpha ** 2`` from perceptual roughness (``alpha = roughness ** 2``, floored at :data:`MIN_ROUGHNESS`)."""
    alpha = (roughness * roughness).clamp(MIN_ROUGHNESS**2, 1.0)
    return alpha * alpha


def ggx_specular(f0: Tensor, n: Tensor, wo: Tensor, wi: Tensor, roughness: Tensor) -> Tensor:
    """GGX specular BRDF times the cosine ``f_s(wi, wo) (n.wi)`` ``[..., C]`` (C from ``f0``).

    ``wo`` points to the viewer, ``wi`` to the light; zero unless both are above the surface.
    """
    alpha_sq = ggx_alpha_sq(roughness)
    h = safe_normalize(wo + wi)
    cos_o, cos_i = dot(wo, n), dot(wi, n)
    d = ndf_ggx(alpha_sq, dot(n, h))
    g = masking_smith_ggx_correlated(alpha_sq, cos_i, cos_o)
    f = fresnel_schlick(f0, 1.0, dot(wo, h))
    value = f * d * g * 0.25 / cos_o.clamp_min(_COS_EPS)
    above = (cos_o > _COS_EPS) & (cos_i > _COS_EPS)
    return torch.where(above, value, torch.zeros_like(value))


def pbr_bsdf(kd: Tensor, ks: Tensor, n: Tensor, wo: Tensor, wi: Tensor) -> Tensor:
    """Full BSDF times the cosine for one light direction (metallic workflow, occlusion applied).

    Args:
        kd: ``[..., 3]`` base colour; ks: ``[..., 3]`` (occlusion, roughness, metallic).
        n, wo, wi: ``[..., 3]`` unit normal, view and light directions.
    Returns:
        ``[..., 3]`` reflected radiance per unit incident radiance from ``wi``.
    """
    diffuse_albedo, f0 = metallic_workflow(kd, ks)
    value = diffuse_albedo * lambert(n, wi) + ggx_specular(f0, n, wo, wi, ks[..., 1:2])
    return value * (1.0 - ks[..., 0:1])


def perturb_normal(perturbation: Tensor, n: Tensor, tangent: Tensor) -> Tensor:
    """Apply a tangent-space normal ``[..., 3]`` (x along ``tangent``, y along the bitangent
    ``w * (n x tangent)``, z along ``n``, z clamped to >= 0) to the smooth normal ``n``.

    ``tangent`` is ``[..., 3]`` (``w = 1``) or ``[..., 4]`` with MikkTSpace's / glTF's sign ``w``
    (-1 on faces with mirrored UVs); y is OpenGL-style (+Y towards increasing v).
    """
    sign = 1.0 if tangent.shape[-1] == 3 else torch.where(tangent[..., 3:4] < 0, -1.0, 1.0)
    tangent = tangent[..., :3]
    bitangent = safe_normalize(torch.linalg.cross(n, tangent, dim=-1)) * sign
    shading = (
        tangent * perturbation[..., 0:1]
        + bitangent * perturbation[..., 1:2]
        + n * perturbation[..., 2:3].clamp_min(0.0)
    )
    return safe_normalize(shading)


def prepare_shading_normal(
    pos: Tensor,
    view_pos: Tensor,
    smooth_normal: Tensor,
    geometric_normal: Tensor,
    perturbation: Optional[Tensor] = None,
    tangent: Optional[Tensor] = None,
    two_sided: bool = True,
) -> Tensor:
    """The normal that shading uses, as nvdiffrec builds it.

    Perturbs the interpolated normal by a tangent-space normal map (when given), flips both
    normals towards the viewer for back faces (``two_sided``), and bends the result towards the
    geometric normal where it would face away from the viewer (no black silhouettes from
    interpolated or perturbed normals).

    Args:
        pos: ``[..., 3]`` surface points; view_pos: ``[..., 3]`` camera centres (broadcast).
        smooth_normal, geometric_normal: ``[..., 3]`` interpolated vertex normal and face normal.
        perturbation: ``[..., 3]`` tangent-space normal, or None; tangent: ``[..., 3]`` interpolated
            tangent or ``[..., 4]`` with the bitangent sign (:func:`perturb_normal`).
    Returns:
        ``[..., 3]`` unit shading normals.
    """
    n = safe_normalize(smooth_normal)
    if perturbation is not None:
        if tangent is None:
            raise ValueError("prepare_shading_normal: a normal perturbation needs a tangent")
        n = perturb_normal(perturbation, n, torch.cat([safe_normalize(tangent[..., :3]), tangent[..., 3:]], -1))
    view = safe_normalize(view_pos - pos)
    geometric = safe_normalize(geometric_normal)
    if two_sided:
        front = dot(geometric, view) > 0
        n = torch.where(front, n, -n)
        geometric = torch.where(front, geometric, -geometric)
    t = (dot(view, n) / _BEND_THRESHOLD).clamp(0.0, 1.0)
    return torch.lerp(geometric, n, t)
