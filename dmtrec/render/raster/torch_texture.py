"""nvdiffrast's ``texture`` op in pure PyTorch (any device, any floating dtype).

Semantics follow nvdiffrast 0.3.3 (``common/texture.cu``):

* Texel ``i`` of a ``W``-wide level is centred at ``u = (i + 0.5) / W``; ``uv = (0, 0)`` is
  the corner of texel ``[0, 0]`` (row 0 is ``v = 0``, no flip).
* "nearest" reads texel ``floor(u * W)``; the bilinear modes weight the four texels around
  ``u * W - 0.5``. Boundary "wrap" keeps the fractional part of ``uv``, "clamp" clamps to
  the centres of the edge texels, "zero" reads zeros outside, "cube" samples a cube map by
  direction (see :mod:`.torch_cubemap`).
* Mip levels come from :mod:`.torch_texture_mip`; "linear-mipmap-linear" blends two
  bilinear samples by the fractional level.

Gradients come from autograd through gathers and interpolation weights and equal
nvdiffrast's: to ``tex`` (through the internally built mip pyramid too) or to the custom
``mip`` levels; to ``uv`` except in "nearest" mode (for cube maps this includes the
dependence of the mip level on the direction); to ``uv_da`` and ``mip_level_bias`` only in
"linear-mipmap-linear", through the blend weight.

One deliberate difference: for cube maps with a per-batch texture (``tex`` batch > 1),
nvdiffrast 0.3.3 mis-detects corner taps in batch entries 1.. and reads face -z of the
previous entry there; here corner taps always take the mean of the other three taps,
as nvdiffrast does for batch entry 0 and for broadcast cube maps.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .base import BOUNDARY_MODES, FILTER_MODES
from .torch_cubemap import Size, cube_face_coords, cube_face_derivatives, cube_texel_remap
from .torch_texture_mip import (
    check_max_mip_level,
    check_texture_shape,
    construct_mip,
    footprint_lod,
    mip_columns,
    mip_level_shapes,
    select_mip_levels,
)
from .torch_texture_taps import sample_2d

__all__ = ["texture", "construct_mip"]

QUAD_MIN_READS = 48  # lookups per texel from which the quad table pays off


def texture(
    tex: Tensor,
    uv: Tensor,
    uv_da: Optional[Tensor] = None,
    mip_level_bias: Optional[Tensor] = None,
    mip: Optional[Sequence[Tensor]] = None,
    filter_mode: str = "auto",
    boundary_mode: str = "wrap",
    max_mip_level: Optional[int] = None,
) -> Tensor:
    """Sample a 2D texture or a cube map, as ``nvdiffrast.torch.texture``.

    Args:
        tex: ``[B, Ht, Wt, C]``, or ``[B, 6, S, S, C]`` with ``boundary_mode="cube"``;
            ``B`` may be 1 and broadcasts over ``uv``'s batch.
        uv: ``[B, H, W, 2]`` texture coordinates, or ``[B, H, W, 3]`` directions (cube).
        uv_da: ``[B, H, W, 4]`` = (du/dX, du/dY, dv/dX, dv/dY), or ``[B, H, W, 6]`` =
            (dx/dX, dx/dY, dy/dX, dy/dY, dz/dX, dz/dY) for cube maps; selects the mip level.
        mip_level_bias: ``[B, H, W]`` added to the mip level (the level itself without ``uv_da``).
        mip: custom levels below ``tex`` (``[B, max(Ht >> i, 1), max(Wt >> i, 1), C]`` for
            i = 1..len(mip), as :func:`construct_mip` returns); they receive their own
            gradients. Built from ``tex`` when a mipmap mode needs them and none are given.
        filter_mode: "auto", "nearest", "linear", "linear-mipmap-nearest" or
            "linear-mipmap-linear"; "auto" is "linear-mipmap-linear" when ``uv_da`` or
            ``mip_level_bias`` is given, "linear" otherwise.
        boundary_mode: "wrap", "clamp", "zero" or "cube".
        max_mip_level: build and use at most this many levels below ``tex`` (0 turns a
            mipmap mode into "linear"); ignored when ``mip`` is given.

    Returns:
        ``[B, H, W, C]``, ``tex``'s dtype and device. Cube-map samples with a zero or
        non-finite direction read 0 and pass no gradient.

    Raises:
        ValueError: unknown mode, shapes that do not fit together, a mipmap mode without
            ``uv_da`` and ``mip_level_bias``, or a texture whose pyramid cannot be built.
    """
    if filter_mode not in FILTER_MODES:
        raise ValueError(f"texture: unknown filter_mode {filter_mode!r}; choose one of {', '.join(FILTER_MODES)}")
    if boundary_mode not in BOUNDARY_MODES:
        raise ValueError(f"texture: unknown boundary_mode {boundary_mode!r}; choose one of {', '.join(BOUNDARY_MODES)}")
    cube = boundary_mode == "cube"
    check_texture_shape("texture", tex, cube)
    _check_pixels(uv, "uv", tex, 3 if cube else 2, reference=None)
    max_mip_level = check_max_mip_level("texture", max_mip_level)

    if filter_mode == "auto":
        filter_mode = "linear-mipmap-linear" if (uv_da is not None or mip_level_bias is not None) else "linear"
    if "mipmap" in filter_mode:
        if uv_da is None and mip_level_bias is None:
            raise ValueError(f"texture: filter_mode {filter_mode!r} needs uv_da and/or mip_level_bias")
        if max_mip_level == 0:
            filter_mode = "linear"  # as nvdiffrast: no levels below the base, plain bilinear
    mipmapped = "mipmap" in filter_mode

    batch, height, width = uv.shape[:3]
    n = batch * height * width
    coords = uv.reshape(n, uv.shape[-1])
    plane = None if tex.shape[0] == 1 else torch.arange(n, device=uv.device) // (height * width)
    face = valid = None
    if cube:
        face, coords, valid = cube_face_coords(coords)
        plane = face if plane is None else plane * 6 + face

    tex_h, tex_w, channels = tex.shape[-3], tex.shape[-2], tex.shape[-1]
    levels, level, frac = [tex], None, None
    if filter_mode == "nearest":
        plane = torch.zeros(n, dtype=torch.long, device=uv.device) if plane is None else plane
        out = _sample_nearest(tex.reshape(-1, channels), coords.detach(), plane, tex_h, tex_w, boundary_mode)
        return out.reshape(batch, height, width, channels)
    if mipmapped:
        if uv_da is not None:
            _check_pixels(uv_da, "uv_da", tex, 6 if cube else 4, reference=uv)
        if mip_level_bias is not None:
            _check_pixels(mip_level_bias, "mip_level_bias", tex, None, reference=uv)
        shapes = columns = None
        if mip is None and not cube:
            shapes = mip_level_shapes(tex_h, tex_w, max_mip_level)
            texels = tex.shape[0] * (tex_h * tex_w + sum(h * w for h, w in shapes))
            lookups = n * (2 if filter_mode == "linear-mipmap-linear" else 1)
            if not _use_quads(boundary_mode, texels, lookups):
                # The pyramid as one channels-first table: construct_mip's values and gradients.
                columns = mip_columns(tex, shapes)
        if columns is None:
            below = _check_custom_mip(mip, tex, cube) if mip is not None else construct_mip(tex, max_mip_level, cube)
            levels = [tex] + below
        num_levels = len(levels) if columns is None else len(shapes) + 1
        blend = filter_mode == "linear-mipmap-linear"
        with torch.set_grad_enabled(blend and torch.is_grad_enabled()):
            lod = None
            if uv_da is not None:
                footprint = uv_da.reshape(n, uv_da.shape[-1])
                if cube:
                    footprint = cube_face_derivatives(uv.reshape(n, 3), footprint)
                lod = footprint_lod(footprint, texels=(tex_w, tex_h))
            bias = None if mip_level_bias is None else mip_level_bias.reshape(n)
            level0, level1, frac = select_mip_levels(lod, bias, num_levels - 1, blend)
        level = torch.stack([level0, level1]) if blend else level0.unsqueeze(0)
        if columns is not None:
            extents = torch.stack(_shape_extents(tex, [(tex_h, tex_w)] + shapes))
            out = sample_2d(columns, coords, frac, level, plane, extents, boundary_mode, False, columns=True)
            return out.reshape(batch, height, width, channels)

    if cube:
        table, base, level_h, level_w = _stack_levels(levels)
        sizes = (0, tex_h, tex_w) if level is None else (base[level], level_h[level], level_w[level])
        out = _sample_bilinear(table, coords, plane, face, *sizes, frac)
        out = torch.where(valid[:, None], out, 0.0)
    elif _use_quads(boundary_mode, sum(t.numel() for t in levels) // channels, n if level is None else level.numel()):
        _, base, level_h, level_w = _level_extents(levels)
        out = _sample_bilinear_wrap(
            _quad_table(levels), coords, plane, level, torch.stack([base, level_h, level_w]), frac
        )
    else:
        table, base, level_h, level_w = _stack_levels(levels)
        out = sample_2d(table, coords, frac, level, plane, torch.stack([base, level_h, level_w]), boundary_mode, False)
    return out.reshape(batch, height, width, channels)


def _check_pixels(t: Tensor, name: str, tex: Tensor, last: Optional[int], reference: Optional[Tensor]) -> None:
    """``t`` is ``[B, H, W, last]`` (``[B, H, W]`` if ``last`` is None), matching ``reference``."""
    if not isinstance(t, Tensor):
        raise ValueError(f"texture: {name} must be a torch.Tensor, got {type(t).__name__}")
    want = "[B, H, W]" if last is None else f"[B, H, W, {last}]"
    if t.dim() != (3 if last is None else 4) or (last is not None and t.shape[-1] != last):
        raise ValueError(f"texture: {name} must be {want}, got shape {list(t.shape)}")
    if reference is not None and t.shape[:3] != reference.shape[:3]:
        raise ValueError(
            f"texture: {name} must be {want} with the B, H, W of uv {list(reference.shape[:3])}, "
            f"got shape {list(t.shape)}"
        )
    if reference is None and tex.shape[0] not in (1, t.shape[0]):
        raise ValueError(f"texture: tex batch {tex.shape[0]} must be 1 or uv's batch {t.shape[0]}")
    if t.dtype != tex.dtype or t.device != tex.device:
        raise ValueError(
            f"texture: {name} must have tex's dtype and device ({tex.dtype}, {tex.device}), got {t.dtype} on {t.device}"
        )


def _check_custom_mip(mip: Sequence[Tensor], tex: Tensor, cube: bool) -> List[Tensor]:
    if isinstance(mip, Tensor) or not isinstance(mip, (list, tuple)):
        raise ValueError(f"texture: mip must be a list of tensors (the levels below tex), got {type(mip).__name__}")
    tex_h, tex_w = tex.shape[-3], tex.shape[-2]
    for i, level in enumerate(mip, start=1):
        name = f"mip[{i - 1}]"
        check_texture_shape("texture", level, cube, name)
        h, w = max(tex_h >> i, 1), max(tex_w >> i, 1)
        expected = tuple(tex.shape[:-3]) + (h, w, tex.shape[-1])
        if tuple(level.shape) != expected:
            raise ValueError(
                f"texture: {name} (mip level {i} of a {tex_h}x{tex_w} texture) must have shape "
                f"{list(expected)}, got {list(level.shape)}"
            )
        if (h, w) == (1, 1) and i != len(mip):
            raise ValueError(f"texture: {name} is already 1x1, so it must be the last level; got {len(mip)} levels")
        if level.dtype != tex.dtype or level.device != tex.device:
            raise ValueError(
                f"texture: {name} must have tex's dtype and device ({tex.dtype}, {tex.device}), "
                f"got {level.dtype} on {level.device}"
            )
    return list(mip)


def _stack_levels(levels: List[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """All levels as one ``[texels, C]`` table, with each level's first row, height and width."""
    flat, base, level_h, level_w = _level_extents(levels)
    return torch.cat(flat), base, level_h, level_w


