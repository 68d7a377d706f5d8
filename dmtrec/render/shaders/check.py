"""Check a shading model's derivatives against float64 finite differences on random G-buffers.

For every declared parameter, the derivative of ``sum(w * shade(g, p))`` (random weights ``w``)
along random directions ``v`` is computed twice: by backpropagation (autograd, through any
custom ``torch.autograd.Function`` the model uses) and by central differences
``(f(p + h v) - f(p - h v)) / 2h`` in float64. The relative error
``|a - b| / max(|a|, |b|)`` is reported, worst over directions and G-buffers, per parameter.

Custom Functions whose backward is a *surrogate* (the toon ramp's step) run under
:class:`~.base.surrogate_forward`: their forward then computes the smooth function whose
derivative the backward claims to be, so the check compares the surrogate with finite
differences of what it is defined as (the smoothed ramp), not of the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
from torch import Tensor

from .base import GBuffer, Lighting, ShadingModel, shade_checked, surrogate_forward
from .sh import main_light

TOLERANCE = 1e-5


class DerivativeError(AssertionError):
    """A model's backward disagrees with finite differences."""


class _Float64Textures:
    """A rasterizer whose texture lookups run in the query's dtype (the probe's tables are float32)."""

    def __init__(self, rasterizer):
        self.inner = rasterizer

    def texture(self, tex, uv, *args, mip=None, **kwargs):
        mip = None if mip is None else [level.to(uv.dtype) for level in mip]
        return self.inner.texture(tex.to(uv.dtype), uv, *args, mip=mip, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def random_gbuffer(n: int = 64, seed: int = 0, dtype=torch.float64, env: bool = False) -> GBuffer:
    """``n`` random fragments ``[1, n, 1, C]``: normals facing random viewers, a random tangent
    frame, camera rotation, UVs and vertex colours, and random light (SH with a main light
    derived as from a probe; with ``env`` a random environment probe for split-sum models)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    pos = randn(1, n, 1, 3) * 0.5
    view_pos = pos + _unit(randn(1, n, 1, 3)) * 3.0
    view_dir = _unit(view_pos - pos)
    normal = _unit(randn(1, n, 1, 3))
    normal = torch.where((normal * view_dir).sum(-1, keepdim=True) < 0, -normal, normal)
    tangent = _unit(torch.linalg.cross(normal, _unit(randn(1, n, 1, 3)), dim=-1))
    rotation, _ = torch.linalg.qr(randn(3, 3))
    coeffs = randn(9, 3) * 0.3
    coeffs[0] += 2.0
    direction, color, ambient = main_light(coeffs)
    lighting = Lighting(None, coeffs, ambient, direction, color / math.pi + 0.5)
    rasterizer = None
    if env:
        from ..light import EnvironmentLight
        from ..raster import get_rasterizer

        rasterizer = _Float64Textures(get_rasterizer("torch"))
        probe = EnvironmentLight.random(32, generator=torch.Generator().manual_seed(seed))
        probe.requires_grad_(False)
        probe.build_mips(rasterizer.inner)
        lighting.env = probe
    return GBuffer(
        pos=pos,
        normal=normal,
        geometric_normal=normal,
        view_pos=view_pos,
        view_dir=view_dir,
        world_to_view=rotation.T.expand(1, n, 1, 3, 3),
        uv=torch.rand(1, n, 1, 2, generator=g, dtype=dtype),
        tangent=tangent,
        bitangent=torch.linalg.cross(normal, tangent, dim=-1),
        vertex_color=torch.rand(1, n, 1, 3, generator=g, dtype=dtype) * 0.8 + 0.2,
        light=lighting,
        rasterizer=rasterizer,
    )


def random_values(model: ShadingModel, gbuffer: GBuffer, seed: int = 0) -> Dict[str, Tensor]:
    """Values of every declared parameter, uniform inside the middle 80 % of its range:
    textures ``[1, n, 1, C]`` at the fragments, constants ``[C]``, tables ``[1, R, R, C]``."""
    g = torch.Generator().manual_seed(seed + 1000)
    dtype, lead = gbuffer.pos.dtype, gbuffer.pos.shape[:-1]
    out = {}
    for param in model.params:
        lower = torch.tensor(param.lower, dtype=dtype)
        upper = torch.tensor(param.upper, dtype=dtype)
        shape = {
            "texture": (*lead, param.channels),
            "constant": (param.channels,),
            "lut": (1, min(param.resolution, 16), min(param.resolution, 16), param.channels),
        }[param.kind]
        unit = torch.rand(*shape, generator=g, dtype=dtype) * 0.8 + 0.1
        out[param.name] = lower + (upper - lower) * unit
    return out


@dataclass
class CheckReport:
    """Worst relative error per parameter, the tolerance, and the model's name."""

    model: str
    errors: Dict[str, float] = field(default_factory=dict)
    tolerance: float = TOLERANCE

    @property
    def failed(self) -> Dict[str, float]:
        return {name: err for name, err in self.errors.items() if not err <= self.tolerance}

    @property
    def ok(self) -> bool:
        return not self.failed

    def table(self) -> str:
        lines = [f"{self.model}: worst relative error of the backward vs float64 finite differences"]
        for name, err in self.errors.items():
            lines.append(f"  {name:<12} {err:.2e}  {'ok' if err <= self.tolerance else 'WRONG'}")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if not self.ok:
            wrong = ", ".join(f"{k} ({v:.2e})" for k, v in self.failed.items())
            raise DerivativeError(
                f"{self.model}: derivative disagrees with finite differences for {wrong} "
                f"(tolerance {self.tolerance:.0e})\n{self.table()}"
            )


def check_model(
    model: ShadingModel,
    fragments: int = 64,
    gbuffers: int = 3,
    directions: int = 4,
    step: float = 1e-6,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> CheckReport:
    """Compare ``model``'s backward with float64 central differences (see the module notes)."""
    report = CheckReport(model.describe(), {p.name: 0.0 for p in model.params}, tolerance)
    env = model.name == "pbr" or getattr(model, "needs_env", False)
    with surrogate_forward():
        for trial in range(gbuffers):
            gbuffer = random_gbuffer(fragments, seed + trial, env=env)
            values = {k: v.requires_grad_(True) for k, v in random_values(model, gbuffer, seed + trial).items()}
            weights = torch.randn(
                gbuffer.pos.shape, generator=torch.Generator().manual_seed(seed + trial), dtype=torch.float64
            )

            def objective(vals: Dict[str, Tensor]) -> Tensor:
                return (shade_checked(model, gbuffer, vals, nan_check=True) * weights).sum()

            if trial % 2:  # models may use the vertex colour instead of a parameter (unlit)
                gbuffer.vertex_color = None
            value = objective(values)
            if value.requires_grad:
                grads = torch.autograd.grad(value, list(values.values()), allow_unused=True)
            else:
                grads = [None] * len(values)
            generator = torch.Generator().manual_seed(seed + 7 * trial + 1)
            with torch.no_grad():
                for (name, value), grad in zip(values.items(), grads):
                    grad = torch.zeros_like(value) if grad is None else grad
                    for _ in range(directions):
                        v = torch.randn(value.shape, generator=generator, dtype=value.dtype)
                        analytic = float((grad * v).sum())
                        plus = float(objective({**values, name: value + step * v}))
                        minus = float(objective({**values, name: value - step * v}))
                        numeric = (plus - minus) / (2.0 * step)
                        scale = max(abs(analytic), abs(numeric))
                        err = 0.0 if scale < 1e-9 else abs(analytic - numeric) / scale
                        report.errors[name] = max(report.errors[name], err)
    return report


def validate(model: ShadingModel, seed: int = 0, fragments: int = 16) -> None:
    """Shade a random float32 G-buffer at the declared values: a one-line ValueError naming the
    model's file when the output is not ``[..., 3]`` or holds NaNs (see :func:`~.base.shade_checked`)."""
    gbuffer = random_gbuffer(fragments, seed, dtype=torch.float32, env=model.name == "pbr")
    values = random_values(model, gbuffer, seed)
    try:
        shade_checked(model, gbuffer, values, nan_check=True)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(
            f"{model.describe()}: {type(model).__name__}.shade failed on a random G-buffer "
            f"({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from None


def check_all(names: Optional[list] = None, **kwargs) -> Dict[str, CheckReport]:
    """:func:`check_model` of the named built-ins (all by default)."""
    from .registry import BUILTINS

    return {name: check_model(BUILTINS[name](), **kwargs) for name in (names or list(BUILTINS))}
