"""The nvdiffrast backend's own code on the CPU, against a stub ``nvdiffrast.torch`` that checks
every call against nvdiffrast's documented contract (tests/nvdiffrast_stub.py cites it: inputs
contiguous and on the context's device, pos float32 ``[B, V, 4]`` aligned to float4, tri int32
``[>0, 3]``, resolution two ints, ``grad_db``/``cube_mode`` real bools, ``interpolate``'s second
output an empty ``[B, H, W, 0]`` without ``diff_attrs``, texture shapes per filter and boundary
mode, mips from ``texture_construct_mip`` or a list, topology hashes from
``antialias_construct_topology_hash``) and computes with the torch backend.

What the real kernels compute is the GPU parity tests' business (tests/raster/test_gpu_parity*.py,
marked gpu); these tests check what dmtrec hands them and how it reads their answers.
"""

import logging

import numpy as np
import pytest
import torch
from nvdiffrast_stub import ContractError, install

from dmtrec.render.raster import select
from dmtrec.render.raster.nvdiffrast_backend import NvdiffrastRasterizer
from dmtrec.render.raster.torch_backend import TorchRasterizer


@pytest.fixture
def stub(monkeypatch):
    return install(monkeypatch)


@pytest.fixture
def fresh_status():
    """``select._nvdiffrast_status`` is cached per process: clear it around a test that fakes CUDA."""
    select._nvdiffrast_status.cache_clear()
    yield
    select._nvdiffrast_status.cache_clear()


def _scene():
    """Two triangles over part of a 12 x 16 image, ``pos [V, 4]`` and ``tri [F, 3]`` handed over
    non-contiguous (strided views), as slices of bigger tensors are."""
    torch.manual_seed(0)
    xy = torch.tensor([[-0.8, -0.7], [0.7, -0.6], [0.1, 0.8], [0.9, 0.9]])
    pos = torch.zeros(4, 8)
    pos[:, 0:8:2] = torch.cat([xy, torch.rand(4, 1) * 0.5, torch.ones(4, 1)], 1)
    pos = pos[:, 0:8:2]  # [4, 4], strides (8, 2)
    tri = torch.tensor([[0, 1], [1, 3], [2, 2]], dtype=torch.int32).t()  # [2, 3], transposed
    assert not pos.is_contiguous() and not tri.is_contiguous()
    return pos, tri


def test_the_context_is_made_once_on_first_use_on_the_backends_device(stub):
    r = NvdiffrastRasterizer("cuda:1")
    assert stub.contexts == []  # construction touches no CUDA
    r.construct_topology_hash(torch.tensor([[0, 1, 2]], dtype=torch.int32))
    assert stub.contexts == []  # only rasterize needs a context
    context = r.context
    assert r.context is context and stub.contexts == [context]
    assert context.device == torch.device("cuda:1")
    assert NvdiffrastRasterizer().context.device == torch.device("cuda")  # the default device


