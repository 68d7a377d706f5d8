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
from typing import List

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

    @property
    def output_dim(self) -> int:
        return self.n_levels * self.features_per_level

    def _level_corners(self, level: int, x: Tensor):
        """Table rows ``[N, 2, 2, 2]`` of the corners ``(dx, dy, dz)`` of each point's cell, and the
        per-axis interpolation weights ``[N, 3, 2]``: ``(1 - f, f)`` for the fraction ``f`` in the cell."""
        res = self.resolutions[level]
        size = self.offsets[level + 1] - self.offsets[level]
        scaled = x * res
        cell = torch.floor(scaled).clamp(max=res - 1)
        frac = scaled - cell
        cell = cell.long()
        step = torch.arange(2, device=x.device)
        cx, cy, cz = (cell[:, axis, None] + step for axis in range(3))  # [N, 2] each
        if (res + 1) ** 3 <= self.table_size:
            rows = cx[:, :, None, None] + (res + 1) * (cy[:, None, :, None] + (res + 1) * cz[:, None, None, :])
        else:
            # Products stay below 2^63 (coordinates < 2^20, primes < 2^32), and T divides 2^32, so
            # the low bits equal those of instant-ngp's wrapping 32-bit arithmetic.
            rows = (
                (cx * _PRIMES[0])[:, :, None, None]
                ^ (cy * _PRIMES[1])[:, None, :, None]
                ^ (cz * _PRIMES[2])[:, None, None, :]
            )
            rows = rows & (size - 1)
        weights = torch.stack([1.0 - frac, frac], -1)
        return rows + self.offsets[level], weights

    def forward(self, x: Tensor) -> Tensor:
        """Encode points ``x [N, 3]`` in ``[0, 1]^3`` (clamped) -> ``[N, L * F]``."""
        if x.dim() != 2 or x.shape[-1] != 3:
            raise ValueError(f"HashGridEncoding: positions must be [N, 3], got {tuple(x.shape)}")
        return _HashGridLookup.apply(x.to(self.table.dtype).clamp(0.0, 1.0), self.table, self)


def _trilinear(weights: Tensor) -> Tensor:
    """``[N, 2, 2, 2]`` corner weights from per-axis weights ``[N, 3, 2]``."""
    return weights[:, 0, :, None, None] * weights[:, 1, None, :, None] * weights[:, 2, None, None, :]


class _HashGridLookup(torch.autograd.Function):
    """Gather-and-interpolate over all levels. The backward pass accumulates the table gradient
    in place (autograd through per-level gathers would materialise a table-sized gradient per
    level) and keeps only the corner rows (int32) and per-axis weights of each level."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, encoding: HashGridEncoding) -> Tensor:
        features = table.shape[1]
        out, saved = [], []
        for level in range(encoding.n_levels):
            rows, weights = encoding._level_corners(level, x)
            rows = rows.reshape(-1)
            if table.shape[0] < 1 << 31:
                rows = rows.int()  # halves what is kept for the backward pass
            corner = table.index_select(0, rows).reshape(x.shape[0], 8, features)
            out.append((corner * _trilinear(weights).reshape(-1, 8, 1)).sum(1))
            saved += [rows, weights]
        ctx.save_for_backward(table, *saved)
        ctx.resolutions = encoding.resolutions
        return torch.cat(out, -1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        table, *saved = ctx.saved_tensors
        features = table.shape[1]
        grad_table = torch.zeros_like(table) if ctx.needs_input_grad[1] else None
        grad_x = (
            torch.zeros(grad.shape[0], 3, dtype=grad.dtype, device=grad.device) if ctx.needs_input_grad[0] else None
        )
        sign = torch.tensor([-1.0, 1.0], dtype=grad.dtype, device=grad.device)
        for level, res in enumerate(ctx.resolutions):
            rows, w = saved[2 * level], saved[2 * level + 1]
            g = grad[:, level * features : (level + 1) * features]  # [N, F]
            if grad_table is not None:
                corner_grad = _trilinear(w).reshape(-1, 8, 1) * g[:, None, :]
                grad_table.index_add_(0, rows, corner_grad.reshape(-1, features))
            if grad_x is not None:
                corner = table.index_select(0, rows).reshape(-1, 2, 2, 2, features)
                s = (corner * g[:, None, None, None, :]).sum(-1)  # dL / d(corner weight)
                dx = (s * (sign[None, :, None, None] * w[:, 1, None, :, None] * w[:, 2, None, None, :])).sum((1, 2, 3))
                dy = (s * (w[:, 0, :, None, None] * sign[None, None, :, None] * w[:, 2, None, None, :])).sum((1, 2, 3))
                dz = (s * (w[:, 0, :, None, None] * w[:, 1, None, :, None] * sign[None, None, None, :])).sum((1, 2, 3))
                grad_x += torch.stack([dx, dy, dz], -1) * res
        return grad_x, grad_table, None
