"""Hash-grid encoding: layout, interpolation, hashing, gradients."""

import pytest
import torch

from dmtrec.render import hashgrid
from dmtrec.render.hashgrid import HashGridEncoding


def test_levels_and_table_layout():
    enc = HashGridEncoding(
        n_levels=4, features_per_level=3, log2_table_size=10, base_resolution=4, finest_resolution=32
    )
    assert enc.resolutions == [4, 8, 16, 32]
    # Dense while (N + 1)^3 fits in T = 1024: 125 and 729 entries; then hashed into 1024.
    assert enc.offsets == [0, 125, 854, 1878, 2902]
    assert enc.table.shape == (2902, 3) and enc.output_dim == 12
    out = enc(torch.rand(50, 3))
    assert out.shape == (50, 12)


def test_trilinear_interpolation_of_a_dense_level():
    enc = HashGridEncoding(n_levels=1, features_per_level=1, log2_table_size=12, base_resolution=2, finest_resolution=2)
    with torch.no_grad():
        # Table entry = x + 3 y + 9 z at vertex (x, y, z) of the 3^3 lattice: a linear function,
        # which trilinear interpolation reproduces exactly.
        enc.table.copy_(torch.arange(27, dtype=torch.float32)[:, None])
    p = torch.rand(100, 3)
    expected = (p * 2) @ torch.tensor([1.0, 3.0, 9.0])
    torch.testing.assert_close(enc(p)[:, 0], expected, rtol=0, atol=1e-4)
    # Out-of-cube positions clamp to the boundary.
    torch.testing.assert_close(enc(torch.tensor([[1.5, -0.2, 0.5]])), enc(torch.tensor([[1.0, 0.0, 0.5]])))


def test_hashed_level_spreads_over_the_table():
    enc = HashGridEncoding(
        n_levels=1, features_per_level=1, log2_table_size=8, base_resolution=64, finest_resolution=64
    )
    centres = (torch.arange(16) + 0.5) / 64  # the cells [0, 16)^3 of the 64^3 level: 17^3 vertices
    points = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    index = enc._level_corners(0, points)[0]
    assert index.min() >= 0 and index.max() < 256
    counts = torch.bincount(index.reshape(-1), minlength=256)
    assert (counts > 0).float().mean() > 0.9  # 4913 vertices cover the 256 slots nearly uniformly


def test_gradients_reach_table_and_positions():
    torch.manual_seed(0)
    enc = HashGridEncoding(
        n_levels=3, features_per_level=2, log2_table_size=6, base_resolution=2, finest_resolution=9
    ).double()
    with torch.no_grad():
        enc.table.normal_()
    x = torch.rand(5, 3, dtype=torch.float64).requires_grad_()
    table = enc.table
    assert torch.autograd.gradcheck(lambda x: enc(x), (x,))
    weights = torch.randn(5, enc.output_dim, dtype=torch.float64)
    (enc(x) * weights).sum().backward()
    grad = table.grad.clone()
    touched = grad.abs().sum(-1).nonzero().squeeze(1)
    assert touched.numel() > 0
    for row in touched[:5].tolist():
        with torch.no_grad():
            table[row, 0] += 1e-6
            up = (enc(x) * weights).sum().item()
            table[row, 0] -= 2e-6
            down = (enc(x) * weights).sum().item()
            table[row, 0] += 1e-6
        assert (up - down) / 2e-6 == pytest.approx(grad[row, 0].item(), rel=1e-6, abs=1e-9)


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="base_resolution"):
        HashGridEncoding(base_resolution=64, finest_resolution=32)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        HashGridEncoding(n_levels=2, log2_table_size=8, base_resolution=2, finest_resolution=4)(torch.zeros(4, 2))


def _reference_encoding(enc: HashGridEncoding, table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The encoding as the module docstring defines it, level by level and corner by corner with
    plain autograd ops (gathers and products), independent of the fused lookup."""
    x = x.clamp(0.0, 1.0)
    out = []
    for level, res in enumerate(enc.resolutions):
        size = enc.offsets[level + 1] - enc.offsets[level]
        scaled = x * res
        cell = torch.floor(scaled.detach()).clamp(max=res - 1)
        frac = scaled - cell
        cell = cell.long()
        value = 0.0
        for corner in range(8):
            d = [(corner >> 2) & 1, (corner >> 1) & 1, corner & 1]
            c = [cell[:, axis] + d[axis] for axis in range(3)]
            if (res + 1) ** 3 <= enc.table_size:
                row = c[0] + (res + 1) * c[1] + (res + 1) ** 2 * c[2]
            else:
                row = ((c[0] * 1) ^ (c[1] * 2654435761) ^ (c[2] * 805459861)) % 2**32 % size
            weight = 1.0
            for axis in range(3):
                weight = weight * (frac[:, axis] if d[axis] else 1.0 - frac[:, axis])
            value = value + table[row + enc.offsets[level]] * weight[:, None]
        out.append(value)
    return torch.cat(out, -1)


@pytest.mark.parametrize("chunk", [None, 4 * 8 * 7], ids=["one-pass", "chunks-of-7-points"])
def test_fused_lookup_matches_the_per_level_reference_and_its_gradients(chunk, monkeypatch):
    if chunk is not None:  # large batches go through in chunks of points; the results must not change
        monkeypatch.setattr(hashgrid, "CHUNK_CORNERS", chunk)
    torch.manual_seed(1)
    # Levels 3, 6, 12, 24 cells: two dense ((N + 1)^3 <= 512), two hashed.
    enc = HashGridEncoding(
        n_levels=4, features_per_level=3, log2_table_size=9, base_resolution=3, finest_resolution=24
    ).double()
    assert [(r + 1) ** 3 <= enc.table_size for r in enc.resolutions] == [True, True, False, False]
    with torch.no_grad():
        enc.table.normal_()
    x = torch.rand(300, 3, dtype=torch.float64) * 1.2 - 0.1  # some points outside the cube (clamped)
    x[:3] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 1.0, 0.0]], dtype=torch.float64)
    weights = torch.randn(300, enc.output_dim, dtype=torch.float64)

    x_ref = x.clone().requires_grad_()
    table_ref = enc.table.detach().clone().requires_grad_()
    ref = _reference_encoding(enc, table_ref, x_ref)
    (ref * weights).sum().backward()

    x_new = x.clone().requires_grad_()
    out = enc(x_new)
    (out * weights).sum().backward()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(enc.table.grad, table_ref.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(x_new.grad, x_ref.grad, rtol=0, atol=1e-10)


def test_table_gradient_passes_gradcheck():
    torch.manual_seed(2)
    enc = HashGridEncoding(
        n_levels=3, features_per_level=2, log2_table_size=6, base_resolution=2, finest_resolution=9
    ).double()
    x = torch.rand(7, 3, dtype=torch.float64).requires_grad_()
    table = torch.randn_like(enc.table).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, p: torch.func.functional_call(enc, {"table": t}, (p,)), (table, x))


def test_no_points_give_an_empty_encoding_and_zero_gradients():
    enc = HashGridEncoding(n_levels=3, log2_table_size=6, base_resolution=2, finest_resolution=9)
    x = torch.zeros(0, 3, requires_grad=True)
    out = enc(x)
    assert out.shape == (0, enc.output_dim)
    out.sum().backward()
    assert x.grad.shape == (0, 3) and not enc.table.grad.any()
