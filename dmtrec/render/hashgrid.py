"""Multi-resolution hash-grid encoding (instant-ngp, Mueller et al. 2022) in pure PyTorch.

Level ``l`` of ``L`` has ``N_l = floor(base * b^l)`` cells per axis over the unit cube, with
``b = (finest / base)^(1 / (L - 1))``. Its ``(N_l + 1)^3`` grid vertices index a table of
``F``-dimensional features directly while they fit in ``T = 2^log2_table_size`` entries, and
through instant-ngp's spatial hash ``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod T``
beyond. A point's encoding concatenates, over the levels, the trilinear interpolation of the
features at its cell's eight corners: ``[N, L * F]``. Gradients reach the tables and the
positions (through the interpolation weights).
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch
from torch import Tensor

_PRIMES = (1, 2654435761, 805459861)


class HashGridEncoding(torch.nn.Module):
    """Learnable multi-resolution hash-grid features of points in the unit cube.

    Args:
        n_levels: number of resolutions ``L``.
        features_per_level: ``F``.
        log2_table_size: ``log2(T)``, the most entries of one level's table.
        base_resolution: cells per axis of the coarsest level.
        finest_resolution: cells per axis of the finest level.
        init_scale: tables start uniform in ``[-init_scale, init_scale]`` (instant-ngp: 1e-4).
    """

    def __init__(
        self,
        n_levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        finest_resolution: int = 4096,
        init_scale: float = 1e-4,
    ):
        super().__init__()
        if n_levels < 1 or features_per_level < 1:
            raise ValueError(
                f"HashGridEncoding: n_levels and features_per_level must be >= 1, got {n_levels}, {features_per_level}"
            )
        if not 1 <= base_resolution <= finest_resolution < 1 << 20:
            raise ValueError(
                f"HashGridEncoding: need 1 <= base_resolution <= finest_resolution < 2^20, "
                f"got {base_resolution}, {finest_resolution}"
            )
        if not 4 <= log2_table_size <= 30:
            raise ValueError(f"HashGridEncoding: log2_table_size must be in [4, 30], got {log2_table_size}")
        self.n_levels = n_levels
        self.features_per_level = features_per_level
        self.table_size = 1 << log2_table_size
        growth = math.exp(math.log(finest_resolution / base_resolution) / max(n_levels - 1, 1))
        self.resolutions: List[int] = [
            int(math.floor(base_resolution * growth**level + 1e-6)) for level in range(n_levels)
        ]
        sizes = [min((res + 1) ** 3, self.table_size) for res in self.resolutions]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        self.offsets = offsets
        self.table = torch.nn.Parameter(torch.empty(offsets[-1], features_per_level).uniform_(-init_scale, init_scale))
        self._constants: dict = {}

    @property
    def output_dim(self) -> int:
        return self.n_levels * self.features_per_level

    def _level_tensors(self, device: torch.device, dtype: torch.dtype):
        """Per-level constants ``(resolutions [L] float, resolutions [L] int64, offsets [L] int64)``,
        built once per device and dtype (the step calls this every iteration)."""
        key = (device, dtype)
        if key not in self._constants:
            self._constants[key] = (
                torch.tensor(self.resolutions, dtype=dtype, device=device),
                torch.tensor(self.resolutions, dtype=torch.int64, device=device),
                torch.tensor(self.offsets[:-1], dtype=torch.int64, device=device),
            )
        return self._constants[key]

    def _corners(self, x: Tensor, levels: slice = slice(None)):
        """Table rows ``[L', 8, N]`` of the corners ``(dx, dy, dz)`` (``dz`` fastest) of each point's
        cell at the levels ``levels`` (a slice of ``range(L)``), and the fractions ``[L', 3, N]`` of
        the points in their cells.

        All levels go through one pass of tensor ops, points along the last (contiguous)
        dimension: CPU kernels broadcasting over small trailing dimensions are several times slower.
        """
        res_f, res_i, offsets = (t[levels] for t in self._level_tensors(x.device, x.dtype))
        # Coarse levels fit their table (dense indexing), finer ones are hashed; resolutions grow
        # with the level, so the dense levels come first.
        dense = sum((res + 1) ** 3 <= self.table_size for res in self.resolutions[levels])
        scaled = x.t()[None] * res_f[:, None, None]  # [L', 3, N], the same float product as x * N_l
        cell = torch.minimum(torch.floor(scaled), (res_f - 1)[:, None, None])
        frac = scaled - cell
        cell = cell.long()
        cx, cy, cz = torch.stack([cell, cell + 1], 2).unbind(1)  # [L', 2, N] each: the two corners per axis
        rows = []
        if dense:
            side = (res_i[:dense] + 1)[:, None, None, None, None]
            rows.append(
                cx[:dense, :, None, None] + side * (cy[:dense, None, :, None] + side * cz[:dense, None, None, :])
            )
        if dense < cx.shape[0]:
            # Products stay below 2^63 (coordinates < 2^20, primes < 2^32), and T divides 2^32, so
            # the low bits equal those of instant-ngp's wrapping 32-bit arithmetic.
            hashed = (
                (cx[dense:] * _PRIMES[0])[:, :, None, None]
                ^ (cy[dense:] * _PRIMES[1])[:, None, :, None]
                ^ (cz[dense:] * _PRIMES[2])[:, None, None, :]
            )
            rows.append(hashed & (self.table_size - 1))
        rows = torch.cat(rows, 0) if len(rows) > 1 else rows[0]
        return rows.reshape(rows.shape[0], 8, -1) + offsets[:, None, None], frac

    def _level_corners(self, level: int, x: Tensor):
        """Table rows ``[N, 2, 2, 2]`` of the corners ``(dx, dy, dz)`` of each point's cell at one
        level, and the per-axis interpolation weights ``[N, 3, 2]``: ``(1 - f, f)`` for the
        fraction ``f`` in the cell."""
        rows, frac = self._corners(x, slice(level, level + 1))
        return rows[0].t().reshape(-1, 2, 2, 2), _axis_weights(frac)[0].permute(2, 0, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Encode points ``x [N, 3]`` in ``[0, 1]^3`` (clamped) -> ``[N, L * F]``."""
        if x.dim() != 2 or x.shape[-1] != 3:
            raise ValueError(f"HashGridEncoding: positions must be [N, 3], got {tuple(x.shape)}")
        return _HashGridLookup.apply(x.to(self.table.dtype).clamp(0.0, 1.0), self.table, self)


def _axis_weights(frac: Tensor) -> Tensor:
    """Per-axis interpolation weights ``[L, 3, 2, N]``: ``(1 - f, f)`` for fractions ``f [L, 3, N]``."""
    return torch.stack([1.0 - frac, frac], 2)


def _trilinear(weights: Tensor) -> Tensor:
    """``[L, 8, N]`` corner weights (``dz`` fastest) from per-axis weights ``[L, 3, 2, N]``."""
    wx, wy, wz = weights.unbind(1)
    return (wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]).reshape(wx.shape[0], 8, -1)


CHUNK_CORNERS = 1 << 22
"""Corner lookups (levels x 8 x points) per pass of the lookup: points go through in chunks so
that the temporaries stay bounded (tens of MB) however many points a batch has."""


def _point_chunks(n: int, levels: int) -> List[slice]:
    step = max(1, CHUNK_CORNERS // (8 * levels))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)] or [slice(0, 0)]


def _narrow_rows(device: torch.device, table_rows: int) -> bool:
    """Whether the corner rows saved for the backward pass are kept as int32: off CPUs (int32
    halves their memory there, where CPU scatters with int32 indices are an order of magnitude
    slower) and only while every row index fits in int32. The one CUDA-only decision of the
    lookup, as a function so that the CPU tests can force it (tests/render/test_hashgrid_cuda_branch.py)."""
    return device.type != "cpu" and table_rows < 1 << 31


class _HashGridLookup(torch.autograd.Function):
    """Gather-and-interpolate over all levels at once, points along the last dimension (in
    chunks of :data:`CHUNK_CORNERS` lookups) and the table read feature-major (``[F, T]``: one
    gather of whole rows per feature, no per-feature index arithmetic). The forward pass keeps
    only the corner rows and the fractions; the backward pass scatters the table gradient into
    one buffer (autograd through the gathers would materialise a table-sized gradient per
    level) and re-gathers the corner features for the position gradient. Rows stay int64 on
    CPUs, where scatters with int32 indices are an order of magnitude slower, and are kept as
    int32 elsewhere (half the memory)."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, encoding: HashGridEncoding) -> Tensor:
        table_t = table.t().contiguous()  # [F, T]
        narrow = _narrow_rows(x.device, table.shape[0])
        outs, kept = [], []
        for part in _point_chunks(x.shape[0], encoding.n_levels):
            rows, frac = encoding._corners(x[part])  # [L, 8, n], [L, 3, n]
            corner = table_t.index_select(1, rows.reshape(-1)).reshape((table.shape[1],) + rows.shape)
            out = (corner * _trilinear(_axis_weights(frac))).sum(2)  # [F, L, n]
            outs.append(out.permute(2, 1, 0).reshape(rows.shape[2], encoding.output_dim))
            kept.append((rows.int() if narrow else rows, frac))
        rows, frac = (torch.cat(t, -1) if len(kept) > 1 else t[0] for t in zip(*kept))
        ctx.save_for_backward(table, rows, frac)
        ctx.table_t, ctx.encoding = table_t, encoding
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    def backward(ctx, grad: Tensor):
        _, rows, frac = ctx.saved_tensors  # the table is saved for autograd's in-place edit check
        levels = rows.shape[0]
        grad_t = torch.zeros_like(ctx.table_t) if ctx.needs_input_grad[1] else None
        grad_x = []
        for part in _point_chunks(rows.shape[2], levels):
            grad_part = _backward_chunk(ctx, grad[part], rows[:, :, part], frac[:, :, part], grad_t)
            if grad_part is not None:
                grad_x.append(grad_part)
        grad_x = (torch.cat(grad_x) if len(grad_x) > 1 else grad_x[0]) if grad_x else None
        return grad_x, None if grad_t is None else grad_t.t(), None


def _backward_chunk(ctx, grad: Tensor, rows: Tensor, frac: Tensor, grad_t: Optional[Tensor]) -> Optional[Tensor]:
    """One chunk's backward pass: adds its table gradient into ``grad_t [F, T]`` (when given)
    and returns its position gradient ``[n, 3]`` (when needed)."""
    levels, n, features = rows.shape[0], rows.shape[2], ctx.table_t.shape[0]
    g = grad.reshape(n, levels, features).permute(2, 1, 0).contiguous()[:, :, None, :]  # [F, L, 1, n]
    w = _axis_weights(frac)  # [L, 3, 2, n]
    index = rows.reshape(-1).long()
    if grad_t is not None:
        grad_t.index_add_(1, index, (_trilinear(w) * g).reshape(features, -1))
    if not ctx.needs_input_grad[0]:
        return None
    corner = ctx.table_t.index_select(1, index).reshape(features, levels, 8, n)
    s = (corner * g).sum(0).reshape(levels, 2, 2, 2, n)  # dL / d(corner weight)
    sign = torch.tensor([-1.0, 1.0], dtype=grad.dtype, device=grad.device)
    wx, wy, wz = w.unbind(1)  # [L, 2, n] each
    dx = (s * (sign[:, None, None, None] * wy[:, None, :, None] * wz[:, None, None, :])).sum((1, 2, 3))
    dy = (s * (wx[:, :, None, None] * sign[:, None, None] * wz[:, None, None, :])).sum((1, 2, 3))
    dz = (s * (wx[:, :, None, None] * wy[:, None, :, None] * sign[:, None])).sum((1, 2, 3))
    res = ctx.encoding._level_tensors(grad.device, grad.dtype)[0]
    return (torch.stack([dx, dy, dz], 1) * res[:, None, None]).sum(0).t()