def _level_extents(levels: List[Tensor]) -> Tuple[List[Tensor], Tensor, Tensor, Tensor]:
    """Each level as ``[texels, C]`` rows, and each level's first row, height and width in their stack."""
    channels = levels[0].shape[-1]
    flat = [level.reshape(-1, channels) for level in levels]
    return (flat,) + _shape_extents(levels[0], [(level.shape[-3], level.shape[-2]) for level in levels])


def _shape_extents(tex: Tensor, shapes: List[Tuple[int, int]]) -> Tuple[Tensor, Tensor, Tensor]:
    """First row, height and width of levels of ``shapes`` (``(h, w)``, the base level first) of
    ``tex``'s batch (and faces), stacked as :func:`_stack_levels` stacks them."""
    device, images = tex.device, math.prod(tex.shape[:-3])
    sizes = torch.tensor([images * h * w for h, w in shapes], device=device)
    base = torch.cumsum(sizes, 0) - sizes
    level_h = torch.tensor([h for h, _ in shapes], device=device)
    level_w = torch.tensor([w for _, w in shapes], device=device)
    return base, level_h, level_w


def _use_quads(boundary: str, texels: int, lookups: int) -> bool:
    """Whether to sample through :func:`_quad_table`: for wrapped 2D textures read many more times
    than they have texels (measured: a 64^2 texture with mips gains from 256^2 x 4 pixels on and
    loses at 128^2 x 4, where building the table and its backward cost more than they save)."""
    return boundary == "wrap" and QUAD_MIN_READS * texels <= lookups


