"""Blinn-Phong with SH ambient: Unity URP's "Simple Lit" shader.

URP ``SimpleLit`` (``Lighting.hlsl``: ``LightingLambert``, ``LightingSpecular``, ``SampleSH``)::

    L = albedo * (SH(n) + c * max(0, n.l)) + specular * c * max(0, n.h)^s,   s = 2^(10 g + 1)

with ``l``, ``c`` the probe's main light (direction, colour), ``h = normalize(l + v)``, ``SH(n)``
the probe's order-2 ambient (Sloan's irradiance, divided by pi), ``g`` the smoothness (URP's
gloss map alpha) and ``specular`` the specular colour map (Blinn 1977, "Models of light
reflection for computer synthesized pictures").
"""

from __future__ import annotations

import torch

from ..bsdf import dot, safe_normalize
from .base import GBuffer, Param, ShadingModel


class SimpleLit(ShadingModel):
    name = "simple_lit"
    glsl = "simple_lit.glsl"
    params = (
        Param("albedo", "texture", 3, 0.0, 1.0, "kd", color=True),
        Param("specular", "texture", 3, 0.0, 1.0, 0.04, color=True),
        Param("smoothness", "texture", 1, 0.0, 1.0, 0.5),
    )

    def shade(self, g: GBuffer, p):
        light = g.light
        l_dir = light.main_dir.to(g.pos)
        color = light.main_color.to(g.pos)
        n_dot_l = dot(g.normal, l_dir).clamp_min(0.0)
        half = safe_normalize(l_dir + g.view_dir)
        # n.h kept off 0: pow's derivative in the exponent is log(n.h), -inf at 0.
        n_dot_h = dot(g.normal, half).clamp(1e-6, 1.0)
        shininess = torch.exp2(10.0 * p["smoothness"] + 1.0)
        diffuse = p["albedo"] * (light.ambient(g.normal) + color * n_dot_l)
        return diffuse + p["specular"] * color * n_dot_h**shininess
