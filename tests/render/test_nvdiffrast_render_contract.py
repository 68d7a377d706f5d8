"""The whole shading path (render_mesh: rasterize, interpolate with pixel derivatives, mip-mapped
material textures, the light's cube-map filtering and split-sum lookups, antialiasing) through
the nvdiffrast backend on the CPU, against the contract-checking stub of ``nvdiffrast.torch``
(tests/nvdiffrast_stub.py). Every tensor the renderer hands nvdiffrast on a GPU passes the
stub's checks here, or the test fails naming the op and the rule."""

import dataclasses

import pytest
import torch
from nvdiffrast_stub import install

from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.raster.nvdiffrast_backend import NvdiffrastRasterizer
from dmtrec.render.render_mesh import render_mesh


def _render(rasterizer, mesh, cameras, bsdf):
    """``render_mesh`` of a learnable textured material under a learnable light; returns the
    buffers and the gradients of a loss on them w.r.t. kd, ks, the light and the positions."""
    torch.manual_seed(4)
    kd = torch.rand(16, 16, 3) * 0.8 + 0.1
    ks = torch.stack([torch.zeros(16, 16), torch.rand(16, 16) * 0.8 + 0.1, torch.rand(16, 16)], -1)
    material = TexturedMaterial.from_tensors(kd, ks)
    light = EnvironmentLight.constant(0.6, base_res=32)
    with torch.no_grad():
        light.base.mul_(torch.rand_like(light.base) + 0.5)
    light.base.requires_grad_(True)
    v_pos = mesh.v_pos.detach().clone().requires_grad_()
    mesh = dataclasses.replace(mesh, v_pos=v_pos)
    out = render_mesh(mesh, material, light, cameras, rasterizer, bsdf=bsdf)
    loss = sum((value * (i + 1)).mean() for i, value in enumerate(out.values()))
    params = [p for p in material.parameters() if p.requires_grad] + [light.base, v_pos]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {k: v.detach() for k, v in out.items()}, grads


@pytest.mark.parametrize("bsdf", ["pbr", "diffuse", "kd"])
def test_render_mesh_through_nvdiffrast_meets_its_contract(bsdf, monkeypatch, rasterizer, sphere, make_camera):
    stub = install(monkeypatch)
    cameras = make_camera((24, 32), batch=2)
    expected, expected_grads = _render(rasterizer, sphere, cameras, bsdf)
    got, got_grads = _render(NvdiffrastRasterizer("cpu"), sphere, cameras, bsdf)

    ops = stub.ops()
    assert ops.count("rasterize") >= 1 and "antialias" in ops
    assert {"diff_attrs": [0, 1], "attr_dims": 2} in stub.details("interpolate")  # the UVs with derivatives
    modes = {(d["filter_mode"], d["boundary_mode"], d["mip"]) for d in stub.details("texture")}
    assert ("linear-mipmap-linear", "wrap", "NoneType") in modes  # material textures, pyramid built inside
    if bsdf == "pbr":
        assert ("linear-mipmap-linear", "cube", "list") in modes  # the specular lookup with its custom mips
        assert ("linear", "clamp", "NoneType") in modes  # the split-sum table
    if bsdf != "kd":
        assert ("linear", "cube", "NoneType") in modes  # irradiance
    # One topology hash per backend: the torch render's hash is not handed to nvdiffrast.
    assert all(d["topology_hash"] for d in stub.details("antialias"))

    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert expected["mask"].sum() > 100
    for g, e in zip(got_grads, expected_grads):
        assert (g is None and e is None) or torch.equal(g, e)
    assert expected_grads[-1] is not None and expected_grads[-1].abs().sum() > 0
