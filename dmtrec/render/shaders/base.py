"""The shading-model interface: parameters a model declares, the G-buffer it shades, its checks.

A shading model (:class:`ShadingModel`) is the part of a renderer that turns a surface point's
geometry, light and material values into outgoing radiance. It declares its material values as
:class:`Param` entries (per-texel textures looked up at the mesh's UVs, global constants, and
look-up tables it samples itself, such as a matcap) and implements :meth:`ShadingModel.shade`
on a :class:`GBuffer` of fragments. :class:`ShaderMaterial` holds one learnable value per
declared parameter, so that ``render_mesh(mesh, ShaderMaterial(model), light, ..., shader=model)``
renders, and the bake fits, any model.

Every tensor of a G-buffer has the fragments' leading dimensions ``[...]`` (``render_mesh``
packs covered pixels as ``[1, N, 1, C]``); a model's output is ``[..., 3]`` linear radiance.
Models must be dtype-generic (build constants with ``new_tensor`` / ``*_like``) so that
:mod:`dmtrec.render.shaders.check` can compare their derivatives in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..material import Material, MaterialSample, Texture2D

KINDS = ("texture", "constant", "lut")
"""``texture``: per texel, looked up at the mesh's UVs (filtered like the PBR textures);
``constant``: one value for the whole material; ``lut``: a small 2D table the model samples at
coordinates of its own (e.g. a matcap indexed by the view-space normal)."""

INIT_FROM_SOURCE = ("kd", "radiance")
"""String initial values, filled by a bake from the PBR source: ``kd`` its base colour texture,
``radiance`` its point-sampled PBR radiance (the unlit bake's start)."""

Number = Union[float, Sequence[float]]


@dataclass(frozen=True)
class Param:
    """One declared material value of a shading model.

    Attributes:
        name: key of the value in the dict :meth:`ShadingModel.shade` receives.
        kind: one of :data:`KINDS`.
        channels: values per texel / constant.
        min, max: the range the fit keeps it in (a number or one per channel).
        init: initial value (a number or one per channel), or one of :data:`INIT_FROM_SOURCE`.
        resolution: texel size of a ``lut`` (square); textures take the bake's ``--texture-res``.
        color: a linear colour (written as an sRGB PNG); other textures are written as stored.
    """

    name: str
    kind: str
    channels: int
    min: Number = 0.0
    max: Number = 1.0
    init: Union[Number, str] = 0.5
    resolution: int = 64
    color: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.init, str) and self.init not in INIT_FROM_SOURCE:
            raise ValueError(f"Param {self.name!r}: init must be a number, a list or one of {INIT_FROM_SOURCE}")

    def per_channel(self, value: Number) -> Tuple[float, ...]:
        values = [float(value)] * self.channels if isinstance(value, (int, float)) else [float(v) for v in value]
        if len(values) != self.channels:
            raise ValueError(f"Param {self.name!r}: needs {self.channels} values, got {len(values)}")
        return tuple(values)

    @property
    def lower(self) -> Tuple[float, ...]:
        return self.per_channel(self.min)

    @property
    def upper(self) -> Tuple[float, ...]:
        return self.per_channel(self.max)


@dataclass
class Lighting:
    """The light a shading model sees.

    Attributes:
        env: the :class:`~dmtrec.render.light.EnvironmentLight` (split-sum lookups), or None.
        sh: ``[9, 3]`` order-2 SH coefficients of the probe's radiance (Sloan's ordering).
        ambient_sh: ``[9, 3]`` those with the main light's own projection removed.
        main_dir: ``[3]`` unit world direction towards the main light.
        main_color: ``[3]`` its colour, scaled so that ``albedo * main_color * max(0, n . l)`` is
            Lambertian radiance (the 1/pi folded in, as game engines do).
    See :mod:`dmtrec.render.shaders.sh` for the derivation.
    """

    env: Optional[object]
    sh: Tensor
    ambient_sh: Tensor
    main_dir: Tensor
    main_color: Tensor

    def ambient(self, normal: Tensor) -> Tensor:
        """``[..., 3]`` diffuse radiance per unit albedo from :attr:`ambient_sh` at unit ``normal``."""
        from .sh import sh_irradiance

        return sh_irradiance(self.ambient_sh.to(normal), normal) / torch.pi

    def to(self, dtype: torch.dtype) -> "Lighting":
        return Lighting(self.env, *(t.to(dtype) for t in (self.sh, self.ambient_sh, self.main_dir, self.main_color)))


