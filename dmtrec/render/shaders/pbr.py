"""The split-sum PBR model (what ``render_mesh(bsdf="pbr")`` computes), as a shading model.

``L = (E_d(n) kd (1 - m) + E_s(r, roughness) (F0 A + B)) (1 - occlusion)`` with the probe's
prefiltered diffuse and specular tables and the DFG table (Karis 2013, "Real Shading in Unreal
Engine 4"); see :meth:`dmtrec.render.light.EnvironmentLight.shade`.
"""

from __future__ import annotations

from .base import GBuffer, Param, ShadingModel


class PBR(ShadingModel):
    """Metallic-roughness split-sum shading under the environment probe."""

    name = "pbr"
    glsl = "pbr.glsl"
    params = (
        Param("kd", "texture", 3, 0.0, 1.0, "kd", color=True),
        Param("ks", "texture", 3, (0.0, 0.08, 0.0), (1.0, 1.0, 1.0), (0.0, 1.0, 0.0)),
    )

    def shade(self, g: GBuffer, p):
        return g.light.env.shade(g.pos, g.normal, p["kd"], p["ks"], g.view_pos, g.rasterizer, specular=True)
