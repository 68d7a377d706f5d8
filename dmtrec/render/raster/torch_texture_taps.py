"""Bilinear and trilinear sampling of 2D textures as one autograd Function, for the torch texture op.

Autograd through gathers of ``[N, 4, C]`` rows keeps every intermediate of the blend and runs
its backward over small trailing dimensions; on a CPU that costs an order of magnitude more than
the arithmetic, and each of the dozens of full-size temporaries is a trip to main memory. Here
the samples are processed in cache-sized chunks: per chunk, the taps' indices and weights come
from :func:`~.torch_texture._axis_taps` (so the same taps as the autograd formulation), each
channel of each tap is a 1D ``index_select`` from a transposed (small) texel table, and the
blend uses the same float operations as :func:`~.torch_texture._blend_taps`. Nothing per sample
is saved: the backward recomputes a chunk's taps, scatters each channel's weighted gradient into
the table with 1D ``scatter_add_`` calls and forms the uv and level-weight gradients from the blend
slopes. Values equal the autograd formulation's; gradients equal its gradients up to the order
of summation.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .torch_common import CHUNK

SPREAD = 8  # copies of the texel table the backward scatters into (a power of two)


def sample_2d(
    table: Tensor,
    uv: Tensor,
    frac: Optional[Tensor],
    level: Optional[Tensor],
    plane: Optional[Tensor],
    extents: Tensor,
    boundary: str,
    quads: bool,
) -> Tensor:
    """Bilinear samples of a stack of 2D levels, blended across two levels when ``frac`` is given.

    Args:
        table: ``[T, C]`` texel rows of all levels (``torch_texture._stack_levels``) or, with
            ``quads``, ``[T, 4 C]`` quad rows (``torch_texture._quad_table``, wrap mode only).
        uv: ``[N, 2]`` texture coordinates.
        frac: ``[N]`` weight of the second level, or None.
        level: ``[L, N]`` long level of each sample (``L = 2`` with ``frac``), or None: level 0.
        plane: ``[N]`` long texture batch entry of each sample, or None: entry 0.
        extents: ``[3, levels]`` long: first row in ``table`` of each level of entry 0, height, width.
        boundary: "wrap", "clamp" or "zero".
        quads: whether ``table`` holds quad rows.

    Returns:
        ``[N, C]``, differentiable w.r.t. ``table``, ``uv`` and ``frac``.
    """
    return _Sample2D.apply(table, uv, frac, level, plane, extents, boundary, quads)


def _chunk_taps(
    uv: Tensor, level: Optional[Tensor], plane: Optional[Tensor], extents: Tensor, boundary: str, quads: bool, t: int
) -> Tuple[List[Tensor], Optional[List[Tensor]], Tensor, Tensor, object, object]:
    """Tap rows (4, or 1 with quads) ``[L * n]``, taps reading zero (or None), ``fx, fy [L, n]`` and
    the level extents (ints or ``[L, n]``) of the samples ``uv [n, 2]``."""
    from .torch_texture import _axis_taps  # the texture op's own tap arithmetic

    if level is None:
        base, h, w = 0, int(extents[1, 0]), int(extents[2, 0])
    else:
        base, h, w = (extents[i].index_select(0, level.reshape(-1)).view(level.shape) for i in range(3))
    ix0, ix1, fx, in_x0, in_x1 = _axis_taps(uv[:, 0], w, boundary)
    iy0, iy1, fy, in_y0, in_y1 = _axis_taps(uv[:, 1], h, boundary)
    row0 = iy0 if plane is None else plane * h + iy0
    row0 = row0 * w + base
    if quads:
        rows = [row0 + ix0]
        outside = None
    else:
        row1 = iy1 if plane is None else plane * h + iy1
        row1 = row1 * w + base
        rows = [row0 + ix0, row0 + ix1, row1 + ix0, row1 + ix1]
        outside = None
        if in_x0 is not None:
            outside = [~(in_x0 & in_y0), ~(in_x1 & in_y0), ~(in_x0 & in_y1), ~(in_x1 & in_y1)]
            rows = [r.masked_fill_(o, 0) for r, o in zip(rows, outside)]
            outside = [o.reshape(-1) for o in outside]
    # Non-finite coordinates give arbitrary indices; keep them in range (the sample is NaN).
    rows = [r.clamp_(0, t - 1).reshape(-1) for r in rows]
    num_levels = fx.numel() // uv.shape[0]
    shape = (num_levels, uv.shape[0])
    return rows, outside, fx.reshape(shape), fy.reshape(shape), h, w


def _gather_taps(columns: Tensor, rows: List[Tensor], outside, c: int, channels: int, quads: bool, shape):
    taps = []
    for k in range(4):
        tap = columns[k * channels + c if quads else c].index_select(0, rows[0 if quads else k]).view(shape)
        taps.append(tap if outside is None else tap.masked_fill_(outside[k].view(shape), 0.0))
    return taps


class _Sample2D(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, uv, frac, level, plane, extents, boundary, quads):
        n = uv.shape[0]
        channels = table.shape[1] // 4 if quads else table.shape[1]
        columns = table.t().contiguous()  # [C or 4 C, T]: a 1D gather per channel and tap
        out = table.new_empty(n, channels)
        for s in range(0, n, CHUNK):
            e = min(s + CHUNK, n)
            lv = None if level is None else level[:, s:e]
            pl = None if plane is None else plane[s:e]
            rows, outside, fx, fy, _, _ = _chunk_taps(uv[s:e], lv, pl, extents, boundary, quads, table.shape[0])
            for c in range(channels):
                a00, a10, a01, a11 = _gather_taps(columns, rows, outside, c, channels, quads, fx.shape)
                top = a00 + fx * (a10 - a00)
                bottom = a01 + fx * (a11 - a01)
                value = top + fy * (bottom - top)
                out[s:e, c] = value[0] if frac is None else value[0] + frac[s:e] * (value[1] - value[0])
        ctx.save_for_backward(table, uv, frac, level, plane, extents)
        ctx.boundary, ctx.quads = boundary, quads
        return out

    @staticmethod
    def backward(ctx, grad):
        table, uv, frac, level, plane, extents = ctx.saved_tensors
        boundary, quads = ctx.boundary, ctx.quads
        n, texels = uv.shape[0], table.shape[0]
        channels = table.shape[1] // 4 if quads else table.shape[1]
        columns = table.t().contiguous()
        need_table, need_uv, need_frac = ctx.needs_input_grad[:3]
        grad_table = grad_uv = grad_frac = None
        if need_table:
            # Neighbouring samples read the same texels, and a scatter's additions to one address
            # wait for each other: consecutive samples add into SPREAD separate copies of the table.
            grad_columns = grad.new_zeros(columns.shape[0], SPREAD * texels)
            taps_per_chunk = (1 if level is None else level.shape[0]) * min(n, CHUNK)
            spread_all = (torch.arange(taps_per_chunk, device=uv.device) & (SPREAD - 1)) * texels
        if need_uv:
            grad_uv = torch.zeros_like(uv)
        if need_frac:
            grad_frac = torch.zeros_like(frac)
        for s in range(0, n, CHUNK):
            e = min(s + CHUNK, n)
            lv = None if level is None else level[:, s:e]
            pl = None if plane is None else plane[s:e]
            rows, outside, fx, fy, h, w = _chunk_taps(uv[s:e], lv, pl, extents, boundary, quads, texels)
            g = grad[s:e]
            level_weight = None if frac is None else torch.stack([1.0 - frac[s:e], frac[s:e]])
            if need_table:
                gx, gy = 1.0 - fx, 1.0 - fy
                weights = [gx * gy, fx * gy, gx * fy, fx * fy]
                if level_weight is not None:
                    weights = [wt.mul_(level_weight) for wt in weights]
                if outside is not None:
                    weights = [wt.masked_fill_(o.view(wt.shape), 0.0) for wt, o in zip(weights, outside)]
                spread = spread_all[: rows[0].numel()]
                spread_rows = [r + spread for r in rows]
            slope_x = slope_y = step_level = None
            for c in range(channels):
                gc = g[:, c]
                if need_table:
                    for k in range(4):
                        column = grad_columns[k * channels + c if quads else c]
                        column.scatter_add_(0, spread_rows[0 if quads else k], (weights[k] * gc).view(-1))
                if not (need_uv or need_frac):
                    continue
                a00, a10, a01, a11 = _gather_taps(columns, rows, outside, c, channels, quads, fx.shape)
                step_top, step_bottom = a10 - a00, a11 - a01
                top = a00 + fx * step_top
                step_y = a01 + fx * step_bottom - top
                if need_uv:  # d value / d fx and d value / d fy, times the incoming gradient
                    sx = (step_top + fy * (step_bottom - step_top)) * gc
                    sy = step_y * gc
                    slope_x = sx if slope_x is None else slope_x.add_(sx)
                    slope_y = sy if slope_y is None else slope_y.add_(sy)
                if need_frac:
                    value = top + fy * step_y
                    sl = (value[1] - value[0]) * gc
                    step_level = sl if step_level is None else step_level.add_(sl)
            if need_uv:
                if level_weight is not None:
                    slope_x, slope_y = slope_x.mul_(level_weight), slope_y.mul_(level_weight)
                # d fx / d u is the level's width (wrapping, clamping inside its range and the
                # zero boundary all have slope 1 in u * width).
                grad_uv[s:e, 0] = (slope_x * w).sum(0)
                grad_uv[s:e, 1] = (slope_y * h).sum(0)
            if need_frac:
                grad_frac[s:e] = step_level
        if need_table:
            grad_table = grad_columns.view(-1, SPREAD, texels).sum(1).t()
        return grad_table, grad_uv, grad_frac, None, None, None, None, None
