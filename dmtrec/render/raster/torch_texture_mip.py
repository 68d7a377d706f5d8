"""Mip pyramids and level-of-detail selection for the torch texture op (nvdiffrast semantics).

* Each level halves every extent greater than 1 with a 2x2 box filter (a 2x1 pair where the
  other extent is already 1), down to 1x1. An odd extent greater than 1 cannot be halved:
  nvdiffrast refuses such a texture unless ``max_mip_level`` stops the pyramid before it.
* The level of detail of a sample is ``log2`` of the major axis of its pixel footprint in
  base-level texels (from ``uv_da``), plus ``mip_level_bias``, clamped to
  ``[0, max level]``. "linear-mipmap-nearest" takes the floor of it (not the nearest level);
  "linear-mipmap-linear" blends the two levels around it.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .torch_common import CHUNK


def mip_level_shapes(height: int, width: int, max_mip_level: Optional[int] = None) -> List[Tuple[int, int]]:
    """``(height, width)`` of each level below a ``height x width`` base, as nvdiffrast builds them.

    Raises:
        ValueError: when a level would have to halve an odd extent greater than 1.
    """
    shapes: List[Tuple[int, int]] = []
    h, w = height, width
    while (h > 1 or w > 1) and (max_mip_level is None or len(shapes) < max_mip_level):
        if (h > 1 and h % 2) or (w > 1 and w % 2):
            raise ValueError(
                f"construct_mip: cannot build mip level {len(shapes) + 1} of a {height}x{width} (HxW) texture: level "
                f"{len(shapes)} is {h}x{w} and an odd extent greater than 1 cannot be halved. Resize the "
                f"texture to power-of-two extents or pass max_mip_level <= {len(shapes)}"
            )
        h, w = max(h // 2, 1), max(w // 2, 1)
        shapes.append((h, w))
    return shapes


def check_texture_shape(op: str, tex: Tensor, cube_mode: bool, name: str = "tex") -> None:
    """Raise ValueError unless ``tex`` is ``[B, H, W, C]`` (2D) or ``[B, 6, S, S, C]`` (cube)."""
    if not isinstance(tex, Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(tex).__name__}")
    if not tex.is_floating_point():
        raise ValueError(f"{op}: {name} must be a floating-point tensor, got {tex.dtype}")
    if cube_mode:
        if tex.dim() != 5 or tex.shape[1] != 6:
            raise ValueError(
                f"{op}: {name} must be a cube map [B, 6, S, S, C] in cube mode, got shape {list(tex.shape)}"
            )
        if tex.shape[2] != tex.shape[3]:
            raise ValueError(f"{op}: {name}'s cube map faces must be square, got {tex.shape[2]}x{tex.shape[3]}")
    elif tex.dim() != 4:
        hint = " (a cube map needs boundary_mode='cube')" if tex.dim() == 5 else ""
        raise ValueError(f"{op}: {name} must be [B, H, W, C], got shape {list(tex.shape)}{hint}")
    if tex.numel() == 0:
        raise ValueError(f"{op}: {name} must not be empty, got shape {list(tex.shape)}")


def check_max_mip_level(op: str, max_mip_level: Optional[int]) -> Optional[int]:
    if max_mip_level is None:
        return None
    if isinstance(max_mip_level, bool) or int(max_mip_level) != max_mip_level or max_mip_level < 0:
        raise ValueError(f"{op}: max_mip_level must be None or an integer >= 0, got {max_mip_level!r}")
    return int(max_mip_level)


def _box_downsample(t: Tensor) -> Tensor:
    """One level down: ``[N, h, w, C] -> [N, max(h/2, 1), max(w/2, 1), C]``."""
    h, w = t.shape[1], t.shape[2]
    if h > 1 and w > 1:
        return (t[:, 0::2, 0::2] + t[:, 0::2, 1::2] + t[:, 1::2, 0::2] + t[:, 1::2, 1::2]) * 0.25
    if w > 1:
        return (t[:, :, 0::2] + t[:, :, 1::2]) * 0.5
    return (t[:, 0::2] + t[:, 1::2]) * 0.5


def construct_mip(tex: Tensor, max_mip_level: Optional[int] = None, cube_mode: bool = False) -> List[Tensor]:
    """The mip levels below ``tex``, each a box-filtered halving of the one above.

    Args:
        tex: ``[B, H, W, C]`` texture, or ``[B, 6, S, S, C]`` cube map with ``cube_mode``.
        max_mip_level: build at most this many levels (None: down to 1x1).
        cube_mode: ``tex`` is a cube map (faces are filtered independently).

    Returns:
        Levels 1.. as ``[B, h_i, w_i, C]`` (or ``[B, 6, s_i, s_i, C]``), differentiable
        w.r.t. ``tex``; pass them as ``mip=`` to :func:`~.torch_texture.texture`. Build them
        under ``torch.no_grad()`` for a texture that stays constant.

    Raises:
        ValueError: bad shape, or an odd extent greater than 1 within the levels asked for.
    """
    check_texture_shape("construct_mip", tex, cube_mode)
    max_mip_level = check_max_mip_level("construct_mip", max_mip_level)
    height, width = tex.shape[-3], tex.shape[-2]
    shapes = mip_level_shapes(height, width, max_mip_level)
    level = tex.reshape(-1, height, width, tex.shape[-1])  # cube faces become independent images
    levels = []
    for h, w in shapes:
        level = _box_downsample(level)
        levels.append(level.reshape(tex.shape[:-3] + (h, w, tex.shape[-1])))
    return levels


def mip_columns(tex: Tensor, shapes: List[Tuple[int, int]]) -> Tensor:
    """``tex [B, H, W, C]`` and its levels ``shapes`` (:func:`mip_level_shapes`) as one channels-first
    table ``[C, T]``: column ``t`` is row ``t`` of the levels stacked as ``torch_texture._stack_levels``
    stacks them (level, batch entry, y, x), the layout :func:`~.torch_texture_taps.sample_2d` gathers
    from. Values are :func:`construct_mip`'s, bit for bit (the same box-filter arithmetic on each
    texel); so is the gradient to ``tex`` (each texel's is its own lookups' plus its box weight
    times its parent's: the same two terms). One autograd node instead of a dozen ops per level:
    on a CPU the pyramid's strided slices and their backward (a full-size zero tensor each) cost
    more than the filter, and the table is built channels-first instead of transposed."""
    return _MipColumns.apply(tex, tex, tuple(shapes))


class _MipColumns(torch.autograd.Function):
    """:func:`mip_columns`. ``tex`` comes in twice: the gradient of the base level's lookups and that
    of the levels below reach it as two terms, in the order the autograd formulation delivers them
    (the stacked table's, then the pyramid's), so that a texture read by several lookups (kd and
    its jittered twin) sums its gradients in the same order, bit for bit."""

    @staticmethod
    def forward(ctx, tex: Tensor, _same: Tensor, shapes: Tuple[Tuple[int, int], ...]) -> Tensor:
        batch, height, width, channels = tex.shape
        level = tex.permute(3, 0, 1, 2).reshape(channels * batch, height, width)  # [C B, H, W]
        flat = [level.reshape(channels, -1)]
        for _ in shapes:
            level = _box_downsample(level)  # dims 1, 2 are y, x here too: the same arithmetic
            flat.append(level.reshape(channels, -1))
        ctx.dims = (batch, height, width, channels, shapes)
        return torch.cat(flat, 1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        batch, height, width, channels, shapes = ctx.dims
        extents = [(height, width)] + list(shapes)
        sizes = [batch * h * w for h, w in extents]
        parts = grad.split(sizes, 1)
        below = None  # the full gradient of the level under the current one
        for (h, w), part in zip(extents[:0:-1], parts[:0:-1]):
            level = part.reshape(channels * batch, h, w)
            below = level if below is None else _box_upsample_add(level, below)
        # Both terms stay channels-first views of tex's shape: the engine sums them (and a second
        # lookup's) elementwise, which gives the same values in any layout, and the texture's
        # gradient is transposed to its layout once, when it is accumulated, instead of twice
        # per lookup (a transposing copy costs several times a plain one).
        top = parts[0].reshape(channels, batch, height, width).permute(1, 2, 3, 0)
        pyramid = None
        if below is not None:
            pyramid = _box_upsample(below, height, width).reshape(channels, batch, height, width)
            pyramid = pyramid.permute(1, 2, 3, 0)
        return top, pyramid, None


def _box_upsample(below: Tensor, h: int, w: int) -> Tensor:
    """The backward of :func:`_box_downsample` to an ``[N, h, w]`` level: each texel gets its box
    weight times the gradient ``below`` of its parent (the products autograd forms), written as
    one broadcast copy (a level's four strided writes were a dozen ops, most of a small level's cost)."""
    share = below * (0.25 if h > 1 and w > 1 else 0.5)
    n, rows, cols = below.shape
    return share.view(n, rows, 1, cols, 1).expand(n, rows, h // rows, cols, w // cols).reshape(n, h, w)


def _box_upsample_add(level: Tensor, below: Tensor) -> Tensor:
    """``level [N, h, w]`` (a level's gradient from its own lookups) plus its pyramid term."""
    return level + _box_upsample(below, level.shape[1], level.shape[2])


def _terms(dsdx: Tensor, dsdy: Tensor, dtdx: Tensor, dtdy: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Half-sum and squared half-difference of the footprint's squared axis lengths, and the
    squared lengths ``a, b`` and cross term ``c`` they come from."""
    a = dsdx * dsdx + dtdx * dtdx
    b = dsdy * dsdy + dtdy * dtdy
    c = dsdx * dsdy + dtdx * dtdy
    return 0.5 * (a + b), 0.25 * (a - b) * (a - b) + c * c, a, b, c


def footprint_lod(footprint: Tensor, texels: Tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """Level of detail ``log2(major axis length)`` of pixel footprints, before bias and clamping.

    Args:
        footprint: ``[N, 4]`` = (ds/dX, ds/dY, dt/dX, dt/dY), in base-level texels per pixel
            once multiplied by ``texels``.
        texels: (width, height) factors of the (s, t) columns, e.g. the base level's extent
            for a footprint in uv units.

    Returns:
        ``[N]`` levels (``-inf`` for a zero footprint). The gradient is the analytic one,
        except where it is not finite: at isotropic footprints (the major-axis length is not
        differentiable there) and on overflow it is zero, as nvdiffrast makes it.
    """
    return _FootprintLod.apply(footprint, float(texels[0]), float(texels[1]))


def _scaled_columns(footprint: Tensor, s: int, e: int, scale_s: float, scale_t: float) -> List[Tensor]:
    rows = footprint[s:e]
    return [rows[:, 0] * scale_s, rows[:, 1] * scale_s, rows[:, 2] * scale_t, rows[:, 3] * scale_t]


def _sqrt(t: Tensor) -> Tensor:
    """``t.sqrt()`` of ``t >= 0``, avoiding sqrt's slow path for zeros (isotropic and empty footprints)."""
    positive = t > 0
    return torch.where(positive, torch.where(positive, t, 1.0).sqrt(), t)


class _FootprintLod(torch.autograd.Function):
    """:func:`footprint_lod` in cache-sized chunks of contiguous columns, with its analytic backward."""

    @staticmethod
    def forward(ctx, footprint: Tensor, scale_s: float, scale_t: float) -> Tensor:
        n = footprint.shape[0]
        lod = footprint.new_empty(n)
        for s in range(0, n, CHUNK):
            e = min(s + CHUNK, n)
            half_sum, half_diff_sq = _terms(*_scaled_columns(footprint, s, e, scale_s, scale_t))[:2]
            length_sq = half_sum + _sqrt(half_diff_sq)
            # log2 of 0 (empty pixels) takes a slow path: it is -inf.
            positive = length_sq > 0
            lod[s:e] = torch.where(positive, 0.5 * torch.log2(torch.where(positive, length_sq, 1.0)), -math.inf)
        ctx.save_for_backward(footprint)
        ctx.scales = (scale_s, scale_t)
        return lod

    @staticmethod
    def backward(ctx, grad: Tensor):
        (footprint,) = ctx.saved_tensors
        scale_s, scale_t = ctx.scales
        n = footprint.shape[0]
        out = torch.empty_like(footprint)
        for s in range(0, n, CHUNK):
            e = min(s + CHUNK, n)
            dsdx, dsdy, dtdx, dtdy = _scaled_columns(footprint, s, e, scale_s, scale_t)
            half_sum, half_diff_sq, a, b, c = _terms(dsdx, dsdy, dtdx, dtdy)
            root = _sqrt(half_diff_sq)
            length_sq = half_sum + root
            # Not differentiable where the axes are equal (root 0), nor finite on overflow: zero there.
            smooth = (half_diff_sq > 0) & torch.isfinite(length_sq)
            g = grad[s:e] * 0.5 / (length_sq * math.log(2.0))
            q = 0.25 * (a - b) / root
            ga, gb, gc = g * (0.5 + q), g * (0.5 - q), g * c / root
            # a = dsdx^2 + dtdx^2, b = dsdy^2 + dtdy^2, c = dsdx dsdy + dtdx dtdy.
            columns = (
                (2 * dsdx * ga + dsdy * gc) * scale_s,
                (2 * dsdy * gb + dsdx * gc) * scale_s,
                (2 * dtdx * ga + dtdy * gc) * scale_t,
                (2 * dtdy * gb + dtdx * gc) * scale_t,
            )
            for k, column in enumerate(columns):
                out[s:e, k] = torch.where(smooth, column, 0.0)
        return out, None, None


def select_mip_levels(
    lod: Optional[Tensor], bias: Optional[Tensor], max_level: int, blend: bool
) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Discrete levels and blend weight from a level of detail.

    Args:
        lod: ``[N]`` from :func:`footprint_lod`, or None (level 0 before bias).
        bias: ``[N]`` added to the level, or None (not both None).
        max_level: index of the smallest level available.
        blend: trilinear ("linear-mipmap-linear") rather than "linear-mipmap-nearest".

    Returns:
        ``level0 [N]`` long (the floor of the clamped level), ``level1 [N]`` long (the next
        level, at most ``max_level``) and, with ``blend``, ``frac [N]`` = the fractional part,
        carrying the gradient to ``lod`` and ``bias``. nvdiffrast propagates it only where the
        fraction is positive, so a level that is exactly an integer or clamped gets none.
    """
    level = bias if lod is None else (lod if bias is None else lod + bias)
    # A NaN level reads as level 0, as CUDA's fmaxf(NaN, 0) does in nvdiffrast.
    level = torch.nan_to_num(level, nan=0.0).clamp(0.0, float(max_level))
    level0 = torch.floor(level.detach())
    level1 = (level0 + 1).clamp(max=max_level).long()
    if not blend:
        return level0.long(), level1, None
    frac = level - level0
    frac = torch.where(frac > 0, frac, torch.zeros_like(frac))
    return level0.long(), level1, frac
