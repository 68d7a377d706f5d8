"""Order-2 spherical harmonics of an environment probe, and its main light.

Real SH basis in Sloan's ordering ``k = l (l + 1) + m`` ("Stupid Spherical Harmonics (SH)
Tricks", Sloan 2008, appendix; the same constants as Unity's ``SHEvalLinearL0L1/L2``):
``Y00 = 0.282095``; ``Y1-1, Y10, Y11 = 0.488603 (y, z, x)``; ``Y2-2 = 1.092548 xy``,
``Y2-1 = 1.092548 yz``, ``Y20 = 0.315392 (3 z^2 - 1)``, ``Y21 = 1.092548 xz``,
``Y22 = 0.546274 (x^2 - y^2)``.

* Projection: ``L_k = integral L(w) Y_k(w) dw``, summed over the probe's cube-map texels with
  their exact solid angles (:func:`project_cubemap`).
* Irradiance (Ramamoorthi and Hanrahan 2001, "An Efficient Representation for Irradiance
  Environment Maps"): ``E(n) = sum_k A_l L_k Y_k(n)`` with ``A_0 = pi``, ``A_1 = 2 pi / 3``,
  ``A_2 = pi / 4``, exact for radiance up to order 2 (:func:`sh_irradiance`); a Lambertian
  surface of albedo ``a`` sends ``a E(n) / pi``.
* Main light (Sloan 2008, section "Extracting a directional light"): its direction is the
  luminance-weighted linear band ``(L11, L1-1, L10)`` normalised; its colour ``c`` the least-squares
  fit of a directional light's projection ``c Y_k(d)`` to the bands 1 and 2,
  ``c = sum_k L_k Y_k(d) / sum_k Y_k(d)^2`` (clamped at 0). The ambient SH is ``L_k - c Y_k(d)``,
  so that ambient plus the main light reproduce the probe's order-2 irradiance. The shaders'
  ``main_color`` is ``c / pi`` (Lambert's 1/pi folded in).

The probe's optional view rotation (``EnvironmentLight.xfm``) is not applied: directions are world.
"""

from __future__ import annotations

import math
import weakref
from typing import Dict

import torch
from torch import Tensor

from ..cubemap import cube_directions, cube_texel_solid_angles
from ..light import EnvironmentLight
from .base import Lighting

BAND_OF = torch.tensor([0, 1, 1, 1, 2, 2, 2, 2, 2])
COSINE_LOBE = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)
LUMINANCE = (0.2126, 0.7152, 0.0722)


def sh_basis(d: Tensor) -> Tensor:
    """The 9 real SH basis functions ``[..., 9]`` at unit directions ``d [..., 3]``."""
    x, y, z = d.unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, 0.282095),
            0.488603 * y,
            0.488603 * z,
            0.488603 * x,
            1.092548 * x * y,
            1.092548 * y * z,
            0.315392 * (3.0 * z * z - 1.0),
            1.092548 * x * z,
            0.546274 * (x * x - y * y),
        ],
        -1,
    )


def project_cubemap(cube: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """SH coefficients ``[9, C]`` of a ``[6, S, S, C]`` radiance cube map (computed in ``dtype``)."""
    res = cube.shape[1]
    dirs = cube_directions(res, cube.device, dtype).reshape(-1, 3)
    area = cube_texel_solid_angles(res, cube.device, dtype).reshape(-1, 1)
    return sh_basis(dirs).T @ (cube.detach().to(dtype).reshape(-1, cube.shape[-1]) * area)


def sh_irradiance(coeffs: Tensor, normal: Tensor) -> Tensor:
    """Irradiance ``[..., C]`` at unit normals ``[..., 3]`` of radiance with SH ``coeffs [9, C]``."""
    lobe = coeffs.new_tensor(COSINE_LOBE)[BAND_OF.to(coeffs.device)]
    return sh_basis(normal) @ (coeffs * lobe[:, None])


def main_light(coeffs: Tensor):
    """``(direction [3], colour c [C], ambient coefficients [9, C])`` of SH ``coeffs [9, C]``
    (see the module notes; ``c`` is not yet divided by pi)."""
    weights = (
        coeffs.new_tensor(LUMINANCE[: coeffs.shape[1]]) if coeffs.shape[1] == 3 else coeffs.new_ones(coeffs.shape[1])
    )
    linear = coeffs[[3, 1, 2]] @ weights  # (x, y, z) components
    norm = linear.norm()
    direction = linear / norm if float(norm) > 1e-12 else coeffs.new_tensor([0.0, 1.0, 0.0])
    basis = sh_basis(direction)
    high = basis[1:]
    color = ((coeffs[1:] * high[:, None]).sum(0) / (high * high).sum()).clamp_min(0.0)
    ambient = coeffs - basis[:, None] * color[None]
    return direction, color, ambient


_CACHE: Dict[int, tuple] = {}


def probe_lighting(light) -> Lighting:
    """The :class:`Lighting` of an :class:`~dmtrec.render.light.EnvironmentLight` (float32),
    derived once per probe while its texels are unchanged (constant w.r.t. them: the game
    models fit materials under a fixed probe)."""
    key = (light.base._version, light.base.data_ptr(), light.base.device)
    entry = _CACHE.get(id(light))
    if entry is not None and entry[0]() is light and entry[1] == key:
        lighting = entry[2]
        return Lighting(light, lighting.sh, lighting.ambient_sh, lighting.main_dir, lighting.main_color)
    coeffs = project_cubemap(light.base)
    direction, color, ambient = main_light(coeffs)
    lighting = Lighting(
        light,
        coeffs.float(),
        ambient.float(),
        direction.float(),
        (color / math.pi).float(),
    )
    for stale in [k for k, e in _CACHE.items() if e[0]() is None]:
        del _CACHE[stale]
    _CACHE[id(light)] = (weakref.ref(light), key, lighting)
    return lighting


def with_sun(light: EnvironmentLight, direction, irradiance: float, radius_deg: float = 3.0) -> EnvironmentLight:
    """A copy of ``light`` with a sun added: a disc of ``radius_deg`` (its rim fading linearly
    over the outer half of the radius, so that coarse cube maps still see it) towards unit
    ``direction [3]``, white, its radiance scaled so that the irradiance it adds facing it
    (the sum over texels of radiance x solid angle x cosine) is ``irradiance``.

    Outdoor probes such as ``mud_road_puresky`` are mostly sky: their extracted main light is
    weak next to the ambient. A clear-sky sun gives 5 to 10 times the sky's irradiance; this
    makes that scene from any probe, where banded (toon) light and highlights matter."""
    base = light.base.detach()
    res = base.shape[1]
    dirs = cube_directions(res, base.device, torch.float64)
    area = cube_texel_solid_angles(res, base.device, torch.float64)
    sun = torch.as_tensor(direction, dtype=torch.float64, device=base.device)
    sun = sun / sun.norm()
    cosine = (dirs * sun).sum(-1)
    angle = torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))
    weight = ((radius_deg - angle) / (0.5 * radius_deg)).clamp(0.0, 1.0)
    received = float((weight * area * cosine.clamp_min(0.0)).sum())
    if received <= 0.0:
        raise ValueError(f"with_sun: a {radius_deg} degree sun covers no texel of a {res}-texel cube map")
    added = (weight * (irradiance / received))[..., None].expand(*weight.shape, 3)
    return EnvironmentLight((base.to(torch.float64) + added).to(base.dtype)).to(base.device).requires_grad_(False)
