"""Shading on CUDA with both rasterizer backends (runs only where CUDA and nvdiffrast work)."""

import pytest
import torch

from dmtrec.render.cubemap import cube_directions
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial, VolumetricMaterial
from dmtrec.render.raster import get_rasterizer
from dmtrec.render.render_mesh import render_mesh

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
BACKENDS = ["torch", "nvdiffrast"]


def _sky(res):
    d = cube_directions(res)
    return torch.stack([1.0 + 0.5 * d[..., 0], 1.0 + 0.5 * d[..., 1], 1.5 - 0.3 * d[..., 2]], -1)


def _volumetric(**ranges):
    return VolumetricMaterial(
        [[-1.5] * 3, [1.5] * 3], n_levels=4, log2_table_size=12, base_resolution=4, finest_resolution=32, **ranges
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["textured", "volumetric"])
def test_white_furnace_on_gpu(backend, kind, make_sphere, make_camera):
    rasterizer = get_rasterizer(backend, CUDA)
    light = EnvironmentLight.constant(0.8, base_res=32, device=CUDA)
    if kind == "textured":
        material = TexturedMaterial.from_tensors(torch.ones(1, 1, 3), torch.tensor([0.0, 0.5, 0.0]).reshape(1, 1, 3))
    else:
        material = _volumetric(kd_range=((1.0,) * 3, (1.0,) * 3), ks_range=((0.0, 0.5, 0.0), (0.0, 0.5, 0.0)))
    material = material.to(CUDA)
    out = render_mesh(
        make_sphere().to(CUDA), material, light, make_camera((64, 64)).to(CUDA), rasterizer, bsdf="diffuse"
    )
    inside = (out["mask"][..., 0] > 0) & (out["alpha"][..., 0] == 1.0)
    assert inside.sum() > 1000
    rgb = out["shaded"][..., :3][inside]
    torch.testing.assert_close(rgb, torch.full_like(rgb, 0.8), rtol=1e-5, atol=0)


def test_prefiltered_light_agrees_across_backends_and_devices():
    cpu = EnvironmentLight(_sky(64))
    cpu.build_mips(get_rasterizer("torch", "cpu"))
    for backend in BACKENDS:
        gpu = EnvironmentLight(_sky(64)).to(CUDA)
        gpu.build_mips(get_rasterizer(backend, CUDA))
        for a, b in zip(cpu.specular + [cpu.diffuse], gpu.specular + [gpu.diffuse]):
            torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)


def test_renders_and_gradients_agree_across_backends(make_sphere, make_camera):
    torch.manual_seed(0)
    kd, ks = torch.rand(32, 32, 3), torch.rand(32, 32, 3) * 0.6 + 0.2
    weights = torch.rand(2, 64, 64, 4, device=CUDA)
    results = {}
    for backend in BACKENDS:
        rasterizer = get_rasterizer(backend, CUDA)
        light = EnvironmentLight(_sky(32)).to(CUDA)
        material = TexturedMaterial.from_tensors(kd, ks).to(CUDA)
        out = render_mesh(make_sphere().to(CUDA), material, light, make_camera((64, 64), batch=2).to(CUDA), rasterizer)
        (out["shaded"] * weights).sum().backward()
        results[backend] = (out, light.base.grad, material.kd.data.grad)
    (out_t, light_t, kd_t), (out_n, light_n, kd_n) = results["torch"], results["nvdiffrast"]
    for key in ("shaded", "kd", "normal", "depth"):
        diff = (out_t[key] - out_n[key]).abs()
        print(f"{key}: max |torch - nvdiffrast| {diff.max().item():.2e}, mean {diff.mean().item():.2e}")
        assert diff.mean().item() < 1e-4 and (diff > 1e-3).float().mean().item() < 0.005
    for name, a, b in (("light", light_t, light_n), ("kd texture", kd_t, kd_n)):
        relative = ((a - b).norm() / b.norm()).item()
        print(f"{name} gradient: relative difference {relative:.2e}")
        assert relative < 1e-2


@pytest.mark.parametrize("backend", BACKENDS)
def test_volumetric_render_backpropagates_on_gpu(backend, make_sphere, make_camera):
    rasterizer = get_rasterizer(backend, CUDA)
    torch.manual_seed(0)
    material = _volumetric().to(CUDA)
    light = EnvironmentLight.random(base_res=32, device=CUDA)
    mesh = make_sphere().to(CUDA)
    mesh.v_pos.requires_grad_()
    out = render_mesh(mesh, material, light, make_camera((64, 64)).to(CUDA), rasterizer)
    (out["shaded"].mean() + out["kd_grad"].mean()).backward()
    for grad in (material.encoding.table.grad, light.base.grad, mesh.v_pos.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0
