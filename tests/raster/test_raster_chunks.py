"""The torch backend's custom autograd Functions (texture sampling, footprint level of detail,
interpolate) process samples in chunks of ``torch_common.CHUNK``: here with chunks of a few
samples, so that every chunk boundary case runs, against finite differences, independent float64
formulas and the unchunked results; and the texture sampler's shared sample for empty pixels."""

import pytest
import torch
from test_texture import random_inputs
from torch.autograd import gradcheck

import dmtrec.render.raster.torch_interpolate as torch_interpolate
import dmtrec.render.raster.torch_texture as torch_texture
import dmtrec.render.raster.torch_texture_mip as torch_texture_mip
import dmtrec.render.raster.torch_texture_taps as torch_texture_taps
from dmtrec.render.raster.torch_texture import texture
from dmtrec.render.raster.torch_texture_mip import footprint_lod

F64 = torch.float64
CHUNKED_MODULES = (torch_texture_taps, torch_texture_mip, torch_interpolate)


@pytest.fixture
def tiny_chunks(monkeypatch):
    for module in CHUNKED_MODULES:
        monkeypatch.setattr(module, "CHUNK", 5)


@pytest.mark.parametrize("boundary_mode, quads", [("wrap", False), ("wrap", True), ("clamp", False), ("zero", False)])
def test_texture_in_small_chunks_matches_finite_differences_and_whole(boundary_mode, quads, monkeypatch):
    # 2 x 2 x 3 samples per texture batch entry: chunks of 5 split them unevenly.
    tex, uv, uv_da, bias = random_inputs(False, seed=11, tex_batch=2, size=4, channels=3)
    for t in (tex, uv, uv_da, bias):
        t.requires_grad_()
    monkeypatch.setattr(torch_texture, "QUAD_MIN_READS", 0 if quads else 10**9)

    def fn(tex, uv, uv_da, bias):
        return texture(tex, uv, uv_da, bias, filter_mode="linear-mipmap-linear", boundary_mode=boundary_mode)

    whole = fn(tex, uv, uv_da, bias)
    grads = torch.autograd.grad(whole.pow(2).sum(), (tex, uv, uv_da, bias))
    for module in CHUNKED_MODULES:
        monkeypatch.setattr(module, "CHUNK", 5)
    chunked = fn(tex, uv, uv_da, bias)
    assert torch.equal(chunked, whole)
    for got, want in zip(torch.autograd.grad(chunked.pow(2).sum(), (tex, uv, uv_da, bias)), grads):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert gradcheck(fn, (tex, uv, uv_da, bias), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_footprint_lod_and_its_gradient_equal_the_largest_singular_value(tiny_chunks):
    gen = torch.Generator().manual_seed(3)
    footprint = torch.randn(23, 4, generator=gen, dtype=F64, requires_grad=True)
    texels = (8.0, 4.0)
    lod = footprint_lod(footprint, texels=texels)
    # Independent: log2 of the Jacobian's largest singular value, through torch.linalg.
    scaled = footprint * torch.tensor([texels[0], texels[0], texels[1], texels[1]], dtype=F64)
    expected = torch.log2(torch.linalg.svdvals(scaled.view(-1, 2, 2))[:, 0])
    assert torch.allclose(lod, expected, atol=1e-12)
    weights = torch.randn(23, generator=gen, dtype=F64)
    got = torch.autograd.grad((lod * weights).sum(), footprint)[0]
    want = torch.autograd.grad((expected * weights).sum(), footprint)[0]
    assert torch.allclose(got, want, atol=1e-10)


def test_footprint_lod_gradient_is_zero_at_isotropic_and_empty_footprints(tiny_chunks):
    footprint = torch.tensor([[0.5, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.25]], dtype=F64)
    footprint.requires_grad_()
    lod = footprint_lod(footprint)
    assert lod[1] == -torch.inf and torch.allclose(lod[[0, 2]], torch.tensor([-1.0, -1.0], dtype=F64))
    lod[[0, 2]].sum().backward()
    assert torch.all(footprint.grad[:2] == 0) and footprint.grad[2].abs().sum() > 0


def test_interpolate_in_small_chunks_equals_the_barycentric_formula(tiny_chunks):
    gen = torch.Generator().manual_seed(4)
    batch, height, width, num_verts = 2, 3, 4, 6
    tri = torch.tensor([[0, 1, 2], [3, 4, 5], [1, 3, 5]], dtype=torch.int32)
    # Random barycentrics and ids (0 = empty, 1..3 triangles, 4 out of range = empty as well).
    ids = torch.randint(0, 5, (batch, height, width), generator=gen)
    bary = torch.rand(batch, height, width, 2, generator=gen, dtype=F64)
    rast = torch.cat([bary, torch.zeros_like(bary[..., :1]), ids.unsqueeze(-1).to(F64)], -1)
    rast_db = torch.randn(batch, height, width, 4, generator=gen, dtype=F64)
    attr = torch.randn(batch, num_verts, 3, generator=gen, dtype=F64)
    diff_attrs = [2, 0, 2]  # repeated on purpose

    out, out_da = torch_interpolate.interpolate(attr, rast, tri, rast_db, diff_attrs)
    # Independent: the formula, pixel by pixel.
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                i = int(ids[b, y, x])
                if not 1 <= i <= 3:
                    assert torch.all(out[b, y, x] == 0) and torch.all(out_da[b, y, x] == 0)
                    continue
                a0, a1, a2 = attr[b, tri[i - 1].long()]
                u, v = bary[b, y, x]
                assert torch.allclose(out[b, y, x], u * a0 + v * a1 + (1 - u - v) * a2)
                db = rast_db[b, y, x]
                for j, k in enumerate(diff_attrs):
                    du, dv = a0[k] - a2[k], a1[k] - a2[k]
                    want = torch.stack([db[0] * du + db[2] * dv, db[1] * du + db[3] * dv])
                    assert torch.allclose(out_da[b, y, x, 2 * j : 2 * j + 2], want)

    uv = rast[..., :2].clone().requires_grad_()
    attr.requires_grad_()
    rast_db.requires_grad_()
    fixed = rast[..., 2:]

    def fn(attr, uv, rast_db):
        return torch_interpolate.interpolate(attr, torch.cat([uv, fixed], -1), tri, rast_db, diff_attrs)

    assert gradcheck(fn, (attr, uv, rast_db), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("filter_mode", ["linear", "linear-mipmap-linear"])
def test_samples_at_uv_origin_share_one_computation_with_per_sample_gradients(filter_mode, monkeypatch):
    # Empty pixels (uv 0, footprint 0) among others: computed once, with every sample's own gradient.
    tex, uv, uv_da, _ = random_inputs(False, seed=12, batch=3, size=4, channels=3)
    empty = torch.rand(uv.shape[:3], generator=torch.Generator().manual_seed(2)) < 0.6
    uv = torch.where(empty[..., None], 0.0, uv).requires_grad_()
    uv_da = torch.where(empty[..., None], 0.0, uv_da).requires_grad_()
    tex.requires_grad_()

    mipmapped = "mipmap" in filter_mode
    inputs = (tex, uv, uv_da) if mipmapped else (tex, uv)

    def fn(tex, uv, uv_da=None):
        return texture(tex, uv, uv_da, filter_mode=filter_mode)

    weights = torch.randn(uv.shape[:3] + (3,), generator=torch.Generator().manual_seed(5), dtype=F64)
    monkeypatch.setattr(torch_texture_taps, "SHARED_MIN", 10**9)
    alone = fn(*inputs)
    grads = torch.autograd.grad((alone * weights).sum(), inputs)
    calls = []
    original = torch_texture_taps._Sample2D.apply
    monkeypatch.setattr(torch_texture_taps, "SHARED_MIN", 1)
    monkeypatch.setattr(torch_texture_taps._Sample2D, "apply", lambda *a: calls.append(a[-1]) or original(*a))
    shared = fn(*inputs)
    assert calls and calls[0] is not None and int(calls[0].sum()) == int(empty.sum())  # the shared path ran
    assert torch.equal(shared, alone)
    for got, want in zip(torch.autograd.grad((shared * weights).sum(), inputs), grads):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
