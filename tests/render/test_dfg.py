"""The split-sum DFG table against an independent Monte-Carlo estimate, and its file cache."""

import math

import numpy as np
import pytest
import torch

from dmtrec.render import dfg
from dmtrec.render.bsdf import ggx_alpha_sq, ggx_specular, ndf_ggx


def _monte_carlo(n_dot_v: float, roughness: float, samples: int, generator: torch.Generator):
    """(A, B) by one-sample MIS of cosine-weighted and GGX-NDF sampling of the light direction,
    evaluating the point-light BRDF directly (pseudo-random, unlike the table's quadrature)."""
    f64 = torch.float64
    u = torch.rand(samples, 3, generator=generator, dtype=f64)
    alpha_sq = ggx_alpha_sq(torch.tensor(roughness, dtype=f64))
    v = torch.tensor([math.sqrt(1.0 - n_dot_v**2), 0.0, n_dot_v], dtype=f64)
    phi = 2.0 * math.pi * u[:, 1]
    # Strategy 1: cosine-weighted l.
    r = torch.sqrt(u[:, 0])
    l_cos = torch.stack([r * torch.cos(phi), r * torch.sin(phi), torch.sqrt(1.0 - u[:, 0])], -1)
    # Strategy 2: h from D(h)(n.h), l = reflect(v, h).
    cos_h = torch.sqrt((1.0 - u[:, 0]) / (1.0 + (alpha_sq - 1.0) * u[:, 0]))
    sin_h = torch.sqrt(1.0 - cos_h**2)
    h = torch.stack([sin_h * torch.cos(phi), sin_h * torch.sin(phi), cos_h], -1)
    l_ggx = 2.0 * (h @ v)[:, None] * h - v
    l = torch.where((u[:, 2] < 0.5)[:, None], l_cos, l_ggx)
    n = torch.tensor([0.0, 0.0, 1.0], dtype=f64).expand(samples, 3)
    half = torch.nn.functional.normalize(l + v, dim=-1)
    v_dot_h = (half @ v).clamp_min(1e-12)
    pdf = 0.5 * l[:, 2].clamp_min(0.0) / math.pi + 0.5 * ndf_ggx(alpha_sq, half[:, 2]) * half[:, 2] / (4.0 * v_dot_h)
    f0 = torch.tensor([0.0, 1.0], dtype=f64).expand(samples, 2)
    value = ggx_specular(f0, n, v.expand(samples, 3), l, torch.full((samples, 1), roughness, dtype=f64))
    estimate = torch.where(l[:, 2:3] > 0, value / pdf[:, None].clamp_min(1e-300), torch.zeros_like(value)).mean(0)
    b, albedo = estimate.tolist()
    return albedo - b, b


def test_table_matches_monte_carlo_within_one_percent():
    lut = dfg.dfg_lut("cpu")[0].double()
    size = lut.shape[0]
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for col in (6, 38, 115):  # n.v from ~0.05 to ~0.9
        for row in (10, 50, 127):  # roughness from ~0.08 to 1
            n_dot_v, roughness = (col + 0.5) / size, (row + 0.5) / size
            a_mc, b_mc = _monte_carlo(n_dot_v, roughness, 100_000, g)
            a, b = lut[row, col].tolist()
            error = max(abs(a - a_mc), abs(b - b_mc)) / (a_mc + b_mc)
            worst = max(worst, error)
            assert error < 0.01, (n_dot_v, roughness, (a, b), (a_mc, b_mc))
    print(f"worst DFG deviation from Monte Carlo: {100 * worst:.3f} % of the directional albedo")


def test_table_layout_and_limits():
    lut = dfg.dfg_lut("cpu")
    assert lut.shape == (1, dfg.LUT_SIZE, dfg.LUT_SIZE, 2) and lut.dtype == torch.float32
    a, b = lut[0, ..., 0], lut[0, ..., 1]
    assert (a >= 0).all() and (b >= 0).all() and ((a + b) <= 1.0 + 1e-4).all()
    # Smooth surfaces seen head-on reflect all energy (A -> 1, B -> 0); Fresnel (B) grows at grazing angles.
    assert a[0, -1].item() == pytest.approx(1.0, abs=2e-3) and b[0, -1].item() < 1e-3
    assert b[0, 0] > 0.5


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("DMTREC_CACHE", str(tmp_path))
    table = dfg._cached_table(8)
    files = list(tmp_path.glob("dfg_lut_8_*.npy"))
    assert len(files) == 1 and not list(tmp_path.glob(".*tmp*"))
    np.testing.assert_array_equal(np.load(files[0]), table)

    def fail(size):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(dfg, "compute_dfg_lut", fail)
    np.testing.assert_array_equal(dfg._cached_table(8), table)


def test_damaged_cache_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("DMTREC_CACHE", str(tmp_path))
    path = tmp_path / f"dfg_lut_8_v{dfg._VERSION}.npy"
    path.write_bytes(b"not a numpy file")
    table = dfg._cached_table(8)
    assert table.shape == (8, 8, 2)
    np.testing.assert_array_equal(np.load(path), table)
