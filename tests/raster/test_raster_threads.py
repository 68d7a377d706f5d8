"""The raster chain's pieces on several threads (torch_parallel, issue 28) give exactly what one
thread computes: rasterize, interpolate, texture and antialias, forward and backward, with the
pieces run in parallel against the same code with every piece in the calling thread, both
under two torch threads (torch's own ops then do the same thing in both runs)."""

import pytest
import torch

from dmtrec.render.raster import torch_parallel
from dmtrec.render.raster.torch_backend import TorchRasterizer


def _scene(batch=3, res=96, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # A grid of 24 x 24 quads, bent, seen slightly differently by each view.
    n = 24
    ys, xs = torch.meshgrid(torch.linspace(-0.9, 0.9, n + 1), torch.linspace(-0.9, 0.9, n + 1), indexing="ij")
    z = 0.2 * torch.sin(3 * xs) * torch.cos(2 * ys)
    verts = torch.stack([xs, ys, z, torch.ones_like(z)], -1).reshape(-1, 4)
    idx = torch.arange((n + 1) * (n + 1)).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tri = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)]).int()
    pos = verts.expand(batch, -1, -1).clone()
    pos[..., :2] *= 1.0 + 0.1 * torch.arange(batch).view(-1, 1, 1)
    pos[..., 2] = pos[..., 2] * 0.5
    pos[..., 3] = pos[..., 3] + 0.05 * torch.rand(batch, pos.shape[1], generator=generator)
    uv = (verts[:, :2] + 1.0) * 0.5
    tex = torch.rand(1, 32, 32, 4, generator=generator)
    weights = torch.rand(batch, res, res, 4, generator=generator)
    return pos, tri, uv, tex, weights, (res, res)


def _chain(pos, tri, uv, tex, weights, resolution):
    r = TorchRasterizer()
    p, t, a = pos.clone().requires_grad_(), tex.clone().requires_grad_(), uv.clone().requires_grad_()
    rast, rast_db = r.rasterize(p, tri, resolution)
    tc, tc_da = r.interpolate(a, rast, tri, rast_db, diff_attrs="all")
    color = r.texture(t, tc, tc_da, filter_mode="linear-mipmap-linear")
    out = r.antialias(color, rast, p, tri)
    loss = (out * weights).sum() + (tc_da * weights).sum()
    grads = torch.autograd.grad(loss, (p, t, a))
    return [rast, rast_db, tc, tc_da, color, out, *grads]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_parallel_pieces_equal_one_thread_bitwise(two_threads, monkeypatch):
    scene = _scene()
    calls = []
    original = torch_parallel.parallel_map

    def counting(fn, items, parallel=True):
        calls.append(len(items) if parallel else 1)
        return original(fn, items, parallel)

    monkeypatch.setattr(torch_parallel, "parallel_map", counting)
    together = _chain(*scene)
    assert max(calls) >= 2  # some pieces did run on both threads
    monkeypatch.setattr(torch_parallel, "threads", lambda: 1)
    alone = _chain(*scene)
    for got, want in zip(together, alone):
        assert torch.equal(got, want)


def test_split_covers_the_range_in_order():
    assert torch_parallel.split(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert torch_parallel.split(10, 3, minimum=4) == [(0, 5), (5, 10)]
    assert torch_parallel.split(3, 4, minimum=4) == [(0, 3)]
    assert torch_parallel.split(0, 2) == []


def test_pool_threads_run_single_threaded_and_keep_the_callers_count(two_threads):
    counts = torch_parallel.parallel_map(lambda _: torch.get_num_threads(), range(4))
    assert counts == [1, 1, 1, 1]
    assert torch.get_num_threads() == 2
    # Grad mode follows the caller into the pool.
    x = torch.ones(2, requires_grad=True)
    with torch.no_grad():
        assert torch_parallel.parallel_map(lambda _: (x * 2).requires_grad, range(2)) == [False, False]
    assert torch_parallel.parallel_map(lambda _: (x * 2).requires_grad, range(2)) == [True, True]