def test_rasterize_interpolate_antialias_hand_nvdiffrast_what_it_requires(stub):
    """Strided ``pos [V, 4]`` and ``tri``, resolution as numpy ints, ``grad_db=1``: the backend
    must hand over contiguous ``[1, V, 4]``, python ints and a real bool (the stub raises
    otherwise), and give the torch backend's values and gradients back."""
    pos, tri = _scene()
    r, t = NvdiffrastRasterizer("cpu"), TorchRasterizer("cpu")
    pos_n, pos_t = pos.clone().requires_grad_(), pos.clone().requires_grad_()
    resolution = (np.int64(12), np.int64(16))

    outs = []
    for backend, p in ((r, pos_n), (t, pos_t)):
        rast, rast_db = backend.rasterize(p, tri, resolution, grad_db=1)
        attr = torch.arange(12.0).reshape(3, 4).t()[:, :2]  # [V, 2], strided
        plain, none = backend.interpolate(attr, rast, tri)
        uv, uv_da = backend.interpolate(attr, rast, tri, rast_db=rast_db, diff_attrs=(1,))
        colour = (plain.sum(-1, keepdim=True) * uv_da[..., :1]).expand(-1, -1, -1, 3)  # expanded: strides 0
        aa = backend.antialias(
            colour, rast, p, tri, topology_hash=backend.construct_topology_hash(tri), pos_gradient_boost=2
        )
        (aa.sum() + rast[..., :2].sum() + uv.sum()).backward()
        outs.append((rast, rast_db, plain, none, uv, uv_da, aa))
    assert stub.ops() == ["rasterize", "interpolate", "interpolate", "antialias_construct_topology_hash", "antialias"]
    assert stub.details("rasterize") == [dict(batch=1, resolution=(12, 16), grad_db=True)]
    assert stub.details("interpolate")[1]["diff_attrs"] == [1]
    assert stub.details("antialias") == [dict(topology_hash=True, pos_gradient_boost=2.0)]
    assert outs[0][3] is None  # nvdiffrast's empty [B, H, W, 0] becomes None, as in the torch backend
    assert outs[0][0][..., 3].gt(0).sum() > 20  # the triangles cover pixels: the comparison means something
    for a, b in zip(outs[0], outs[1]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert pos_t.grad.abs().sum() > 0 and torch.equal(pos_n.grad, pos_t.grad)


def test_zero_triangles_never_reach_nvdiffrast(stub):
    """nvdiffrast refuses ``tri`` of shape [0, 3] ("tri must have shape [>0, 3]"); the backend
    answers empty outputs itself, still differentiable in pos, attr and colour."""
    r = NvdiffrastRasterizer("cpu")
    pos = torch.rand(2, 3, 4, requires_grad=True)
    tri = torch.zeros(0, 3, dtype=torch.int32)
    rast, rast_db = r.rasterize(pos, tri, (4, 8))
    attr = torch.rand(3, 2, requires_grad=True)
    out, da = r.interpolate(attr, rast, tri, rast_db=rast_db, diff_attrs="all")
    colour = torch.rand(2, 4, 8, 3, requires_grad=True)
    aa = r.antialias(colour, rast, pos, tri)
    assert r.construct_topology_hash(tri) is None
    assert stub.ops() == [] and stub.contexts == []
    assert rast.shape == rast_db.shape == (2, 4, 8, 4) and not rast.any()
    assert out.shape == (2, 4, 8, 2) and da.shape == (2, 4, 8, 4) and not out.any()
    assert torch.equal(aa, colour)
    (rast.sum() + out.sum() + aa.sum()).backward()
    assert torch.equal(pos.grad, torch.zeros_like(pos)) and torch.equal(attr.grad, torch.zeros_like(attr))


def test_texture_arguments_reach_nvdiffrast_contiguous(stub):
    """Strided ``uv``, ``uv_da``, ``mip_level_bias`` and a tuple of strided custom mip levels:
    nvdiffrast checks every input contiguous and wants the custom stack as a list."""
    torch.manual_seed(1)
    r, t = NvdiffrastRasterizer("cpu"), TorchRasterizer("cpu")
    tex = torch.rand(1, 8, 8, 4)
    uv = torch.rand(1, 2, 5, 3)[..., :2]
    uv_da = (torch.rand(1, 2, 5, 8) * 0.3)[..., ::2]
    bias = torch.rand(1, 5, 2).transpose(1, 2)
    levels = tuple(torch.rand(1, s, s, 8)[..., :4] for s in (4, 2, 1))
    assert not any(x.is_contiguous() for x in (uv, uv_da, bias) + levels[:2])  # (the 1 x 1 level is contiguous anyway)
    kwargs = dict(uv_da=uv_da, mip_level_bias=bias, filter_mode="linear-mipmap-linear", boundary_mode="clamp")
    got = r.texture(tex, uv, mip=levels, **kwargs)
    expected = t.texture(tex, uv, mip=list(levels), **kwargs)
    assert torch.equal(got, expected)
    assert stub.details("texture") == [dict(filter_mode="linear-mipmap-linear", boundary_mode="clamp", mip="list")]


def test_cube_mips_from_construct_mip_and_its_mode(stub):
    """A cube map's pyramid built by the backend (``cube_mode`` passed as a real bool, whatever
    truthy value the caller gave), then sampled in cube mode with a per-pixel mip level."""
    torch.manual_seed(2)
    r, t = NvdiffrastRasterizer("cpu"), TorchRasterizer("cpu")
    cube = torch.rand(1, 6, 8, 8, 3)
    directions = torch.nn.functional.normalize(torch.randn(1, 3, 4, 3), dim=-1)
    bias = torch.rand(1, 3, 4) * 3
    mip = r.construct_mip(cube, max_mip_level=2, cube_mode=np.bool_(True))
    got = r.texture(
        cube, directions, mip=mip, mip_level_bias=bias, filter_mode="linear-mipmap-linear", boundary_mode="cube"
    )
    mip_t = t.construct_mip(cube, max_mip_level=2, cube_mode=True)
    expected = t.texture(
        cube, directions, mip=mip_t, mip_level_bias=bias, filter_mode="linear-mipmap-linear", boundary_mode="cube"
    )
    assert torch.equal(got, expected)
    assert stub.ops() == ["texture_construct_mip", "texture"]
    assert stub.details("texture_construct_mip") == [dict(cube_mode=True, max_mip_level=2)]
    # The stub holds nvdiffrast's rule that a pyramid belongs to one texture size and mode.
    with pytest.raises(ContractError, match="mip does not match texture size"):
        r.texture(cube[:, :, :4, :4].contiguous(), directions, mip=mip, mip_level_bias=bias, boundary_mode="cube")


def test_a_torch_topology_hash_is_refused_before_nvdiffrast(stub):
    pos, tri = _scene()
    r = NvdiffrastRasterizer("cpu")
    rast, _ = r.rasterize(pos, tri, (12, 16))
    torch_hash = TorchRasterizer().construct_topology_hash(tri.contiguous())
    with pytest.raises(ValueError, match="topology_hash comes from the torch backend"):
        r.antialias(torch.rand(1, 12, 16, 3), rast, pos, tri, topology_hash=torch_hash)
    assert stub.ops() == ["rasterize"]


def test_the_stub_refuses_what_nvdiffrast_refuses(stub):
    """The contract checks themselves can fail: a direct call with a strided pos, an int64 tri,
    a float resolution or a 2D texture in cube mode is refused (otherwise the tests above could
    not catch anything)."""
    pos, tri = _scene()
    context = stub.RasterizeCudaContext("cpu")
    with pytest.raises(ContractError, match="pos must be contiguous"):
        stub.rasterize(context, pos[None], tri.contiguous(), (4, 4))
    with pytest.raises(ContractError, match="tri must be torch.int32"):
        stub.rasterize(context, pos[None].contiguous(), tri.long().contiguous(), (4, 4))
    with pytest.raises(ContractError, match="resolution must be two ints"):
        stub.rasterize(context, pos[None].contiguous(), tri.contiguous(), (4.0, 4))
    with pytest.raises(ContractError, match="grad_db must be a bool"):
        stub.rasterize(context, pos[None].contiguous(), tri.contiguous(), (4, 4), grad_db=1)
    with pytest.raises(ContractError, match="tex must have 5 dimensions"):
        stub.texture(torch.rand(1, 4, 4, 3), torch.rand(1, 2, 2, 3), boundary_mode="cube")
    offset = torch.rand(1 + 16)[1:].reshape(1, 2, 2, 4)  # contiguous, but 4 bytes into its storage
    with pytest.raises(ContractError, match="uv_da input tensor not aligned to float4"):
        stub.texture(torch.rand(1, 4, 4, 3), torch.rand(1, 2, 2, 2), uv_da=offset)


@pytest.mark.usefixtures("fresh_status")
def test_selection_when_cuda_and_nvdiffrast_work(stub, monkeypatch):
    """``get_rasterizer`` on a machine with CUDA and a working nvdiffrast plugin (both faked):
    auto picks nvdiffrast on CUDA devices (and CUDA is the default device), torch on the CPU;
    nvdiffrast on a CPU device is refused."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select.nvdiffrast_available()
    picked = select.get_rasterizer("auto", "cuda:0")
    assert isinstance(picked, NvdiffrastRasterizer) and picked.device == torch.device("cuda:0")
    assert select.get_rasterizer().device == torch.device("cuda")
    assert isinstance(select.get_rasterizer("auto", "cpu"), TorchRasterizer)
    with pytest.raises(ValueError, match="'nvdiffrast' needs a CUDA device, got cpu"):
        select.get_rasterizer("nvdiffrast", "cpu")
    assert stub.contexts == []  # choosing a backend makes no CUDA context


@pytest.mark.usefixtures("fresh_status")
def test_selection_when_the_plugin_does_not_build(stub, monkeypatch, caplog):
    """CUDA present, nvdiffrast imports, its plugin fails to compile: auto falls back to the
    torch backend on the CUDA device and logs why; asking for nvdiffrast names the failure."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    stub.plugin_error = OSError("nvcc not found")
    with caplog.at_level(logging.INFO, logger=select.__name__):
        picked = select.get_rasterizer("auto", "cuda")
    assert isinstance(picked, TorchRasterizer) and picked.device == torch.device("cuda")
    assert "plugin does not build or load (OSError: nvcc not found)" in caplog.text
    with pytest.raises(RuntimeError, match="unavailable: nvdiffrast's CUDA plugin does not build or load"):
        select.get_rasterizer("nvdiffrast", "cuda")


@pytest.mark.usefixtures("fresh_status")
def test_selection_when_nvdiffrast_does_not_import(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(__import__("sys").modules, "nvdiffrast", None)
    assert select._nvdiffrast_status().startswith("nvdiffrast does not import (ModuleNotFoundError")
    assert isinstance(select.get_rasterizer("auto", "cuda"), TorchRasterizer)
