"""Lambert with SH ambient and vertex colour (the mobile "vertex lit" shader).

::

    L = albedo * vc * (a * SH(n) + b * c * max(0, n.l))

``vc`` the interpolated vertex colour (white without one), ``SH(n)`` the probe's order-2
ambient (Ramamoorthi and Hanrahan 2001, irradiance / pi), ``l``, ``c`` its main light (Sloan
2008), ``a``, ``b`` fitted global ambient and direct scales (Lambert 1760's cosine law).
"""

from __future__ import annotations

from ..bsdf import dot
from .base import GBuffer, Param, ShadingModel


class LambertVC(ShadingModel):
    name = "lambert_vc"
    glsl = "lambert_vc.glsl"
    params = (
        Param("albedo", "texture", 3, 0.0, 1.0, "kd", color=True),
        Param("ambient", "constant", 1, 0.0, 4.0, 1.0),
        Param("direct", "constant", 1, 0.0, 4.0, 1.0),
    )

    def shade(self, g: GBuffer, p):
        light = g.light
        n_dot_l = dot(g.normal, light.main_dir.to(g.pos)).clamp_min(0.0)
        irradiance = p["ambient"] * light.ambient(g.normal) + p["direct"] * light.main_color.to(g.pos) * n_dot_l
        tint = 1.0 if g.vertex_color is None else g.vertex_color
        return p["albedo"] * tint * irradiance