def _quad_table(levels: List[Tensor]) -> Tensor:
    """``[texels, 4 C]``: row ``(y, x)`` of each wrapped 2D level holds its texels ``(y, x)``,
    ``(y, x + 1)``, ``(y + 1, x)`` and ``(y + 1, x + 1)``, neighbours wrapping around, so that a
    bilinear sample is one gather of one row; rows stacked as :func:`_stack_levels` stacks texels."""
    quads = []
    for level in levels:  # [B, h, w, C]
        right = torch.roll(level, -1, dims=2)
        quad = torch.stack([level, right, torch.roll(level, -1, dims=1), torch.roll(right, -1, dims=1)], 3)
        quads.append(quad.reshape(-1, 4 * level.shape[-1]))
    return torch.cat(quads)


def _fetch(table: Tensor, index: Tensor, inside: Optional[Tensor]) -> Tensor:
    """Rows ``index [...]`` of ``table`` (``[..., C]``), zero where ``inside`` is False."""
    if inside is not None:
        index = torch.where(inside, index, 0)
    # Non-finite coordinates give arbitrary indices; keep them in range (the sample is NaN).
    values = table.index_select(0, index.reshape(-1).clamp(0, table.shape[0] - 1))
    values = values.reshape(index.shape + (table.shape[1],))
    return values if inside is None else torch.where(inside[..., None], values, 0.0)


