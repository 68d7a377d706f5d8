"""The unlit model (``render_mesh(bsdf="unlit")``): the colour is the texture, or the vertex colour.

``L = kd`` (or the interpolated vertex colour when the mesh has one), as glTF's
``KHR_materials_unlit``: light baked into the texture.
"""

from __future__ import annotations

from .base import GBuffer, Param, ShadingModel


class Unlit(ShadingModel):
    """Baked colour, no lighting."""

    name = "unlit"
    glsl = "unlit.glsl"
    needs_light = False
    params = (Param("kd", "texture", 3, 0.0, 1.0, "radiance", color=True),)

    def shade(self, g: GBuffer, p):
        return p["kd"] if g.vertex_color is None else g.vertex_color
