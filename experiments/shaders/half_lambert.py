"""A user shading model: Valve's half-Lambert (Half-Life 2, Mitchell, McTaggart and Green 2006).

    L = albedo * (ambient * SH(n) + c * ((n.l + 1) / 2)^k)

Try it:  dmtrec shader-check experiments/shaders/half_lambert.py:HalfLambert
         dmtrec bake --mesh data/meshes/spot/spot.obj --probe data/envmaps/mud_road_puresky_1k.hdr \
             --shader experiments/shaders/half_lambert.py:HalfLambert --out outputs/half_lambert
"""

import torch

from dmtrec.render.shaders import Param, ShadingModel


class HalfLambert(ShadingModel):
    name = "half_lambert"
    # What the bake fits: a colour texture (started from the asset's base colour), two constants.
    params = (
        Param("albedo", "texture", 3, min=0.0, max=1.0, init="kd", color=True),
        Param("ambient", "constant", 1, min=0.0, max=4.0, init=1.0),
        Param("exponent", "constant", 1, min=1.0, max=4.0, init=2.0),  # Valve's k = 2
    )

    def shade(self, g, p):
        # g: the G-buffer (fragments [..., C]); p: the values above at the fragments.
        light = g.light
        wrapped = (((g.normal * light.main_dir.to(g.pos)).sum(-1, keepdim=True) + 1.0) * 0.5).clamp_min(1e-6)
        direct = light.main_color.to(g.pos) * torch.pow(wrapped, p["exponent"])
        return p["albedo"] * (p["ambient"] * light.ambient(g.normal) + direct)  # [..., 3] linear radiance