def _wrap_unit(u: Tensor) -> Tensor:
    return u - torch.floor(u)


def _sample_nearest(table: Tensor, coords: Tensor, plane: Tensor, h: int, w: int, boundary: str) -> Tensor:
    u, v = coords.unbind(-1)
    if boundary == "wrap":
        u, v = _wrap_unit(u), _wrap_unit(v)
    ix, iy = torch.floor(u * w).long(), torch.floor(v * h).long()
    inside = ((ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)) if boundary == "zero" else None
    index = (plane * h + iy.clamp(0, h - 1)) * w + ix.clamp(0, w - 1)
    return _fetch(table, index, inside)


def _sample_bilinear(
    table: Tensor, coords: Tensor, plane: Tensor, face: Tensor, base: Size, h: Size, w: Size, frac: Optional[Tensor]
) -> Tensor:
    """Bilinear samples of a cube map from one or more levels per sample (2D textures go through
    :func:`~.torch_texture_taps.sample_2d`).

    Args:
        table: ``[texels, C]`` all levels (:func:`_stack_levels`) or the base level alone.
        coords: ``[N, 2]`` face coordinates.
        plane: ``[N]`` image of the level the sample reads: its texture batch entry times 6
            plus its face.
        face: ``[N]`` cube face.
        base, h, w: first row of the level in ``table`` and its extent: ints, or long
            ``[L, N]`` for ``L`` levels per sample (``L = 2`` with ``frac``).
        frac: ``[N]`` weight of the second level, or None.

    Returns:
        ``[N, C]``.
    """
    x = coords[:, 0] * w - 0.5
    y = coords[:, 1] * h - 0.5
    x0, y0 = torch.floor(x.detach()), torch.floor(y.detach())
    fx, fy = x - x0, y - y0
    ix0, iy0 = x0.long(), y0.long()
    ix, iy = torch.stack([ix0, ix0 + 1, ix0, ix0 + 1]), torch.stack([iy0, iy0, iy0 + 1, iy0 + 1])
    tap_face, ix, iy, corner = cube_texel_remap(face, ix, iy, w)
    tap_plane = plane - face + tap_face
    taps = _fetch(table, base + (tap_plane * h + iy) * w + ix, ~corner)  # [4, ..., C]
    # Three texels meet at a cube corner: the missing fourth tap is their mean.
    taps = torch.where(corner[..., None], taps.sum(0) * (1.0 / 3.0), taps)
    out = _blend_taps(*taps.unbind(0), fx, fy)
    if frac is not None:
        return out[0] + frac[:, None] * (out[1] - out[0])
    return out.view(coords.shape[0], -1)


def _blend_taps(a00: Tensor, a10: Tensor, a01: Tensor, a11: Tensor, fx: Tensor, fy: Tensor) -> Tensor:
    """Bilinear blend of the four taps ``[..., C]`` with weights ``fx, fy [...]`` of the second ones."""
    fx, fy = fx[..., None], fy[..., None]
    top = a00 + fx * (a10 - a00)
    bottom = a01 + fx * (a11 - a01)
    return top + fy * (bottom - top)


def _sample_bilinear_wrap(
    quads: Tensor, coords: Tensor, plane: Optional[Tensor], level: Optional[Tensor], extents: Tensor, frac
) -> Tensor:
    """:func:`~.torch_texture_taps.sample_2d` of a wrapped 2D texture from its :func:`_quad_table`: the
    same taps and arithmetic, so the same values, with one index per sample and level."""
    return sample_2d(quads, coords, frac, level, plane, extents, "wrap", True)
