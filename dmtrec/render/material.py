"""Materials: what a surface point's kd, ks (occlusion, roughness, metallic) and normal perturbation are.

Two parameterisations share one interface, :class:`Material`:

* :class:`VolumetricMaterial`: a hash-grid encoding plus a small MLP over world positions in an
  axis-aligned box (nvdiffrec's pass-1 material, needs no UVs).
* :class:`TexturedMaterial`: learnable 2D textures (:class:`Texture2D`) sampled at UVs with mip
  mapping (the pass-2 material, and what mesh files store).

Value ranges follow nvdiffrec: ``kd`` in ``[kd_min, kd_max]``, ``ks`` in ``[ks_min, ks_max]``
(roughness >= 0.08 by default), tangent-space normals in ``[-1, 1] x [-1, 1] x [0, 1]``.

Textures are stored like image files (row 0 is the top, ``v = 1``) while meshes carry OBJ-style
UVs (``v`` up); :meth:`Texture2D.sample` converts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from .hashgrid import HashGridEncoding

KD_RANGE = ((0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0))
KS_RANGE = ((0.0, 0.08, 0.0), (1.0, 1.0, 1.0))
NORMAL_RANGE = ((-1.0, -1.0, 0.0), (1.0, 1.0, 1.0))

Range = Sequence[Sequence[float]]


@dataclass
class MaterialSample:
    """Material values at a batch of surface points (leading dimensions ``[...]`` as the query).

    Attributes:
        kd: ``[..., 3]`` base colour (linear).
        ks: ``[..., 3]`` occlusion, roughness, metallic.
        alpha: ``[..., 1]`` coverage from kd's fourth channel, or None (opaque).
        perturbation: ``[..., 3]`` tangent-space normal, or None (use the interpolated normal).
        kd_grad: ``[..., 1]`` mean absolute kd change under a small random jitter of the lookup
            (nvdiffrec's smoothness term source), or None when not asked for.
    """

    kd: Tensor
    ks: Tensor
    alpha: Optional[Tensor] = None
    perturbation: Optional[Tensor] = None
    kd_grad: Optional[Tensor] = None


class Material(torch.nn.Module):
    """Interface: evaluate a material at surface points.

    ``uses_uv`` says whether :meth:`sample` needs texture coordinates; ``perturbs_normals``
    whether it returns a tangent-space normal (then the renderer needs tangents).
    """

    uses_uv: bool = False
    perturbs_normals: bool = False

    def sample(
        self,
        pos: Tensor,
        uv: Optional[Tensor] = None,
        uv_da: Optional[Tensor] = None,
        rasterizer=None,
        smoothness: bool = False,
    ) -> MaterialSample:
        """Material at ``[B, H, W, *]`` fragments.

        Args:
            pos: ``[B, H, W, 3]`` world positions.
            uv, uv_da: ``[B, H, W, 2]`` texture coordinates (OBJ convention) and ``[B, H, W, 4]``
                their pixel derivatives, for materials with ``uses_uv``.
            rasterizer: for texture lookups.
            smoothness: also compute ``kd_grad``.
        """
        raise NotImplementedError

    def clamp_(self) -> None:
        """Project parameters back into their valid ranges after an optimizer step (no-op by default)."""


def _range_tensor(values: Sequence[float], channels: int, name: str) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if t.numel() < channels:
        raise ValueError(f"{name}: needs {channels} values, got {t.numel()}")
    return t[:channels].clone()


class Texture2D(torch.nn.Module):
    """A learnable 2D texture ``[1, H, W, C]`` with per-channel value limits.

    Args:
        data: ``[H, W, C]`` or ``[1, H, W, C]`` initial texels (row 0 = top of the image).
        min, max: per-channel limits enforced by :meth:`clamp_` (None: unbounded).
    """

    def __init__(self, data: Tensor, min: Optional[Sequence[float]] = None, max: Optional[Sequence[float]] = None):
        super().__init__()
        data = torch.as_tensor(data, dtype=torch.float32)
        if data.dim() == 3:
            data = data[None]
        if data.dim() != 4 or data.shape[0] != 1 or data.shape[-1] < 1:
            raise ValueError(f"Texture2D: data must be [H, W, C] or [1, H, W, C], got {tuple(data.shape)}")
        self.data = torch.nn.Parameter(data.detach().clone())
        channels = data.shape[-1]
        self.register_buffer("min", None if min is None else _range_tensor(min, channels, "Texture2D min"))
        self.register_buffer("max", None if max is None else _range_tensor(max, channels, "Texture2D max"))
        self.max_mip_level = _mip_levels(data.shape[1], data.shape[2])
        self._mip_cache = None

    @property
    def resolution(self) -> tuple:
        return int(self.data.shape[1]), int(self.data.shape[2])

    @property
    def channels(self) -> int:
        return int(self.data.shape[-1])

    def sample(self, uv: Tensor, uv_da: Optional[Tensor], rasterizer) -> Tensor:
        """Filtered lookup ``[B, H, W, C]`` at OBJ-convention ``uv [B, H, W, 2]`` (wrapping).

        With ``uv_da [B, H, W, 4]`` the lookup is trilinear over a box-filtered mip pyramid
        (rebuilt from the texels on every call, so gradients reach them); without, bilinear.
        """
        flip = torch.tensor([1.0, -1.0], device=uv.device, dtype=uv.dtype)
        uv_tex = torch.stack([uv[..., 0], 1.0 - uv[..., 1]], -1).contiguous()
        if uv_da is None or self.max_mip_level == 0:
            return rasterizer.texture(self.data, uv_tex, filter_mode="linear", boundary_mode="wrap")
        uv_da_tex = (uv_da * flip.repeat_interleave(2)).contiguous()  # (du/dX, du/dY, -dv/dX, -dv/dY)
        return rasterizer.texture(
            self.data,
            uv_tex,
            uv_da_tex,
            mip=self._frozen_mips(rasterizer),
            filter_mode="linear-mipmap-linear",
            boundary_mode="wrap",
            max_mip_level=self.max_mip_level,
        )

    def _frozen_mips(self, rasterizer):
        """The mip pyramid below the texels, built once while they neither change nor need
        gradients (a reference scene, evaluation); None (the lookup builds it) otherwise."""
        if self.data.requires_grad and torch.is_grad_enabled():
            return None
        key = (self.data._version, self.data.data_ptr(), self.data.device, type(rasterizer))
        cached = getattr(self, "_mip_cache", None)  # absent on textures unpickled from older versions
        if cached is None or cached[0] != key:
            try:
                with torch.no_grad():
                    mips = rasterizer.construct_mip(self.data, self.max_mip_level)
            except NotImplementedError:
                return None
            self._mip_cache = (key, mips)
        return self._mip_cache[1]

    @torch.no_grad()
    def clamp_(self) -> None:
        if self.min is not None or self.max is not None:
            self.data.clamp_(self.min, self.max)


def _mip_levels(height: int, width: int) -> int:
    """How many halvings the texture allows (they stop at 1x1 or an odd extent)."""
    levels = 0
    while (height > 1 or width > 1) and not ((height > 1 and height % 2) or (width > 1 and width % 2)):
        height, width = max(height // 2, 1), max(width // 2, 1)
        levels += 1
    return levels


class TexturedMaterial(Material):
    """kd, ks and (optionally) tangent-space normal textures.

    Args:
        kd: RGB or RGBA base colour (alpha: coverage); ks: occlusion, roughness, metallic;
        normal: tangent-space normals (None: unperturbed).
        jitter_std: UV jitter of the smoothness lookup (nvdiffrec: 0.005).
    """

    uses_uv = True

    def __init__(self, kd: Texture2D, ks: Texture2D, normal: Optional[Texture2D] = None, jitter_std: float = 0.005):
        super().__init__()
        if kd.channels not in (3, 4) or ks.channels != 3 or (normal is not None and normal.channels != 3):
            raise ValueError(
                f"TexturedMaterial: kd needs 3 or 4 channels, ks and normal 3; got "
                f"{kd.channels}, {ks.channels}, {None if normal is None else normal.channels}"
            )
        self.kd, self.ks, self.normal = kd, ks, normal
        self.perturbs_normals = normal is not None
        self.jitter_std = jitter_std

    @classmethod
    def from_tensors(
        cls,
        kd: Tensor,
        ks: Tensor,
        normal: Optional[Tensor] = None,
        kd_range: Range = KD_RANGE,
        ks_range: Range = KS_RANGE,
        normal_range: Range = NORMAL_RANGE,
        **kwargs,
    ) -> "TexturedMaterial":
        """From plain ``[H, W, C]`` tensors (kd linear RGB(A), ks ORM, normal in [-1, 1]); the
        textures may have different resolutions. Values are clamped into the ranges."""
        textures = [Texture2D(kd, *kd_range), Texture2D(ks, *ks_range)]
        textures.append(None if normal is None else Texture2D(normal, *normal_range))
        material = cls(*textures, **kwargs)
        material.clamp_()
        return material

    def to_tensors(self) -> Dict[str, Tensor]:
        """Detached ``[H, W, C]`` textures ``{"kd", "ks", "normal"}`` (normal only if present) for file writers."""
        out = {"kd": self.kd.data[0].detach(), "ks": self.ks.data[0].detach()}
        if self.normal is not None:
            out["normal"] = self.normal.data[0].detach()
        return out

    def sample(
        self,
        pos: Tensor,
        uv: Optional[Tensor] = None,
        uv_da: Optional[Tensor] = None,
        rasterizer=None,
        smoothness: bool = False,
    ) -> MaterialSample:
        if uv is None:
            raise ValueError("TexturedMaterial.sample: the mesh has no texture coordinates (v_tex / t_tex_idx)")
        kd = self.kd.sample(uv, uv_da, rasterizer)
        ks = self.ks.sample(uv, uv_da, rasterizer)
        perturbation = None if self.normal is None else self.normal.sample(uv, uv_da, rasterizer)
        kd_grad = None
        if smoothness:
            jittered = self.kd.sample(uv + torch.randn_like(uv) * self.jitter_std, uv_da, rasterizer)
            kd_grad = (jittered[..., :3] - kd[..., :3]).abs().mean(-1, keepdim=True)
        alpha = kd[..., 3:4] if kd.shape[-1] == 4 else None
        return MaterialSample(kd=kd[..., :3], ks=ks, alpha=alpha, perturbation=perturbation, kd_grad=kd_grad)

    def clamp_(self) -> None:
        for texture in (self.kd, self.ks, self.normal):
            if texture is not None:
                texture.clamp_()


class VolumetricMaterial(Material):
    """kd, ks and normal perturbation from a hash-grid encoding and an MLP over world positions.

    Positions are mapped to the unit cube by ``aabb`` (and clamped to it). The MLP (ReLU, no
    biases, as nvdiffrec's) outputs ``9`` channels (``6`` without normal perturbation), squashed
    by a sigmoid into the value ranges.

    Args:
        aabb: ``[2, 3]`` (min corner, max corner) of the region the material covers.
        n_levels, features_per_level, log2_table_size, base_resolution, finest_resolution:
            the :class:`~dmtrec.render.hashgrid.HashGridEncoding` (nvdiffrec: 16, 2, 19, 16, 4096).
        mlp_width, mlp_hidden_layers: MLP size (nvdiffrec: 32, 2).
        kd_range, ks_range, normal_range: ``(min, max)`` per channel.
        perturb_normals: output a tangent-space normal.
        jitter_std: world-space jitter of the smoothness lookup (nvdiffrec: 0.01).
    """

    def __init__(
        self,
        aabb: Union[Tensor, Sequence[Sequence[float]]],
        n_levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        finest_resolution: int = 4096,
        mlp_width: int = 32,
        mlp_hidden_layers: int = 2,
        kd_range: Range = KD_RANGE,
        ks_range: Range = KS_RANGE,
        normal_range: Range = NORMAL_RANGE,
        perturb_normals: bool = True,
        jitter_std: float = 0.01,
    ):
        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"VolumetricMaterial: aabb must be [2, 3] with max > min per axis, got {aabb.tolist()}")
        self.register_buffer("aabb", aabb.clone())
        self.encoding = HashGridEncoding(
            n_levels, features_per_level, log2_table_size, base_resolution, finest_resolution
        )
        self.perturbs_normals = perturb_normals
        lo = [_range_tensor(kd_range[0], 3, "kd_range"), _range_tensor(ks_range[0], 3, "ks_range")]
        hi = [_range_tensor(kd_range[1], 3, "kd_range"), _range_tensor(ks_range[1], 3, "ks_range")]
        if perturb_normals:
            lo.append(_range_tensor(normal_range[0], 3, "normal_range"))
            hi.append(_range_tensor(normal_range[1], 3, "normal_range"))
        self.register_buffer("out_min", torch.cat(lo))
        self.register_buffer("out_max", torch.cat(hi))
        self.mlp = _mlp(self.encoding.output_dim, self.out_min.numel(), mlp_width, mlp_hidden_layers)
        self.jitter_std = jitter_std

    def evaluate(self, pos: Tensor) -> Tensor:
        """All channels ``[..., 9]`` (kd, ks, normal) or ``[..., 6]`` at world positions ``[..., 3]``."""
        unit = (pos.reshape(-1, 3) - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        out = torch.sigmoid(self.mlp(self.encoding(unit)))
        out = out * (self.out_max - self.out_min) + self.out_min
        return out.reshape(pos.shape[:-1] + (-1,))

    def sample(
        self,
        pos: Tensor,
        uv: Optional[Tensor] = None,
        uv_da: Optional[Tensor] = None,
        rasterizer=None,
        smoothness: bool = False,
    ) -> MaterialSample:
        if smoothness:
            # One pass over both point sets: the encoding's per-call overhead is paid once.
            both = self.evaluate(torch.cat([pos, pos + torch.randn_like(pos) * self.jitter_std], 0))
            out, jittered = both.split(pos.shape[0], 0)
            kd_grad = (jittered[..., :3] - out[..., :3]).abs().mean(-1, keepdim=True)
        else:
            out, kd_grad = self.evaluate(pos), None
        perturbation = out[..., 6:9] if self.perturbs_normals else None
        return MaterialSample(kd=out[..., :3], ks=out[..., 3:6], perturbation=perturbation, kd_grad=kd_grad)


def _mlp(inputs: int, outputs: int, width: int, hidden_layers: int) -> torch.nn.Sequential:
    layers: List[torch.nn.Module] = []
    size = inputs
    for _ in range(hidden_layers):
        layers += [torch.nn.Linear(size, width, bias=False), torch.nn.ReLU()]
        size = width
    layers.append(torch.nn.Linear(size, outputs, bias=False))
    net = torch.nn.Sequential(*layers)
    for layer in net:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    return net
