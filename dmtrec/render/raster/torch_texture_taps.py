"""Bilinear and trilinear sampling of 2D textures as one autograd Function, for the torch texture op.

Autograd through gathers of ``[N, 4, C]`` rows keeps every intermediate of the blend and runs
its backward over small trailing dimensions; on a CPU that costs an order of magnitude more than
the arithmetic, and each of the dozens of full-size temporaries is a trip to main memory. Here
the samples are processed in cache-sized chunks: per chunk, the taps' rows and weights are
computed in float and int32 arithmetic (exact for texel indices; int64 multiplies are several
times slower on a CPU), each channel of each tap is a 1D ``index_select`` from a transposed
(small) texel table, and the blend uses the same float operations as
:func:`~.torch_texture._blend_taps`. The forward saves the taps' rows (int32) and weights and the
derivatives of each output channel w.r.t. ``uv`` and the level weight (``[C, N]``); the backward
scatters each channel's weighted gradient into the table with 1D ``scatter_add_`` calls. The
empty pixels of a render (uv 0 and a zero footprint, so level 0 with no weight on level 1) are all
the same sample: when they are many, one of them is computed, its value copied to the others, and
each gets its own uv gradient from that sample's derivatives. Values equal the autograd
formulation's; gradients equal its gradients up to rounding (order of summation and of
multiplication).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import torch_parallel
from .torch_common import CHUNK

SPREAD = 8  # copies of the texel table the backward scatters into (a power of two)
SHARED_MIN, SHARED_MIN_FRACTION = 1024, 8  # share one sample from 1024 samples on, when 1/8 of them are alike
PARALLEL_MIN = 4096  # samples per thread below which one thread samples them all


def sample_2d(
    table: Tensor,
    uv: Tensor,
    frac: Optional[Tensor],
    level: Optional[Tensor],
    plane: Optional[Tensor],
    extents: Tensor,
    boundary: str,
    quads: bool,
    columns: bool = False,
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
        columns: ``table`` is given channels-first, ``[C, T]``
            (:func:`~.torch_texture_mip.mip_columns`); its gradient is then ``[C, T]`` too.

    Returns:
        ``[N, C]``, differentiable w.r.t. ``table``, ``uv`` and ``frac``.
    """
    shared = None
    if plane is None and uv.shape[0] >= SHARED_MIN:
        # Samples at uv (0, 0) of level 0 with no weight on level 1 (the empty pixels of a render:
        # interpolate leaves zeros there) are all the same sample: it is computed once.
        with torch.no_grad():
            shared = (uv[:, 0] == 0) & (uv[:, 1] == 0)
            if level is not None:
                shared &= level[0] == 0
            if frac is not None:
                shared &= frac == 0
            if int(shared.sum()) * SHARED_MIN_FRACTION < uv.shape[0]:
                shared = None
    return _Sample2D.apply(table, uv, frac, level, plane, extents, boundary, quads, columns, shared)


def _chunk_taps(
    uv: Tensor, level: Optional[Tensor], plane: Optional[Tensor], extents: Tensor, boundary: str, quads: bool, t: int
) -> Tuple[List[Tensor], Optional[List[Tensor]], Tensor, Tensor, object, object]:
    """Tap rows (4, or 1 with quads) ``[L * n]``, taps reading zero (or None), ``fx, fy [L, n]`` and
    the level extents (floats or ``[L, n]``) of the samples ``uv [n, 2]``."""
    if level is None:
        base, h, w = 0, float(extents[1, 0]), float(extents[2, 0])
    else:
        flat = level.reshape(-1)
        base = extents[0].index_select(0, flat).view(level.shape).int()
        h, w = (extents[i].to(uv.dtype).index_select(0, flat).view(level.shape) for i in (1, 2))
    ix0, ix1, fx, in_x0, in_x1 = _axis(uv[:, 0], w, boundary)
    iy0, iy1, fy, in_y0, in_y1 = _axis(uv[:, 1], h, boundary)
    w_int = int(w) if level is None else w.int()
    if plane is not None:
        h_int = int(h) if level is None else h.int()
        iy0, iy1 = plane.int() * h_int + iy0, plane.int() * h_int + iy1
    row0 = iy0 * w_int + base
    if quads:
        rows = [row0 + ix0]
        outside = None
    else:
        row1 = iy1 * w_int + base
        rows = [row0 + ix0, row0 + ix1, row1 + ix0, row1 + ix1]
        outside = None
        if in_x0 is not None:
            outside = [~(in_x0 & in_y0), ~(in_x1 & in_y0), ~(in_x0 & in_y1), ~(in_x1 & in_y1)]
            rows = [r.masked_fill_(o, 0) for r, o in zip(rows, outside)]
            outside = [o.reshape(-1) for o in outside]
    # Non-finite coordinates give arbitrary indices; keep them in range (the sample is NaN).
    rows = [r.clamp_(0, t - 1).reshape(-1) for r in rows]  # int32: index_select takes them as they are
    num_levels = fx.numel() // uv.shape[0]
    shape = (num_levels, uv.shape[0])
    return rows, outside, fx.reshape(shape), fy.reshape(shape), h, w


