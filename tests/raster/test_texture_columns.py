"""The texture op's channels-first pyramid (``mip_columns``, issue 28: one autograd node for a
2D texture's whole mip pyramid in pass 2) against the plain formulation it replaces:
``construct_mip`` + stacked rows + transpose, by autograd. Values and gradients must be equal
bit for bit (the quick start's outputs depend on it), including a texture read twice (kd and
its jittered twin), whose gradient terms must arrive in the same order."""

import pytest
import torch

from dmtrec.render.raster.torch_texture import _stack_levels, texture
from dmtrec.render.raster.torch_texture_mip import construct_mip, mip_columns, mip_level_shapes


def _plain_columns(tex, max_mip_level=None):
    levels = [tex] + construct_mip(tex, max_mip_level)
    return _stack_levels(levels)[0].t()


@pytest.mark.parametrize("shape", [(1, 16, 16, 3), (2, 8, 32, 4), (1, 16, 2, 1), (1, 2, 16, 2)])
def test_columns_equal_the_autograd_pyramid_bitwise(shape):
    generator = torch.Generator().manual_seed(0)
    tex = torch.rand(shape, generator=generator)
    upstream = None
    results = []
    for build in (_plain_columns, lambda t: mip_columns(t, mip_level_shapes(t.shape[1], t.shape[2]))):
        leaf = tex.clone().requires_grad_()
        columns = build(leaf)
        if upstream is None:
            upstream = torch.randn(columns.shape, generator=generator)
        (columns * upstream).sum().backward()
        results.append((columns.detach(), leaf.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def _lookups(tex, uv, uv_da, jitter, prebuilt):
    """kd-like: the texture read at uv and at a jittered uv (two pyramids), as TexturedMaterial does.
    ``prebuilt`` passes construct_mip's levels (the plain path) instead of letting the op build them."""
    outs = []
    for coords in (uv, uv + jitter):
        mip = construct_mip(tex) if prebuilt else None
        outs.append(texture(tex, coords, uv_da, mip=mip, filter_mode="linear-mipmap-linear", boundary_mode="wrap"))
    return outs


def test_texture_lookups_equal_the_plain_path_bitwise():
    generator = torch.Generator().manual_seed(1)
    tex = torch.rand(1, 32, 32, 3, generator=generator)
    uv = torch.rand(2, 9, 11, 2, generator=generator) * 3 - 1
    uv_da = torch.randn(2, 9, 11, 4, generator=generator) * 0.05
    jitter = torch.randn(2, 9, 11, 2, generator=generator) * 0.01
    weights = [torch.randn(2, 9, 11, 3, generator=generator) for _ in range(2)]
    results = []
    for prebuilt in (True, False):
        leaves = [t.clone().requires_grad_() for t in (tex, uv, uv_da)]
        outs = _lookups(*leaves, jitter, prebuilt)
        sum((o * w).sum() for o, w in zip(outs, weights)).backward()
        results.append([o.detach() for o in outs] + [leaf.grad for leaf in leaves])
    for plain, fast in zip(*results):
        assert torch.equal(plain, fast)
    # The pyramid's gradient terms come back channels-first; the texture's own is in its layout.
    assert results[1][2].is_contiguous()


def test_columns_path_is_taken_without_a_prebuilt_pyramid(monkeypatch):
    import dmtrec.render.raster.torch_texture as torch_texture

    calls = []
    monkeypatch.setattr(torch_texture, "mip_columns", lambda *a: calls.append(1) or mip_columns(*a))
    tex = torch.rand(1, 8, 8, 3, requires_grad=True)
    uv, uv_da = torch.rand(1, 4, 4, 2), torch.full((1, 4, 4, 4), 0.1)
    texture(tex, uv, uv_da, filter_mode="linear-mipmap-linear")
    assert calls == [1]
    texture(tex, uv, uv_da, mip=construct_mip(tex), filter_mode="linear-mipmap-linear")
    assert calls == [1]
