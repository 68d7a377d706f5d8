"""Finite-difference spot checks of render_mesh's gradients: light texels, texture texels,
hash-grid tables and vertex positions (float32 renders, so tolerances are loose where the
image is non-linear in the parameter)."""

import pytest
import torch

from dmtrec.render.cubemap import cube_directions
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial, VolumetricMaterial
from dmtrec.render.render_mesh import render_mesh


@pytest.fixture
def scene(make_sphere, make_camera):
    torch.manual_seed(0)
    d = cube_directions(32)
    light = EnvironmentLight(torch.stack([1.0 + 0.5 * d[..., 0], 1.0 + 0.5 * d[..., 1], 1.5 - 0.3 * d[..., 2]], -1))
    return make_sphere(rings=10, segments=20), light, make_camera((32, 32)), torch.rand(1, 32, 32, 4)


def _central_difference(loss, tensor, index, eps):
    flat = tensor.data.view(-1)
    value = flat[index].item()
    flat[index] = value + eps
    up = loss().item()
    flat[index] = value - eps
    down = loss().item()
    flat[index] = value
    return (up - down) / (2 * eps)


def _check(loss, param, eps, rel, count=4):
    """Compare autograd with central differences at the entries with the largest gradients."""
    param.grad = None
    loss().backward()
    grad = param.grad.reshape(-1).clone()
    assert grad.abs().max() > 0, "no gradient reached the parameter"
    with torch.no_grad():
        for index in grad.abs().topk(count).indices.tolist():
            fd = _central_difference(loss, param, index, eps)
            assert fd == pytest.approx(grad[index].item(), rel=rel), index


def test_gradients_reach_light_texels(rasterizer, scene):
    mesh, light, cameras, weights = scene
    material = TexturedMaterial.from_tensors(torch.rand(16, 16, 3), torch.tensor([0.0, 0.3, 0.5]).expand(4, 4, 3))
    _check(
        lambda: (render_mesh(mesh, material, light, cameras, rasterizer)["shaded"] * weights).sum(),
        light.base,
        eps=0.1,
        rel=2e-2,
    )


def test_gradients_reach_texture_texels(rasterizer, scene):
    mesh, light, cameras, weights = scene
    material = TexturedMaterial.from_tensors(torch.rand(16, 16, 3) * 0.8 + 0.1, torch.rand(16, 16, 3) * 0.5 + 0.25)
    loss = lambda: (render_mesh(mesh, material, light, cameras, rasterizer, smoothness=False)["shaded"] * weights).sum()
    _check(loss, material.kd.data, eps=0.05, rel=2e-2)
    _check(loss, material.ks.data, eps=0.02, rel=5e-2)


def test_gradients_reach_hash_grid_tables(rasterizer, scene):
    mesh, light, cameras, weights = scene
    material = VolumetricMaterial(
        [[-1.2] * 3, [1.2] * 3], n_levels=3, log2_table_size=10, base_resolution=4, finest_resolution=16
    )
    with torch.no_grad():
        material.encoding.table.normal_(0, 0.3)
    loss = lambda: (render_mesh(mesh, material, light, cameras, rasterizer, smoothness=False)["shaded"] * weights).sum()
    _check(loss, material.encoding.table, eps=1e-2, rel=5e-2)


def test_gradients_reach_vertex_positions(rasterizer, scene):
    mesh, light, cameras, weights = scene
    material = TexturedMaterial.from_tensors(torch.rand(16, 16, 3), torch.tensor([0.0, 0.4, 0.3]).expand(4, 4, 3))
    v_pos = mesh.v_pos.clone().requires_grad_()

    def loss():
        return (
            render_mesh(mesh.copy(v_pos=v_pos), material, light, cameras, rasterizer, smoothness=False)["shaded"]
            * weights
        ).sum()

    loss().backward()
    # Vertices facing the camera, away from the silhouette (where coverage changes make central
    # differences jump) and from the UV seam in the x = 0 plane.
    front = ((mesh.v_pos[:, 2] > 0.6) & (mesh.v_pos[:, 0].abs() > 0.15)).nonzero().squeeze(1)[:4]
    ad, fd = [], []
    with torch.no_grad():
        for vertex in front.tolist():
            for axis in range(3):
                ad.append(v_pos.grad[vertex, axis].item())
                fd.append(_central_difference(loss, v_pos, vertex * 3 + axis, 2e-4))
    ad, fd = torch.tensor(ad), torch.tensor(fd)
    assert ad.abs().max() > 0
    assert ((ad - fd).norm() / fd.norm()).item() < 0.1, (ad, fd)