def _axis(u: Tensor, size, boundary: str):
    """The two bilinear taps along one axis of 2D levels of extent ``size``, as nvdiffrast takes them.

    "wrap" keeps the fractional part of ``u``; "clamp" clamps to the edge texels' centres, where
    both taps read the edge texel (so the uv gradient is zero there); "zero" flags taps outside.

    Returns:
        ``i0, i1`` (int32 texel indices), ``frac`` (the weight of ``i1``) and,
        in zero mode, whether each tap lies inside the level (else None, None).
    """
    if boundary == "wrap":
        u = u - torch.floor(u)
    x = u * size - 0.5
    held = None
    if boundary == "clamp":
        x = torch.clamp(x.clamp(min=0.0), max=size - 1)
        # On an edge texel centre both taps read that texel, so the uv gradient is zero there.
        held = (x == 0) | (x == size - 1)
    x0 = torch.floor(x)
    frac = x - x0
    i0 = x0
    i1 = i0 + 1 if held is None else i0 + (~held).to(x.dtype)
    if boundary == "wrap":  # i0 is -1 only left of the first texel centre, i1 = size only right of the last
        i0 = torch.remainder(i0, size)
        i1 = torch.remainder(i1, size)
    inside = None
    if boundary == "zero":
        inside = ((i0 >= 0) & (i0 < size), (i1 >= 0) & (i1 < size))
    # Non-finite and huge coordinates give arbitrary integers here; the rows are clamped into the
    # table afterwards (and the sample is NaN, or zero outside the texture).
    return (i0.int(), i1.int(), frac) + (inside if inside is not None else (None, None))


def _gather_taps(columns: Tensor, rows: List[Tensor], outside, c: int, channels: int, quads: bool, shape):
    taps = []
    for k in range(4):
        tap = columns[k * channels + c if quads else c].index_select(0, rows[0 if quads else k]).view(shape)
        taps.append(tap if outside is None else tap.masked_fill_(outside[k].view(shape), 0.0))
    return taps


