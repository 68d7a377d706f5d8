"""``interpolate`` in pure PyTorch: nvdiffrast's barycentric attribute blend and its pixel derivatives.

The blend runs as one autograd Function over the covered pixels, in cache-sized chunks of
contiguous per-attribute columns (1D gathers of each corner's attribute, 1D scatters of its
gradient), instead of autograd through ``[n, 3, A]`` gathers, whose backward on a CPU is dominated
by temporaries over small trailing dimensions. The float operations of the values are those of
the plain formula; gradients equal autograd's up to the order of summation.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import torch_parallel
from .torch_common import CHUNK, float_to_tri_id

PARALLEL_MIN = 4096  # pixels per thread below which one thread interpolates them all


def interpolate(
    attr: Tensor, rast: Tensor, tri: Tensor, rast_db: Optional[Tensor] = None, diff_attrs: Optional[List[int]] = None
) -> Tuple[Tensor, Optional[Tensor]]:
    """Blend vertex attributes with ``rast``'s barycentrics; arguments are assumed checked.

    Args:
        attr: ``[V, A]`` or ``[1, V, A]`` (shared by all images) or ``[B, V, A]``.
        rast: ``[B, H, W, 4]`` from ``rasterize``.
        tri: ``[F, 3]`` triangles; pixels whose id is not in ``[1, F]`` are empty.
        rast_db: ``[B, H, W, 4]`` barycentric pixel derivatives, needed with ``diff_attrs``.
        diff_attrs: non-negative attribute indices whose pixel derivatives to return, or None.

    Returns:
        ``out [B, H, W, A]`` = ``u a[i0] + v a[i1] + (1 - u - v) a[i2]`` and, with ``diff_attrs``,
        ``out_da [B, H, W, 2 D]`` = (da/dX, da/dY) per listed attribute by the chain rule through
        ``rast_db``; both 0 on empty pixels. Gradients reach ``attr``, ``rast[..., :2]`` and ``rast_db``.
    """
    batch, height, width, _ = rast.shape
    num_attrs = attr.shape[-1]
    num_verts = attr.shape[-2]
    tri_id = rast[..., 3].detach().reshape(-1)
    # Ids are positive floats, increasing with the id: test the (few) pixels with one.
    pixels = (tri_id > 0).nonzero().squeeze(1)
    ids = float_to_tri_id(tri_id.index_select(0, pixels))
    inside = (ids >= 1) & (ids <= tri.shape[0])
    if not bool(inside.all()):
        pixels, ids = pixels[inside], ids[inside]
    vidx = tri.index_select(0, ids - 1).to(torch.int64)  # [n, 3]
    if attr.dim() == 3 and attr.shape[0] > 1:
        item = torch.div(pixels, height * width, rounding_mode="floor")
        vidx = vidx + (item * num_verts).unsqueeze(1)
    flat_attr = attr.reshape(-1, num_attrs)
    db = rast_db.reshape(-1, 4) if diff_attrs else None
    out, out_da = _Interpolate.apply(flat_attr, rast.reshape(-1, 4), db, pixels, vidx, list(diff_attrs or []))
    out = out.view(batch, height, width, num_attrs)
    return out, (out_da.view(batch, height, width, -1) if diff_attrs else None)


class _Interpolate(torch.autograd.Function):
    """``(out [P, A], out_da [P, 2 D])`` from ``attr [V, A]``, ``rast [P, 4]``, ``rast_db [P, 4]`` at
    ``pixels [n]`` with corner vertices ``vidx [n, 3]``."""

    @staticmethod
    def forward(ctx, attr, rast, rast_db, pixels, vidx, diff_attrs):
        num_pixels, num_attrs = rast.shape[0], attr.shape[1]
        columns = attr.t().contiguous()  # [A, V]
        out = attr.new_zeros(num_pixels, num_attrs)
        out_da = attr.new_zeros(num_pixels, 2 * len(diff_attrs)) if diff_attrs else attr.new_zeros(0)

        def chunk(s: int, e: int) -> None:
            at = pixels[s:e]
            corners = [vidx[s:e, k] for k in range(3)]
            u, v = rast[:, 0].index_select(0, at), rast[:, 1].index_select(0, at)
            w = 1.0 - u - v
            db = [rast_db[:, k].index_select(0, at) for k in range(4)] if diff_attrs else None
            gathered = {}
            for a in range(num_attrs):
                c0, c1, c2 = gathered[a] = [columns[a].index_select(0, corner) for corner in corners]
                out[:, a].index_copy_(0, at, u * c0 + v * c1 + w * c2)
            for j, a in enumerate(diff_attrs):
                c0, c1, c2 = gathered[a]
                d_du, d_dv = c0 - c2, c1 - c2
                out_da[:, 2 * j].index_copy_(0, at, db[0] * d_du + db[2] * d_dv)
                out_da[:, 2 * j + 1].index_copy_(0, at, db[1] * d_du + db[3] * d_dv)

        torch_parallel.parallel_chunks(chunk, pixels.numel(), CHUNK, PARALLEL_MIN)  # disjoint rows: in parallel
        ctx.save_for_backward(attr, rast, rast_db, pixels, vidx)
        ctx.diff_attrs = diff_attrs
        ctx.mark_non_differentiable(*(() if diff_attrs else (out_da,)))
        return out, out_da

    @staticmethod
    def backward(ctx, grad_out, grad_da):
        attr, rast, rast_db, pixels, vidx = ctx.saved_tensors
        diff_attrs = ctx.diff_attrs
        num_attrs = attr.shape[1]
        need_attr, need_rast, need_db = ctx.needs_input_grad[:3]
        columns = attr.t().contiguous()
        grad_attr = attr.new_zeros(num_attrs, attr.shape[0]) if need_attr else None
        grad_rast = torch.zeros_like(rast) if need_rast else None
        grad_db = torch.zeros_like(rast_db) if need_db and diff_attrs else None
        n = pixels.numel()
        # Per pixel (in parallel over ranges of pixels): the gradients of rast and rast_db, and the
        # weights of each corner's attribute gradient; then per attribute (in parallel), their
        # scatters in the serial loop's order (chunk by chunk, corner by corner): the same sums.
        weights_all = attr.new_empty(num_attrs, 3, n) if need_attr else None

        def chunk(s: int, e: int) -> None:
            at = pixels[s:e]
            corners = [vidx[s:e, k] for k in range(3)]
            u, v = rast[:, 0].index_select(0, at), rast[:, 1].index_select(0, at)
            db = [rast_db[:, k].index_select(0, at) for k in range(4)] if diff_attrs else None
            grad_u = grad_v = None
            grad_dbs = [None] * 4
            # Per attribute: the gradient of its value and, summed over its entries in diff_attrs, of
            # its x and y derivatives.
            grad_xy = {}
            for j, a in enumerate(diff_attrs):
                gx, gy = grad_da[:, 2 * j].index_select(0, at), grad_da[:, 2 * j + 1].index_select(0, at)
                if a in grad_xy:
                    gx, gy = gx + grad_xy[a][0], gy + grad_xy[a][1]
                grad_xy[a] = (gx, gy)
            for a in range(num_attrs):
                g = grad_out[:, a].index_select(0, at)
                if need_rast or (need_db and a in grad_xy):
                    c0, c1, c2 = (columns[a].index_select(0, corner) for corner in corners)
                    d_du, d_dv = c0 - c2, c1 - c2
                if need_rast:
                    gu, gv = g * d_du, g * d_dv
                    grad_u = gu if grad_u is None else grad_u.add_(gu)
                    grad_v = gv if grad_v is None else grad_v.add_(gv)
                if need_db and a in grad_xy:
                    gx, gy = grad_xy[a]
                    terms = (gx * d_du, gy * d_du, gx * d_dv, gy * d_dv)
                    grad_dbs = [t if acc is None else acc.add_(t) for acc, t in zip(grad_dbs, terms)]
                if need_attr:
                    weights = [g * u, g * v, g * (1.0 - u - v)]
                    if a in grad_xy:
                        # d out_da / d corner: (db0, db1) for corner 0, (db2, db3) for 1, minus both for 2.
                        gx, gy = grad_xy[a]
                        dx0, dx1 = gx * db[0] + gy * db[1], gx * db[2] + gy * db[3]
                        weights = [weights[0] + dx0, weights[1] + dx1, weights[2] - (dx0 + dx1)]
                    for k, weight in enumerate(weights):
                        weights_all[a, k, s:e] = weight
            if need_rast and grad_u is not None:
                grad_rast[:, 0].index_copy_(0, at, grad_u)
                grad_rast[:, 1].index_copy_(0, at, grad_v)
            if grad_db is not None:
                for k, t in enumerate(grad_dbs):
                    if t is not None:
                        grad_db[:, k].index_copy_(0, at, t)

        torch_parallel.parallel_chunks(chunk, n, CHUNK, PARALLEL_MIN)

        def scatter(a: int) -> None:
            for s in range(0, n, CHUNK):
                for k in range(3):
                    grad_attr[a].index_add_(0, vidx[s : s + CHUNK, k], weights_all[a, k, s : s + CHUNK])

        if need_attr:
            torch_parallel.parallel_map(scatter, range(num_attrs), parallel=n >= PARALLEL_MIN)
        if grad_attr is not None:
            grad_attr = grad_attr.t()
        return grad_attr, grad_rast, grad_db, None, None, None
