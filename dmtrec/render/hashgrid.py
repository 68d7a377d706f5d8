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
import torch.nn.functional as F
from torch import Tensor

_PRIMES = (1, 2654435761, 805459861)
_CORNERS = [(i & 1, (i >> 1) & 1, (i >> 2) & 1) for i in range(8)]


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

    def __init__(self, n_levels: int = 16, features_per_level: int = 2, log2_table_size: int = 19,
                 base_resolution: int = 16, finest_resolution: int = 4096, init_scale: float = 1e-4):
        super().__init__()
        if n_levels < 1 or features_per_level < 1:
            raise ValueError(f"HashGridEncoding: n_levels and features_per_level must be >= 1, got {n_levels}, {features_per_level}")
        if not 1 <= base_resolution <= finest_resolution:
            raise ValueError(f"HashGridEncoding: need 1 <= base_resolution <= finest_resolution, got {base_resolution}, {finest_resolution}")
        if not 4 <= log2_table_size <= 30:
            raise ValueError(f"HashGridEncoding: log2_table_size must be in [4, 30], got {log2_table_size}")
        self.n_levels = n_levels
        self.features_per_level = features_per_level
        self.table_size = 1 << log2_table_size
        growth = math.exp(math.log(finest_resolution / base_resolution) / max(n_levels - 1, 1))
        self.resolutions: List[int] = [int(math.floor(base_resolution * growth ** level + 1e-6)) for level in range(n_levels)]
        sizes = [min((res + 1) ** 3, self.table_size) for res in self.resolutions]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        self.offsets = offsets
        self.table = torch.nn.Parameter(torch.empty(offsets[-1], features_per_level).uniform_(-init_scale, init_scale))

    @property
    def output_dim(self) -> int:
        return self.n_levels * self.features_per_level

    def _level_index(self, level: int, corner: Tensor) -> Tensor:
        """Table rows ``[...]`` of integer grid vertices ``corner [..., 3]`` at ``level``."""
        res = self.resolutions[level]
        size = self.offsets[level + 1] - self.offsets[level]
        if (res + 1) ** 3 <= self.table_size:
            index = corner[..., 0] + (res + 1) * (corner[..., 1] + (res + 1) * corner[..., 2])
        else:
            # Products stay below 2^63 (corner < 2^20, primes < 2^32), and T divides 2^32, so the
            # low bits equal those of instant-ngp's wrapping 32-bit arithmetic.
            index = (corner[..., 0] * _PRIMES[0]) ^ (corner[..., 1] * _PRIMES[1]) ^ (corner[..., 2] * _PRIMES[2])
            index = index & (size - 1)
        return index + self.offsets[level]

    def forward(self, x: Tensor) -> Tensor:
        """Encode points ``x [N, 3]`` in ``[0, 1]^3`` (clamped) -> ``[N, L * F]``."""
        if x.dim() != 2 or x.shape[-1] != 3:
            raise ValueError(f"HashGridEncoding: positions must be [N, 3], got {tuple(x.shape)}")
        x = x.to(self.table.dtype).clamp(0.0, 1.0)
        corners = torch.tensor(_CORNERS, device=x.device)  # [8, 3]
        features = []
        for level, res in enumerate(self.resolutions):
            scaled = x * res
            cell = torch.floor(scaled).clamp(max=res - 1)
            frac = scaled - cell  # differentiable w.r.t. x
            corner = cell.long()[:, None, :] + corners  # [N, 8, 3]
            index = self._level_index(level, corner)
            weight = torch.where(corners.bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(-1)  # [N, 8]
            features.append((F.embedding(index, self.table) * weight[..., None]).sum(1))
        return torch.cat(features, -1)
