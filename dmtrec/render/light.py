"""A learnable HDR environment light with split-sum image-based lighting (nvdiffrec's).

The light is a cube map ``base [6, S, S, 3]`` of linear radiance. :meth:`EnvironmentLight.build_mips`
derives from it, differentiably:

* ``specular``: a mip chain ``S, S/2, ..., 16``; level ``i < L - 1`` is the radiance
  prefiltered by the GGX lobe (with ``n = v = r``) of roughness ``0.08 + 0.42 i / (L - 2)``,
  the last level that of roughness 1. Shading indexes it by roughness with trilinear filtering.
* ``diffuse``: the cosine-weighted average of the radiance over the hemisphere around each
  direction (irradiance / pi), at 16 x 16 per face.

Both are sums over source texels weighted by the lobe and the texel solid angles, normalized to
one per output texel, so a constant map stays constant at every level. The GGX sums are sparse:
each level is filtered on the box-filtered pyramid level whose texels are about as wide as the
lobe's GGX alpha (finer detail does not survive the filter; at least 16 x 16, at most the
level's own resolution), over the texels inside the cone holding 90 % of the lobe, and
upsampled bilinearly to the level's resolution. The top level (roughness 0.08, the sharpest
reflections) is not upsampled when that resolution is below its own (base maps above 128^2):
it is filtered at its own resolution by filtered importance sampling (:func:`_importance_filter`),
so that it keeps the lobe's width and the learned texels get gradients through bilinear lookups
instead of through the coarse level's box averages. The sparse operators depend only on
resolution and roughness and are built once per process. The diffuse sum is dense at 16 x 16.

Shading follows the split sum: ``diffuse(n) * kd (1 - m) + specular(r, roughness) * (F0 A + B)``
with ``(A, B)`` from :func:`dmtrec.render.dfg.dfg_lut`, all scaled by ``1 - occlusion``.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from dmtrec.core.types import PathLike
from dmtrec.io.image import read_hdr, write_hdr

from . import bsdf
from .cubemap import cube_directions, cube_texel_solid_angles, cubemap_to_latlong, latlong_to_cubemap
from .dfg import dfg_lut
from .raster import get_rasterizer

_LOBE_ENERGY = 0.9
"""Fraction of the GGX half-vector distribution whose light directions the specular filter gathers
(nvdiffrec's cone keeps about 0.75); the rest of the tail is dropped and the weights renormalized."""

_FIS_SAMPLES = 32
"""GGX samples per texel of the importance-sampled top level (error ~1.5 % of a dense GGX
convolution at 512^2 on a sky with a sun, against ~3.7 % for filtering at 128^2 and upsampling)."""

_TEXELS_PER_ALPHA = 1.0
"""Filtering resolution: the finest power of two whose texels are at least ``alpha / this`` wide."""


class EnvironmentLight(torch.nn.Module):
    """Split-sum environment light around a learnable cube map.

    Args:
        base: ``[6, S, S, 3]`` linear radiance; ``S`` a power of two >= 32.
    """

    MIN_RES = 16
    MIN_ROUGHNESS = bsdf.MIN_ROUGHNESS
    MAX_ROUGHNESS = 0.5

    def __init__(self, base: Tensor):
        super().__init__()
        base = torch.as_tensor(base)
        res = base.shape[1] if base.dim() == 4 else 0
        if base.dim() != 4 or base.shape[0] != 6 or base.shape[2] != res or base.shape[3] != 3:
            raise ValueError(f"EnvironmentLight: base must be a cube map [6, S, S, 3], got {tuple(base.shape)}")
        if res < 2 * self.MIN_RES or res & (res - 1):
            raise ValueError(
                f"EnvironmentLight: the cube map resolution must be a power of two >= {2 * self.MIN_RES}, got {res}"
            )
        self.base = torch.nn.Parameter(base.detach().to(torch.float32).clone())
        self.specular: Optional[List[Tensor]] = None
        self.diffuse: Optional[Tensor] = None
        self._mips_key = None
        self.rotation: Optional[Tensor] = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_hdr(
        cls,
        path: PathLike,
        base_res: int = 512,
        scale: float = 1.0,
        device: Union[str, torch.device, None] = None,
        **kwargs,
    ) -> "EnvironmentLight":
        """A light from an equirectangular (latlong) ``.hdr`` probe, resampled to ``base_res`` per face."""
        latlong = torch.from_numpy(read_hdr(path)).to(device)
        return cls(latlong_to_cubemap(latlong, base_res) * scale, **kwargs)

    @classmethod
    def constant(
        cls,
        radiance: Union[float, Sequence[float]] = 0.5,
        base_res: int = 64,
        device: Union[str, torch.device, None] = None,
        **kwargs,
    ) -> "EnvironmentLight":
        """Uniform radiance (a scalar or an RGB triple) from every direction."""
        value = torch.as_tensor(radiance, dtype=torch.float32, device=device).reshape(-1)
        if value.numel() not in (1, 3):
            raise ValueError(f"EnvironmentLight.constant: radiance must be a scalar or RGB, got {value.numel()} values")
        return cls(value.expand(3).expand(6, base_res, base_res, 3), **kwargs)

    @classmethod
    def random(
        cls,
        base_res: int = 64,
        scale: float = 0.5,
        bias: float = 0.25,
        generator: Optional[torch.Generator] = None,
        device: Union[str, torch.device, None] = None,
        **kwargs,
    ) -> "EnvironmentLight":
        """Texels uniform in ``[bias, bias + scale)`` (nvdiffrec's trainable initialisation)."""
        noise = torch.rand(
            6, base_res, base_res, 3, generator=generator, device=generator.device if generator else device
        )
        return cls((noise * scale + bias).to(device), **kwargs)

    # ------------------------------------------------------------------ split-sum mips

    @property
    def num_levels(self) -> int:
        """Number of specular levels: ``S, S/2, ..., 16``."""
        return int(math.log2(self.base.shape[1] // self.MIN_RES)) + 1

    def level_roughness(self, level: int) -> float:
        """The GGX roughness specular level ``level`` is prefiltered with."""
        last = self.num_levels - 1
        if level == last:
            return 1.0
        return self.MIN_ROUGHNESS + (self.MAX_ROUGHNESS - self.MIN_ROUGHNESS) * level / max(last - 1, 1)

    def mip_level(self, roughness: Tensor) -> Tensor:
        """Fractional specular level for ``roughness`` (the inverse of :meth:`level_roughness`)."""
        last = self.num_levels - 1
        low = (
            (roughness.clamp(self.MIN_ROUGHNESS, self.MAX_ROUGHNESS) - self.MIN_ROUGHNESS)
            / (self.MAX_ROUGHNESS - self.MIN_ROUGHNESS)
            * max(last - 1, 1)
        )
        high = (roughness.clamp(self.MAX_ROUGHNESS, 1.0) - self.MAX_ROUGHNESS) / (1.0 - self.MAX_ROUGHNESS) + (last - 1)
        return torch.where(roughness < self.MAX_ROUGHNESS, low, high)

    def build_mips(self, rasterizer=None) -> None:
        """Recompute ``self.specular`` (list of ``[6, S_i, S_i, 3]``) and ``self.diffuse``
        (``[6, 16, 16, 3]``) from ``base``; differentiable w.r.t. ``base``."""
        rasterizer = _resolve(rasterizer, self.base.device)
        pyramid = [self.base]
        while pyramid[-1].shape[1] > self.MIN_RES:
            pyramid.append(_downsample(pyramid[-1]))
        coarsest = pyramid[-1]
        self.diffuse = _diffuse_filter(self.MIN_RES, str(coarsest.device))(coarsest)
        self.specular = [
            _prefilter(pyramid, level, self.level_roughness(level), rasterizer) for level in range(len(pyramid))
        ]
        self._mips_key = self._current_key()

    def _current_key(self):
        return (self.base._version, self.base.data_ptr(), self.base.device)

    def ensure_mips(self, rasterizer=None) -> None:
        """Build the mips unless they are up to date.

        A learnable light (``base.requires_grad``) is rebuilt on every call: with grad enabled
        each forward pass needs its own graph, and edits through ``base.data`` would go unseen.
        A frozen light is rebuilt only after an in-place change of ``base`` (or a device move).
        """
        if self.base.requires_grad or self.specular is None or self._mips_key != self._current_key():
            self.build_mips(rasterizer)

    # ------------------------------------------------------------------ shading

    def xfm(self, rotation: Optional[Tensor]) -> None:
        """Look the light up in a rotated frame from now on: directions ``d`` become ``R d`` with
        ``rotation [B, 3, 3]`` (or ``[B, 4, 4]``, its upper-left block), e.g. the world-to-camera
        rotation of each view for nvdiffrec's ``camera_space_light`` (its ``light.xfm(mv)``).
        None looks up world directions again."""
        self.rotation = None if rotation is None else rotation[..., :3, :3]

    def _rotate(self, directions: Tensor) -> Tensor:
        if self.rotation is None:
            return directions
        rotation = self.rotation.to(directions)
        return torch.einsum("bij,b...j->b...i", rotation, directions)

    def shade(
        self, pos: Tensor, normal: Tensor, kd: Tensor, ks: Tensor, view_pos: Tensor, rasterizer, specular: bool = True
    ) -> Tensor:
        """Split-sum shading of surface points (call :meth:`ensure_mips` first).

        Args:
            pos, normal: ``[B, H, W, 3]`` world positions and unit shading normals.
            kd: ``[B, H, W, 3]`` base colour; ks: ``[B, H, W, 3]`` (occlusion, roughness, metallic).
            view_pos: camera centres, broadcastable to ``pos`` (e.g. ``[B, 1, 1, 3]``).
            specular: False shades diffuse only with ``kd`` as the albedo (nvdiffrec's "diffuse").
        Returns:
            ``[B, H, W, 3]`` outgoing radiance.
        """
        if self.specular is None:
            raise RuntimeError("EnvironmentLight.shade: call build_mips() or ensure_mips() first")
        irradiance = rasterizer.texture(
            self.diffuse[None], self._rotate(normal).contiguous(), filter_mode="linear", boundary_mode="cube"
        )
        if not specular:
            return irradiance * kd * (1.0 - ks[..., 0:1])
        diffuse_albedo, f0 = bsdf.metallic_workflow(kd, ks)
        wo = bsdf.safe_normalize(view_pos - pos)
        roughness = ks[..., 1:2]
        n_dot_v = bsdf.dot(wo, normal).clamp(1e-4, 1.0)
        fg = rasterizer.texture(
            dfg_lut(pos.device),
            torch.cat([n_dot_v, roughness], -1).contiguous(),
            filter_mode="linear",
            boundary_mode="clamp",
        )
        reflected = self._rotate(bsdf.safe_normalize(bsdf.reflect(wo, normal)))
        radiance = rasterizer.texture(
            self.specular[0][None],
            reflected.contiguous(),
            mip=[level[None] for level in self.specular[1:]],
            mip_level_bias=self.mip_level(roughness)[..., 0].contiguous(),
            filter_mode="linear-mipmap-linear",
            boundary_mode="cube",
        )
        color = irradiance * diffuse_albedo + radiance * (f0 * fg[..., 0:1] + fg[..., 1:2])
        return color * (1.0 - ks[..., 0:1])

    # ------------------------------------------------------------------ training helpers

    def regularizer(self) -> Tensor:
        """nvdiffrec's white-balance prior: mean absolute deviation of each texel from its grey."""
        grey = self.base.mean(-1, keepdim=True)
        return (self.base - grey).abs().mean()

    @torch.no_grad()
    def clamp_(self, min: Optional[float] = None, max: Optional[float] = None) -> None:
        """Clamp the texels in place (nvdiffrec keeps radiance >= 0 after each optimizer step)."""
        self.base.clamp_(min, max)

    # ------------------------------------------------------------------ export

    @torch.no_grad()
    def to_latlong(self, height: int = 512, width: int = 1024, rasterizer=None) -> Tensor:
        """The learned radiance as a latlong image ``[height, width, 3]``."""
        return cubemap_to_latlong(self.base, height, width, _resolve(rasterizer, self.base.device))

    def save_hdr(self, path: PathLike, height: int = 512, width: int = 1024, rasterizer=None) -> None:
        """Write :meth:`to_latlong` as a Radiance ``.hdr`` file (written to a temporary name, then renamed)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            write_hdr(tmp, self.to_latlong(height, width, rasterizer))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


# ---------------------------------------------------------------------- filtering


def _resolve(rasterizer, device):
    if rasterizer is not None:
        return rasterizer
    return get_rasterizer("auto", device)


def _downsample(cube: Tensor) -> Tensor:
    """2 x 2 box filter of a cube map ``[6, S, S, C]`` -> ``[6, S/2, S/2, C]``."""
    return F.avg_pool2d(cube.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)


class _CubeFilter:
    """A fixed linear filter between cube maps, ``[6 S^2, 6 S^2]``: dense, or sparse (CSR, with its
    transpose kept for the backward pass, which torch's sparse autograd does slowly on CPUs)."""

    def __init__(self, row: Tensor, col: Tensor, weight: Tensor, size: int, dense: bool):
        row_sum = torch.zeros(size, dtype=weight.dtype, device=weight.device).index_add_(0, row, weight)
        weight = (weight / row_sum[row]).to(torch.float32)
        index = torch.stack([row, col])
        if dense:
            self.matrix = torch.zeros(size, size, device=weight.device).index_put_((row, col), weight)
            self.matrix_t = None
        else:
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                self.matrix = _csr(index, weight, size)
                self.matrix_t = _csr(index.flip(0), weight, size)
        self.nnz = int(weight.numel())

    def __call__(self, cube: Tensor) -> Tensor:
        flat = cube.reshape(-1, cube.shape[-1])
        if self.matrix_t is None:
            # Channels-first, [C, 6 S^2] @ matrix^T: MKL's skinny products are 5x (forward) to 7x
            # (with the backward pass) faster this way round than matrix @ [6 S^2, C] on CPUs.
            return F.linear(flat.t().contiguous(), self.matrix).t().reshape(cube.shape)
        return _SparseProduct.apply(flat, self.matrix, self.matrix_t).reshape(cube.shape)


def _csr(index: Tensor, weight: Tensor, size: int) -> Tensor:
    coo = torch.sparse_coo_tensor(index, weight, (size, size), check_invariants=False)
    return coo.coalesce().to_sparse_csr()


class _SparseProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, matrix: Tensor, matrix_t: Tensor) -> Tensor:
        ctx.matrix_t = matrix_t
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.matrix_t @ grad, None, None


@functools.lru_cache(maxsize=8)
def _diffuse_filter(res: int, device: str) -> _CubeFilter:
    """Cosine lobe over the whole sphere (dense)."""
    d = cube_directions(res, device, torch.float64).reshape(-1, 3)
    area = cube_texel_solid_angles(res, device, torch.float64).reshape(-1)
    cos = d @ d.T
    row, col = (cos > 0).nonzero(as_tuple=True)
    return _CubeFilter(row, col, cos[row, col] * area[col], d.shape[0], dense=True)


def _cone_cosine(alpha_sq: float, energy: float) -> float:
    """Cosine of the angle around ``n = v`` holding the light directions whose half vectors carry
    ``energy`` of the GGX distribution ``D(h)(n.h)``: ``tan(theta_h) = alpha sqrt(E / (1 - E))``,
    ``theta_l = 2 theta_h``."""
    theta_h = math.atan(math.sqrt(alpha_sq) * math.sqrt(energy / (1.0 - energy)))
    return math.cos(min(2.0 * theta_h, math.pi / 2))


@functools.lru_cache(maxsize=16)
def _specular_filter(res: int, roughness: float, device: str) -> _CubeFilter:
    """``[6 S^2, 6 S^2]`` GGX prefilter of an ``S = res`` cube map: rows are output texels,
    weights ``D(n.h)(n.l) dOmega`` with ``n = v`` over the source texels inside the lobe's cone
    (:data:`_LOBE_ENERGY` of it; the whole upper hemisphere for wide lobes), normalized per row.

    Candidate pairs come from tiles of source texels culled against the cone, so building costs
    about (texels) x (texels per cone) instead of (texels)^2.
    """
    alpha_sq = float(bsdf.ggx_alpha_sq(torch.tensor(roughness, dtype=torch.float64)))
    cos_cut = _cone_cosine(alpha_sq, _LOBE_ENERGY)
    theta_cut = math.acos(cos_cut)
    dirs = cube_directions(res, device)
    area = cube_texel_solid_angles(res, device)
    # Culling costs (texels) x (tiles), the survivors about (texels) x tile^2: balance the two.
    tile = min(res, 8 if res <= 64 else 16)
    members = torch.arange(6 * res * res, device=device).reshape(6, res // tile, tile, res // tile, tile)
    members = members.permute(0, 1, 3, 2, 4).reshape(-1, tile * tile)  # [tiles, tile^2] texel ids
    flat_dirs = dirs.reshape(-1, 3)
    centres = bsdf.safe_normalize(flat_dirs[members].mean(1))
    # Angular radius of a tile: its farthest texel centre plus a texel's half diagonal (generous).
    spread = torch.acos((flat_dirs[members] * centres[:, None]).sum(-1).clamp(-1, 1)).amax(1) + 2.0 / res
    cos_reach = torch.cos((theta_cut + spread).clamp(max=math.pi))  # [tiles]
    rows, cols, weights = [], [], []
    chunk = max(1, (1 << 22) // members.shape[0])
    for start in range(0, flat_dirs.shape[0], chunk):
        near = (flat_dirs[start : start + chunk] @ centres.T) >= cos_reach  # [C, tiles]
        pair_row, pair_tile = near.nonzero(as_tuple=True)
        row = (pair_row + start)[:, None].expand(-1, members.shape[1]).reshape(-1)
        col = members[pair_tile].reshape(-1)
        cos_l = (flat_dirs[row] * flat_dirs[col]).sum(-1)
        keep = cos_l >= cos_cut
        row, col, cos_l = row[keep], col[keep], cos_l[keep]
        cos_h = torch.sqrt((1.0 + cos_l) / 2.0)  # n.h for h = normalize(n + l), n = v
        rows.append(row)
        cols.append(col)
        weights.append(bsdf.ndf_ggx(torch.tensor(alpha_sq, device=device), cos_h) * cos_l * area.reshape(-1)[col])
    # 16 x 16 maps are small enough to filter densely (faster than sparse there).
    return _CubeFilter(
        torch.cat(rows), torch.cat(cols), torch.cat(weights), flat_dirs.shape[0], dense=res <= EnvironmentLight.MIN_RES
    )


def _work_resolution(level_res: int, roughness: float) -> int:
    """The resolution a level is filtered at: the lobe spans about :data:`_TEXELS_PER_ALPHA` texels
    per GGX alpha there (finer is wasted, the prefiltered map holds no finer detail), clamped to
    ``[16, level_res]``; the result is upsampled bilinearly to ``level_res``."""
    alpha = math.sqrt(float(bsdf.ggx_alpha_sq(torch.tensor(roughness, dtype=torch.float64))))
    wanted = (math.pi / 2.0) * _TEXELS_PER_ALPHA / alpha  # texel angle ~ (pi / 2) / res
    res = EnvironmentLight.MIN_RES
    while res * 2 <= min(wanted, level_res):
        res *= 2
    return min(res, level_res)


@functools.lru_cache(maxsize=16)
def _ggx_samples(roughness: float, count: int):
    """``count`` GGX light directions around ``n = v = +z`` from a Hammersley set: local
    directions ``[K, 3]`` (those below the horizon dropped), weights ``n.l`` ``[K]`` and the
    solid angle each sample stands for, ``1 / (count pdf(l))`` with ``pdf(l) = D(h) / 4``."""
    alpha_sq = float(bsdf.ggx_alpha_sq(torch.tensor(roughness, dtype=torch.float64)))
    index = torch.arange(count, dtype=torch.int64)
    radical = torch.zeros(count, dtype=torch.float64)
    for bit in range(32):  # van der Corput radical inverse in base 2
        radical += ((index >> bit) & 1).double() * 2.0 ** (-(bit + 1))
    u1, phi = (index.double() + 0.5) / count, 2.0 * math.pi * radical
    cos_h = torch.sqrt((1.0 - u1) / (1.0 + (alpha_sq - 1.0) * u1))
    sin_h = torch.sqrt(1.0 - cos_h * cos_h)
    half = torch.stack([sin_h * torch.cos(phi), sin_h * torch.sin(phi), cos_h], -1)
    light = 2.0 * cos_h[:, None] * half - torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    ndf = bsdf.ndf_ggx(torch.tensor(alpha_sq, dtype=torch.float64), cos_h)
    keep = light[:, 2] > 0
    return light[keep].float(), light[keep, 2].float(), (4.0 / (count * ndf[keep])).float()


def _importance_filter(
    pyramid: List[Tensor], directions: Tensor, roughness: float, rasterizer, samples: int = _FIS_SAMPLES
) -> Tensor:
    """GGX-prefiltered radiance of ``pyramid[0]`` (``n = v = r``) along ``directions [N, 3]``
    -> ``[N, C]``, by filtered importance sampling (Krivanek and Colbert 2008): ``samples`` GGX
    directions per output direction, each read trilinearly from the box pyramid at the level
    whose texels cover the sample's solid angle (texel solid angle at the direction:
    ``(2 / S)^2 max|d_i|^3``). Differentiable w.r.t. the pyramid."""
    local, weight, omega = (t.to(directions.device) for t in _ggx_samples(roughness, samples))
    res = pyramid[0].shape[1]
    mips = [level[None] for level in pyramid[1:]]
    out = []
    for d in directions.split(max(1, (1 << 21) // local.shape[0])):
        helper = torch.zeros_like(d)
        helper[:, 2] = 1.0
        helper[d[:, 2].abs() > 0.999] = torch.tensor([1.0, 0.0, 0.0], device=d.device)
        tangent = bsdf.safe_normalize(torch.cross(helper, d, dim=-1))
        bitangent = torch.cross(d, tangent, dim=-1)
        world = local[:, 0:1] * tangent[:, None] + local[:, 1:2] * bitangent[:, None] + local[:, 2:3] * d[:, None]
        texel = (2.0 / res) ** 2 * world.abs().amax(-1) ** 3
        lod = (0.5 * torch.log2(omega / texel)).clamp(0.0, len(pyramid) - 1)
        values = rasterizer.texture(
            pyramid[0][None],
            world.reshape(1, -1, 1, 3).contiguous(),
            mip=mips,
            mip_level_bias=lod.reshape(1, -1, 1).contiguous(),
            filter_mode="linear-mipmap-linear",
            boundary_mode="cube",
        ).reshape(d.shape[0], local.shape[0], -1)
        out.append((values * weight[:, None]).sum(1) / weight.sum())
    return torch.cat(out)


def _prefilter(pyramid: List[Tensor], level: int, roughness: float, rasterizer) -> Tensor:
    """Specular level ``level``: the GGX-filtered radiance at ``pyramid[level]``'s resolution."""
    level_res = pyramid[level].shape[1]
    work = _work_resolution(level_res, roughness)
    if roughness <= EnvironmentLight.MIN_ROUGHNESS and work < level_res:  # the top level
        directions = cube_directions(level_res, pyramid[0].device).reshape(-1, 3)
        return _importance_filter(pyramid, directions, roughness, rasterizer).reshape(pyramid[0].shape)
    source = pyramid[int(math.log2(pyramid[0].shape[1] // work))]
    filtered = _specular_filter(work, roughness, str(source.device))(source)
    if work == level_res:
        return filtered
    directions = cube_directions(level_res, source.device).reshape(1, 6 * level_res, level_res, 3)
    upsampled = rasterizer.texture(filtered[None], directions, filter_mode="linear", boundary_mode="cube")
    return upsampled.reshape(6, level_res, level_res, -1)
