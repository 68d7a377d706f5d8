"""The split-sum DFG table: the GGX specular BRDF's directional albedo as ``F0 * A + B``.

For view cosine ``n.v`` and roughness ``r`` the hemispherical integral of the specular
BRDF of :mod:`dmtrec.render.bsdf` (Schlick Fresnel ``F = F0 + (1 - F0) Fc`` with
``Fc = (1 - v.h)^5``) splits into

    A = int (1 - Fc) G (v.h) / ((n.h)(n.v)) D(h)(n.h) dh,    B = int Fc G (v.h) / ((n.h)(n.v)) D(h)(n.h) dh

(Karis 2013). The table is integrated here by a deterministic quadrature over the half
vector distributed as ``D(h)(n.h)`` (Gauss-Legendre in the GGX cumulative distribution,
midpoint rule in azimuth), computed once and cached as a ``.npy`` file under
``$DMTREC_CACHE`` (default ``~/.cache/dmtrec``).

Layout (nvdiffrast texture convention): ``lut[row, col]`` with ``col`` indexing ``n.v`` and
``row`` the roughness, texel centres at ``(i + 0.5) / size``, so that
``texture(lut, uv=(n.v, roughness), boundary_mode="clamp")`` looks it up.
"""

from __future__ import annotations

import functools
import math
from typing import Union

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.atomic import atomic_path
from dmtrec.core.cache import cache_dir

from .bsdf import ggx_alpha_sq, masking_smith_ggx_correlated

LUT_SIZE = 128  # bilinear lookups of the smooth table are within 1e-4 of a 256 table on average
# Quadrature nodes; against a 1024 x 256 reference the table is within 0.25 % everywhere (worst at
# grazing n.v with low roughness, where the n.l > 0 cut-off is hardest to resolve).
_CDF_NODES = 128  # Gauss-Legendre nodes in the GGX cumulative distribution of the half-vector angle
_AZIMUTH_NODES = 16  # midpoint nodes over [0, pi]; the integrand is symmetric in azimuth
_VERSION = 1  # bump when the integrand or quadrature changes: old cache files are then ignored


def integrate_dfg(
    n_dot_v: Tensor, roughness: Tensor, cdf_nodes: int = _CDF_NODES, azimuth_nodes: int = _AZIMUTH_NODES
) -> Tensor:
    """Quadrature of ``(A, B)`` for every pair of ``n_dot_v [N]`` and ``roughness [N]`` -> ``[N, 2]``.

    Works in the dtype of the inputs.
    """
    dtype, device = n_dot_v.dtype, n_dot_v.device
    x, w = np.polynomial.legendre.leggauss(cdf_nodes)
    u = torch.as_tensor((x + 1.0) / 2.0, dtype=dtype, device=device)
    u_weight = torch.as_tensor(w / 2.0, dtype=dtype, device=device)
    phi = (torch.arange(azimuth_nodes, dtype=dtype, device=device) + 0.5) * (math.pi / azimuth_nodes)
    weight = (u_weight[:, None] / azimuth_nodes).expand(cdf_nodes, azimuth_nodes).reshape(1, -1)
    u = u[:, None].expand(cdf_nodes, azimuth_nodes).reshape(1, -1)
    phi = phi[None, :].expand(cdf_nodes, azimuth_nodes).reshape(1, -1)

    nv = n_dot_v.reshape(-1, 1)
    alpha_sq = ggx_alpha_sq(roughness.reshape(-1, 1))
    # Half vector with density D(h)(n.h): cos^2(theta_h) = (1 - u) / (1 + (alpha^2 - 1) u).
    cos_h = torch.sqrt((1.0 - u) / (1.0 + (alpha_sq - 1.0) * u))
    sin_h = torch.sqrt((1.0 - cos_h * cos_h).clamp_min(0.0))
    # n = +z, v in the xz plane.
    v_dot_h = torch.sqrt(1.0 - nv * nv) * sin_h * torch.cos(phi) + nv * cos_h
    n_dot_l = 2.0 * v_dot_h * cos_h - nv
    g = masking_smith_ggx_correlated(alpha_sq, n_dot_l, nv)
    g_vis = torch.where(n_dot_l > 0, g * v_dot_h / (cos_h * nv), torch.zeros_like(g))
    fc = (1.0 - v_dot_h.clamp(0.0, 1.0)) ** 5
    a = ((1.0 - fc) * g_vis * weight).sum(-1)
    b = (fc * g_vis * weight).sum(-1)
    return torch.stack([a, b], -1)


def compute_dfg_lut(size: int = LUT_SIZE) -> np.ndarray:
    """The table ``[size, size, 2]`` float32 (rows: roughness, columns: n.v); a few seconds on 2 cores."""
    # float32 is accurate to ~1e-6 here and an order of magnitude faster than float64 on CPUs.
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    rows = [integrate_dfg(centres, torch.full_like(centres, r)) for r in centres.tolist()]
    return torch.stack(rows, 0).numpy()


def _cached_table(size: int) -> np.ndarray:
    path = cache_dir() / f"dfg_lut_{size}_v{_VERSION}.npy"
    if path.is_file():
        try:
            table = np.load(path)
            if table.shape == (size, size, 2) and np.isfinite(table).all():
                return table
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed and replaced
    table = compute_dfg_lut(size)
    try:
        with atomic_path(path) as tmp:
            np.save(tmp, table)
    except OSError:
        pass  # a read-only cache only costs the recomputation next time
    return table


@functools.lru_cache(maxsize=None)
def _lut_on(size: int, device: str) -> Tensor:
    return torch.from_numpy(_cached_table(size)).to(device)[None].contiguous()


def dfg_lut(device: Union[str, torch.device] = "cpu", size: int = LUT_SIZE) -> Tensor:
    """The DFG table as a texture ``[1, size, size, 2]`` float32 on ``device`` (cached)."""
    return _lut_on(size, str(torch.device(device)))