@dataclass
class GBuffer:
    """Per-fragment inputs of a shading model, all ``[..., C]`` with the fragments' leading dims.

    Attributes:
        pos: world position ``[..., 3]``.
        normal: unit shading normal (interpolated, normal-mapped, facing the viewer) ``[..., 3]``.
        geometric_normal: the face normal ``[..., 3]``.
        view_pos: camera centre ``[..., 3]``; view_dir: unit vector towards it ``[..., 3]``.
        world_to_view: ``[..., 3, 3]`` rotation into the camera frame (x right, y up, z back).
        uv: texture coordinates ``[..., 2]`` (OBJ convention) or None.
        tangent, bitangent: the mesh's (MikkTSpace-style) tangent frame ``[..., 3]`` or None.
        vertex_color: interpolated per-vertex colour ``[..., 3]`` or None (white).
        light: :class:`Lighting` or None (for models that need none).
        rasterizer: for texture lookups (the environment's split-sum tables).
    """

    pos: Tensor
    normal: Tensor
    geometric_normal: Tensor
    view_pos: Tensor
    view_dir: Tensor
    world_to_view: Tensor
    uv: Optional[Tensor] = None
    tangent: Optional[Tensor] = None
    bitangent: Optional[Tensor] = None
    vertex_color: Optional[Tensor] = None
    light: Optional[Lighting] = None
    rasterizer: object = None


class ShadingModel:
    """Interface of a shading model: declare :attr:`params`, implement :meth:`shade`.

    Attributes:
        name: short name (the built-ins' registry key).
        params: the declared :class:`Param` values.
        glsl: file name of the GLSL twin in this package (None for user models without one).
        needs_light: whether :meth:`shade` reads ``gbuffer.light``.
        uses_tangents: whether it reads the tangent frame (render_mesh then derives one).
        source: where the model was defined (the user's file), for error messages.
    """

    name: str = "model"
    params: Tuple[Param, ...] = ()
    glsl: Optional[str] = None
    needs_light: bool = True
    uses_tangents: bool = False
    source: str = ""

    def shade(self, g: GBuffer, p: Dict[str, Tensor]) -> Tensor:
        """Outgoing linear radiance ``[..., 3]``.

        Args:
            g: the fragments' :class:`GBuffer`.
            p: the declared values by name: textures ``[..., C]`` at the fragments, constants
                ``[C]``, look-up tables ``[1, R, R, C]`` (see :func:`sample_lut`).
        """
        raise NotImplementedError

    def glsl_source(self) -> Optional[str]:
        """The GLSL twin's text, or None."""
        return None if self.glsl is None else read_glsl(self.glsl)

    def hlsl_source(self) -> Optional[str]:
        """The HLSL twin's text (the file beside the GLSL twin, ``<name>.hlsl``), or None."""
        if self.glsl is None:
            return None
        name = self.glsl.rsplit(".", 1)[0] + ".hlsl"
        return read_glsl(name) if _package_file(name).is_file() else None

    def describe(self) -> str:
        return f"{self.source or self.name}"


def read_glsl(filename: str) -> str:
    """A shader file of this package (``common.glsl``/``.hlsl``, the built-ins' twins)."""
    return _package_file(filename).read_text()


def _package_file(filename: str):
    from importlib.resources import files

    return files(__package__).joinpath(filename)


def shade_checked(model: ShadingModel, g: GBuffer, p: Dict[str, Tensor], nan_check: bool = False) -> Tensor:
    """``model.shade(g, p)``, with a one-line ValueError naming the model's file when the output
    is not ``[..., 3]`` like ``g.pos`` (or, with ``nan_check``, holds NaNs or infinities)."""
    out = model.shade(g, p)
    where = model.describe()
    if not isinstance(out, Tensor) or tuple(out.shape) != tuple(g.pos.shape):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{where}: {type(model).__name__}.shade returned {shape}, expected {tuple(g.pos.shape)}")
    if nan_check and not bool(torch.isfinite(out).all()):
        raise ValueError(f"{where}: {type(model).__name__}.shade returned NaN or infinite values")
    return out


def sample_lut(lut: Tensor, coords: Tensor) -> Tensor:
    """Bilinear lookup ``[..., C]`` of a ``[1, R, R, C]`` table at ``coords [..., 2]`` in [0, 1]
    (u right, v up, clamped at the border); pure torch, so it differentiates in any dtype."""
    lead = coords.shape[:-1]
    grid = (coords.reshape(1, -1, 1, 2) * 2.0 - 1.0) * coords.new_tensor([1.0, -1.0])
    out = torch.nn.functional.grid_sample(
        lut.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0, :, :, 0].T.reshape(*lead, lut.shape[-1])


# ---------------------------------------------------------------------------- material


@dataclass
class ShaderSample(MaterialSample):
    """A :class:`MaterialSample` with the shading model's values by name (``params``)."""

    params: Dict[str, Tensor] = field(default_factory=dict)


