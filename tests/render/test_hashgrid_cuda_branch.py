"""The hash grid's CUDA-only branch, run on the CPU: off CPUs the lookup saves its corner rows
``[L, 8, N]`` for the backward pass as int32 instead of int64 (``hashgrid._narrow_rows``). The
tests force that decision on CPU tensors and compare with the int64 path, values and gradients,
in chunks and in one pass."""

import pytest
import torch
from torch import Tensor

from dmtrec.render import hashgrid
from dmtrec.render.hashgrid import HashGridEncoding


def _saved_integer_dtypes(enc: HashGridEncoding, x: Tensor) -> list:
    """Run ``enc(x)`` and return the dtypes of the integer tensors autograd saved for backward."""
    saved = []

    def pack(t):
        if not t.is_floating_point():
            saved.append((t.dtype, t.numel() * t.element_size()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        enc(x)
    return saved


def _lookup(enc: HashGridEncoding, x: Tensor, weights: Tensor):
    """Encoding ``[N, L * F]`` and the gradients of ``sum(encoding * weights)`` w.r.t. the
    table ``[T, F]`` and the points ``[N, 3]``."""
    enc.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out = enc(x)
    (out * weights).sum().backward()
    return out.detach(), enc.table.grad.clone(), x.grad.clone()


def test_the_decision_is_int32_off_cpus_while_rows_fit():
    assert not hashgrid._narrow_rows(torch.device("cpu"), 1 << 20)
    assert hashgrid._narrow_rows(torch.device("cuda", 0), 1 << 20)
    assert hashgrid._narrow_rows(torch.device("cuda"), (1 << 31) - 1)  # the largest int32 row index
    assert not hashgrid._narrow_rows(torch.device("cuda"), 1 << 31)  # row 2**31 would wrap negative


@pytest.mark.parametrize("chunk", [None, 4 * 8 * 7], ids=["one-pass", "chunks-of-7-points"])
def test_int32_rows_give_the_int64_paths_values_and_gradients(chunk, monkeypatch):
    """Same lookup, rows forced to int32 as on CUDA: the backward pass widens them again before
    its scatter, so every value and gradient must be bit-identical to the CPU (int64) path. A
    row that overflowed or lost its sign in the narrowing would move the table gradient to
    another row (or raise an index error)."""
    if chunk is not None:
        monkeypatch.setattr(hashgrid, "CHUNK_CORNERS", chunk)
    torch.manual_seed(3)
    # Levels of 3, 6, 12, 24 cells: dense and hashed levels, table rows up to 1734.
    enc = HashGridEncoding(n_levels=4, features_per_level=2, log2_table_size=9, base_resolution=3, finest_resolution=24)
    with torch.no_grad():
        enc.table.normal_()
    x = torch.rand(200, 3) * 1.2 - 0.1  # some points outside the unit cube (clamped)
    weights = torch.randn(200, enc.output_dim)

    wide = _saved_integer_dtypes(enc, x)
    reference = _lookup(enc, x, weights)
    monkeypatch.setattr(hashgrid, "_narrow_rows", lambda device, rows: True)
    narrow = _saved_integer_dtypes(enc, x)
    forced = _lookup(enc, x, weights)

    # The forcing reached the saved rows: int64 before, int32 (half the bytes) now.
    assert [d for d, _ in wide] == [torch.int64] and [d for d, _ in narrow] == [torch.int32]
    assert narrow[0][1] * 2 == wide[0][1]
    for name, a, b in zip(("encoding", "table grad", "position grad"), reference, forced):
        assert torch.equal(a, b), name
    assert reference[1].abs().sum() > 0 and reference[2].abs().sum() > 0  # the gradients compared are not all zero


def test_int32_rows_keep_the_table_gradient_of_the_largest_row(monkeypatch):
    """A point at the far corner of the finest level reads the table's last rows; with int32
    rows its gradient must still land there (one-hot weight: the table gradient is the
    trilinear weight of each corner, summing to 1 per level)."""
    monkeypatch.setattr(hashgrid, "_narrow_rows", lambda device, rows: True)
    enc = HashGridEncoding(n_levels=2, features_per_level=1, log2_table_size=6, base_resolution=2, finest_resolution=3)
    x = torch.tensor([[1.0, 1.0, 1.0]])  # the corner vertex (N, N, N): the last row of each dense level
    enc(x).sum().backward()
    grad = enc.table.grad[:, 0]
    # Dense levels of 3^3 and 4^3 vertices: rows 26 and 27 + 63 = 90 (the table's last row).
    assert enc.table.shape[0] == 27 + 64
    assert torch.equal(grad.nonzero().squeeze(1), torch.tensor([26, 90]))
    torch.testing.assert_close(grad[[26, 90]], torch.ones(2))
