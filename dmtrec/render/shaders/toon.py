"""Toon (cel) shading: N.L through a hard ramp of a few bands, SH ambient, and a rim light.

::

    ramp(x) = b_0 + sum_{k>=1} (b_k - b_{k-1}) H(x - t_k)          (bands b, thresholds t)
    L = albedo * (a * SH(n) + c * ramp(n.l)) + rim * H((1 - n.v) - r)

``H`` the unit step, ``l``, ``c`` the probe's main light, ``SH(n)`` its order-2 ambient; the
cel ramp of Lake, Marshall, Harris and Blackstein 2000 ("Stylized rendering techniques for
scalable real-time 3D animation") with a Fresnel-like rim term as in Unity's toon shaders.

The step has zero derivative almost everywhere, so autograd gives the thresholds ``t`` and the
rim cut ``r`` no gradient at all. :class:`SurrogateStep` keeps the hard step in the forward pass
and uses in its backward the derivative of a smoothed step, the logistic
``s_w(x) = 1 / (1 + exp(-x / w))`` of width ``w``: ``ds_w/dx = s_w (1 - s_w) / w``. The surrogate is
exactly the derivative of the model with every ``H`` replaced by ``s_w``; under
:class:`~dmtrec.render.shaders.base.surrogate_forward` the forward computes ``s_w`` so that the
derivative check compares it against finite differences of that smoothed model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..bsdf import dot
from .base import GBuffer, Param, ShadingModel, surrogate_forward_active


class SurrogateStep(torch.autograd.Function):
    """``H(x)`` forward, ``d s_w / dx`` backward (see the module notes); ``width`` a float."""

    @staticmethod
    def forward(ctx, x: Tensor, width: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.width = width
        if surrogate_forward_active():
            return torch.sigmoid(x / width)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x / ctx.width)
        return grad * s * (1.0 - s) / ctx.width, None


def hard_step(x: Tensor, width: float) -> Tensor:
    """Plain autograd's step: zero derivative everywhere (``width`` unused)."""
    return (x > 0).to(x.dtype)


def surrogate_step(x: Tensor, width: float) -> Tensor:
    return SurrogateStep.apply(x, width)


class Toon(ShadingModel):
    """Cel shading with ``bands`` light levels.

    Args:
        bands: number of ramp levels (``bands - 1`` thresholds).
        width: the surrogate's smoothing width ``w`` (in units of n.l).
        surrogate: False uses plain autograd through the step (no threshold gradients).
        thresholds: the thresholds' start (``bands - 1`` values of n.l; default evenly from -0.2 to 0.5).
    """

    name = "toon"
    glsl = "toon.glsl"

    def __init__(self, bands: int = 3, width: float = 0.05, surrogate: bool = True, thresholds=None):
        if bands < 2:
            raise ValueError(f"Toon: needs at least 2 bands, got {bands}")
        self.bands, self.width, self.surrogate = bands, float(width), surrogate
        if thresholds is None:
            thresholds = [-0.2 + 0.7 * k / max(bands - 2, 1) for k in range(bands - 1)]
        levels = [0.15 + 0.85 * k / (bands - 1) for k in range(bands)]
        self.params = (
            Param("albedo", "texture", 3, 0.0, 1.0, "kd", color=True),
            Param("thresholds", "constant", bands - 1, -1.0, 1.0, thresholds),
            Param("levels", "constant", bands, 0.0, 2.0, levels),
            Param("ambient", "constant", 1, 0.0, 4.0, 1.0),
            Param("rim", "constant", 3, 0.0, 1.0, 0.05, color=True),
            Param("rim_cut", "constant", 1, 0.0, 1.0, 0.6),
        )

    def step(self, x: Tensor) -> Tensor:
        return (surrogate_step if self.surrogate else hard_step)(x, self.width)

    def ramp(self, x: Tensor, thresholds: Tensor, levels: Tensor) -> Tensor:
        """``[..., 1]`` light level of ``n.l`` values ``x [..., 1]``."""
        out = levels[0] + torch.zeros_like(x)
        for k in range(1, self.bands):
            out = out + (levels[k] - levels[k - 1]) * self.step(x - thresholds[k - 1])
        return out

    def shade(self, g: GBuffer, p):
        light = g.light
        n_dot_l = dot(g.normal, light.main_dir.to(g.pos))
        ramp = self.ramp(n_dot_l, p["thresholds"], p["levels"])
        lit = p["albedo"] * (p["ambient"] * light.ambient(g.normal) + light.main_color.to(g.pos) * ramp)
        rim = self.step((1.0 - dot(g.normal, g.view_dir)) - p["rim_cut"])
        return lit + p["rim"] * rim
