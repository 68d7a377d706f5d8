"""Matcap ("material capture", sphere-map lookup by the view-space normal).

::

    L = albedo * M((n_view.xy + 1) / 2)

``n_view`` the shading normal in the camera frame, ``M`` the matcap: the look of a lit sphere
as seen by the camera (Sloan, Martin, Gooch and Gooch 2001, "The Lit Sphere: a model for
capturing NPR shading from art"; the sphere-map indexing of OpenGL's ``GL_SPHERE_MAP``). The
matcap carries all the light, so the model reads no probe; the fit learns it (from grey).
"""

from __future__ import annotations

import torch

from .base import GBuffer, Param, ShadingModel, sample_lut


class Matcap(ShadingModel):
    name = "matcap"
    glsl = "matcap.glsl"
    needs_light = False
    params = (
        Param("albedo", "texture", 3, 0.0, 1.0, "kd", color=True),
        Param("matcap", "lut", 3, 0.0, 4.0, 0.5, resolution=64),
    )

    def shade(self, g: GBuffer, p):
        n_view = torch.einsum("...ij,...j->...i", g.world_to_view.to(g.normal), g.normal)
        return p["albedo"] * sample_lut(p["matcap"].to(g.normal), n_view[..., :2] * 0.5 + 0.5)
