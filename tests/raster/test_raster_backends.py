"""Backend selection and the parts of both backends that need no GPU."""

import sys
import types

import pytest
import torch

from dmtrec.render.raster import get_rasterizer, nvdiffrast_available
from dmtrec.render.raster.nvdiffrast_backend import NvdiffrastRasterizer
from dmtrec.render.raster.torch_backend import TorchRasterizer


def test_torch_backend_is_chosen_on_cpu():
    for backend in ("torch", "auto"):
        r = get_rasterizer(backend, "cpu")
        assert isinstance(r, TorchRasterizer) and r.name == "torch" and r.device == torch.device("cpu")


def test_nvdiffrast_backend_constructs_without_nvdiffrast_or_cuda():
    r = NvdiffrastRasterizer("cuda:0")
    assert r.name == "nvdiffrast" and r.device == torch.device("cuda:0")
    assert r._context is None  # the CUDA context is made on first use, never in __init__


@pytest.mark.skipif(nvdiffrast_available(), reason="nvdiffrast works here")
def test_nvdiffrast_backend_without_nvdiffrast_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvdiffrast", None)  # import fails even where it is installed
    pos = torch.rand(1, 3, 4)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match=r"needs nvdiffrast: install it with `pip install dmtrec\[cuda\]`"):
        NvdiffrastRasterizer().rasterize(pos, tri, (4, 4))


def test_nvdiffrast_backend_checks_arguments_before_touching_nvdiffrast():
    r = NvdiffrastRasterizer()
    with pytest.raises(ValueError, match="pos must be a float32 tensor"):
        r.rasterize(torch.rand(1, 3, 4, dtype=torch.float64), torch.tensor([[0, 1, 2]], dtype=torch.int32), (4, 4))
    with pytest.raises(ValueError, match="tri must be an int32 tensor"):
        r.antialias(torch.rand(1, 4, 4, 3), torch.zeros(1, 4, 4, 4), torch.rand(1, 3, 4), torch.tensor([[0, 1, 2]]))


def test_torch_backend_delegates_texture_and_mips(monkeypatch):
    calls = {}
    fake = types.ModuleType("dmtrec.render.raster.torch_texture")
    fake.texture = lambda *args, **kwargs: calls.setdefault("texture", (args, kwargs))
    fake.construct_mip = lambda *args, **kwargs: calls.setdefault("construct_mip", (args, kwargs))
    monkeypatch.setitem(sys.modules, "dmtrec.render.raster.torch_texture", fake)
    r = TorchRasterizer()
    tex, uv = torch.rand(1, 4, 4, 3), torch.rand(1, 2, 2, 2)
    r.texture(tex, uv, filter_mode="linear", boundary_mode="clamp", max_mip_level=2)
    r.construct_mip(tex, max_mip_level=3, cube_mode=False)
    args, kwargs = calls["texture"]
    assert args[0] is tex and args[1] is uv
    assert kwargs == dict(
        uv_da=None, mip_level_bias=None, mip=None, filter_mode="linear", boundary_mode="clamp", max_mip_level=2
    )
    assert calls["construct_mip"] == ((tex,), dict(max_mip_level=3, cube_mode=False))