class _Sample2D(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, uv, frac, level, plane, extents, boundary, quads, given_columns, shared):
        full = uv.shape[0]
        active = None
        if shared is not None:
            # Compute the samples that are not shared, and the first shared one last.
            active = (~shared).nonzero().squeeze(1)
            subset = torch.cat([active, shared.int().argmax().view(1)])
            uv = uv.index_select(0, subset)
            frac = None if frac is None else frac.index_select(0, subset)
            level = None if level is None else level.index_select(1, subset)
        n = uv.shape[0]
        num_levels = 1 if level is None else level.shape[0]
        # [C or 4 C, T]: a 1D gather per channel and tap
        columns = table if given_columns else table.t().contiguous()
        texels = columns.shape[1]
        channels = columns.shape[0] // 4 if quads else columns.shape[0]
        out = table.new_empty(n, channels)
        need_table, need_uv, need_frac = ctx.needs_input_grad[:3]
        # Saved for the backward instead of recomputed: the taps' rows (int32) and weights for the
        # table's gradient; d out / d uv and d out / d frac per channel ([C, N]) for the others.
        rows_all = fx_all = fy_all = outside_all = jac_u = jac_v = jac_frac = None
        if need_table:
            rows_all = torch.empty(1 if quads else 4, num_levels, n, dtype=torch.int32, device=uv.device)
            fx_all, fy_all = uv.new_empty(num_levels, n), uv.new_empty(num_levels, n)
            if boundary == "zero":
                outside_all = torch.empty(4, num_levels, n, dtype=torch.bool, device=uv.device)
        if need_uv:
            jac_u, jac_v = uv.new_empty(channels, n), uv.new_empty(channels, n)
        if need_frac:
            jac_frac = uv.new_empty(channels, n)

        def chunk(s: int, e: int) -> None:
            lv = None if level is None else level[:, s:e]
            pl = None if plane is None else plane[s:e]
            rows, outside, fx, fy, h, w = _chunk_taps(uv[s:e], lv, pl, extents, boundary, quads, texels)
            if need_table:
                for k, r in enumerate(rows):
                    rows_all[k, :, s:e] = r.view(fx.shape)
                fx_all[:, s:e], fy_all[:, s:e] = fx, fy
                if outside is not None:
                    for k, o in enumerate(outside):
                        outside_all[k, :, s:e] = o.view(fx.shape)
            if need_uv:
                # d value / d u = d value / d fx * width (wrapping, clamping inside the range and the
                # zero boundary all have slope 1 in u * width), weighted by the level's share.
                scale_u, scale_v = w, h
                if frac is not None:
                    level_weight = torch.stack([1.0 - frac[s:e], frac[s:e]])
                    scale_u, scale_v = level_weight * w, level_weight * h
            for c in range(channels):
                a00, a10, a01, a11 = _gather_taps(columns, rows, outside, c, channels, quads, fx.shape)
                step_top, step_bottom = a10 - a00, a11 - a01
                top = a00 + fx * step_top
                bottom = a01 + fx * step_bottom
                step_y = bottom - top
                value = top + fy * step_y
                if frac is None:
                    out[s:e, c] = value[0]
                else:
                    step_level = value[1] - value[0]
                    out[s:e, c] = value[0] + frac[s:e] * step_level
                    if need_frac:
                        jac_frac[c, s:e] = step_level
                if need_uv:
                    slope_x = step_top + fy * (step_bottom - step_top)
                    jac_u[c, s:e] = (slope_x * scale_u).sum(0)
                    jac_v[c, s:e] = (step_y * scale_v).sum(0)

        torch_parallel.parallel_chunks(chunk, n, CHUNK, PARALLEL_MIN)  # disjoint rows: in parallel
        ctx.save_for_backward(rows_all, fx_all, fy_all, outside_all, frac, jac_u, jac_v, jac_frac, shared, active)
        ctx.num_texels, ctx.quads, ctx.shape = texels, quads, (num_levels, n, channels)
        ctx.given_columns = given_columns
        if shared is None:
            return out
        full_out = out.new_empty(full, channels)
        full_out[:] = out[-1]
        return full_out.index_copy_(0, active, out[:-1])

    @staticmethod
    def backward(ctx, grad):
        rows_all, fx_all, fy_all, outside_all, frac, jac_u, jac_v, jac_frac, shared, active = ctx.saved_tensors
        num_levels, n, channels = ctx.shape
        texels, quads = ctx.num_texels, ctx.quads
        grad_table = grad_uv = grad_frac = None
        full_grad = grad
        if shared is not None:
            # The shared sample's gradient is the sum over the samples it stands for.
            summed = shared.to(grad.dtype) @ grad
            grad = torch.cat([grad.index_select(0, active), summed.unsqueeze(0)])
        if jac_u is not None:
            grad_uv = grad.new_empty(n, 2)
            grad_uv[:, 0] = (jac_u * grad.t()).sum(0)
            grad_uv[:, 1] = (jac_v * grad.t()).sum(0)
        if jac_frac is not None:
            grad_frac = (jac_frac * grad.t()).sum(0)
        if shared is not None:  # per sample: its own gradient times the shared sample's derivatives
            if grad_uv is not None:
                compact = grad_uv
                grad_uv = full_grad.new_empty(full_grad.shape[0], 2)
                grad_uv[:, 0] = full_grad @ jac_u[:, -1]
                grad_uv[:, 1] = full_grad @ jac_v[:, -1]
                grad_uv.index_copy_(0, active, compact[:-1])
            if grad_frac is not None:
                grad_frac = (full_grad @ jac_frac[:, -1]).index_copy_(0, active, grad_frac[:-1])
        if rows_all is None:
            return grad_table, grad_uv, grad_frac, None, None, None, None, None, None, None
        # Neighbouring samples read the same texels, and a scatter's additions to one address wait
        # for each other: consecutive samples add into SPREAD separate copies of the table.
        # One tensor per column: glibc's malloc serves blocks above 32 MiB with freshly mapped pages
        # on every call (a 512^2 RGBA texture's copies, 45 MB as one tensor, cost more in page
        # faults than the scatter), smaller ones from memory freed by the last step. Each column
        # sums its copies as one [C, SPREAD, T] tensor does, bit for bit.
        grad_columns = [grad.new_zeros(SPREAD * texels) for _ in range((4 if quads else 1) * channels)]
        spread_all = (torch.arange(num_levels * min(n, CHUNK), device=grad.device) & (SPREAD - 1)) * texels
        for s in range(0, n, CHUNK):
            e = min(s + CHUNK, n)
            fx, fy = fx_all[:, s:e], fy_all[:, s:e]
            gx, gy = 1.0 - fx, 1.0 - fy
            weights = [gx * gy, fx * gy, gx * fy, fx * fy]
            if frac is not None:
                level_weight = torch.stack([1.0 - frac[s:e], frac[s:e]])
                weights = [wt.mul_(level_weight) for wt in weights]
            if outside_all is not None:
                weights = [wt.masked_fill_(outside_all[k, :, s:e], 0.0) for k, wt in enumerate(weights)]
            spread = spread_all[: weights[0].numel()]
            rows = [(r[:, s:e].reshape(-1) + spread).long() for r in rows_all.unbind(0)]

            def scatter(c: int) -> None:  # channels scatter into their own columns: in parallel
                gc = grad[s:e, c]
                for k in range(4):
                    column = grad_columns[k * channels + c if quads else c]
                    column.scatter_add_(0, rows[0 if quads else k], (weights[k] * gc).view(-1))

            torch_parallel.parallel_map(scatter, range(channels), parallel=n >= PARALLEL_MIN)
        grad_table = grad.new_empty(len(grad_columns), texels)
        for row, column in zip(grad_table, grad_columns):
            torch.sum(column.view(SPREAD, texels), 0, out=row)
        if not ctx.given_columns:
            grad_table = grad_table.t()
        return grad_table, grad_uv, grad_frac, None, None, None, None, None, None, None