class ShaderMaterial(Material):
    """Learnable values for every parameter a shading model declares.

    Textures and look-up tables are :class:`Texture2D` (clamped to the declared range by
    :meth:`clamp_`), constants a ``[C]`` parameter each. ``normal`` (optional, e.g. the source
    asset's normal map) perturbs the shading normal and is not fitted.

    Args:
        model: the :class:`ShadingModel`.
        values: initial values by name: ``[H, W, C]`` for textures and tables, ``[C]`` for
            constants; missing ones take the declared numeric ``init`` (textures at
            ``texture_res``).
    """

    def __init__(
        self,
        model: ShadingModel,
        values: Optional[Dict[str, Tensor]] = None,
        texture_res: int = 64,
        normal: Optional[Texture2D] = None,
        device=None,
    ):
        super().__init__()
        values = dict(values or {})
        self.model = model
        self.textures = torch.nn.ModuleDict()
        self.constants = torch.nn.ParameterDict()
        for param in model.params:
            value = values.pop(param.name, None)
            if value is None:
                if isinstance(param.init, str):
                    raise ValueError(
                        f"{model.describe()}: {param.name!r} starts from the source ({param.init}); pass it"
                    )
                init = torch.tensor(param.per_channel(param.init), device=device)
                size = texture_res if param.kind == "texture" else param.resolution
                value = init if param.kind == "constant" else init.expand(size, size, -1)
            value = torch.as_tensor(value, dtype=torch.float32, device=device)
            if param.kind == "constant":
                self.constants[param.name] = torch.nn.Parameter(value.reshape(param.channels).clone())
            else:
                if value.dim() != 3 or value.shape[-1] != param.channels:
                    raise ValueError(f"{param.name}: expected [H, W, {param.channels}], got {tuple(value.shape)}")
                self.textures[param.name] = Texture2D(value, param.lower, param.upper)
        if values:
            raise ValueError(f"{model.describe()}: no parameters named {sorted(values)}")
        self.normal = normal
        self.perturbs_normals = normal is not None
        self.uses_uv = normal is not None or any(p.kind == "texture" for p in model.params)
        self.clamp_()

    def sample(self, pos, uv=None, uv_da=None, rasterizer=None, smoothness=False) -> ShaderSample:
        params: Dict[str, Tensor] = {}
        for param in self.model.params:
            if param.kind == "texture":
                params[param.name] = self.textures[param.name].sample(uv, uv_da, rasterizer)
            elif param.kind == "lut":
                params[param.name] = self.textures[param.name].data
            else:
                params[param.name] = self.constants[param.name]
        first = next((params[p.name] for p in self.model.params if p.kind == "texture"), None)
        if first is None:
            kd = torch.zeros_like(pos)
        else:  # the "kd" buffer shows the first texture: its colour, or the mean of fewer channels
            kd = first[..., :3] if first.shape[-1] >= 3 else first.mean(-1, keepdim=True).expand_as(pos)
        perturbation = None if self.normal is None else self.normal.sample(uv, uv_da, rasterizer)
        kd_grad = torch.zeros_like(pos[..., :1]) if smoothness else None
        return ShaderSample(kd=kd, ks=torch.zeros_like(pos), perturbation=perturbation, kd_grad=kd_grad, params=params)

    @torch.no_grad()
    def clamp_(self) -> None:
        for texture in self.textures.values():
            texture.clamp_()
        for param in self.model.params:
            if param.kind == "constant":
                lower, upper = param.lower, param.upper
                value = self.constants[param.name]
                value.copy_(torch.maximum(torch.minimum(value, value.new_tensor(upper)), value.new_tensor(lower)))

    def to_tensors(self) -> Dict[str, Tensor]:
        """Detached values by name: ``[H, W, C]`` textures and tables, ``[C]`` constants."""
        out = {name: texture.data[0].detach() for name, texture in self.textures.items()}
        out.update({name: value.detach() for name, value in self.constants.items()})
        return out


# ---------------------------------------------------------------------------- surrogates


class _SurrogateMode:
    smooth_forward = False


class surrogate_forward:
    """Context in which custom Functions with a surrogate backward (e.g. the toon ramp's step)
    compute, in their forward, the smooth function their backward differentiates, so that
    :mod:`dmtrec.render.shaders.check` can compare that backward with finite differences."""

    def __enter__(self):
        self._previous, _SurrogateMode.smooth_forward = _SurrogateMode.smooth_forward, True
        return self

    def __exit__(self, *exc):
        _SurrogateMode.smooth_forward = self._previous
        return False


def surrogate_forward_active() -> bool:
    return _SurrogateMode.smooth_forward
