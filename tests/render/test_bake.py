"""bake_volumetric: texels hold the material at the surface point they map to; seams are dilated."""

import pytest
import torch

from dmtrec.geometry import Mesh
from dmtrec.render.bake import bake_volumetric
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import VolumetricMaterial
from dmtrec.render.render_mesh import render_mesh


def _material(seed=0):
    torch.manual_seed(seed)
    material = VolumetricMaterial(
        [[-1.2] * 3, [1.2] * 3], n_levels=3, log2_table_size=10, base_resolution=2, finest_resolution=8
    )
    with torch.no_grad():
        material.encoding.table.normal_(0, 1.0)  # visible variation across the surface
    return material


def _quad(triangles=2):
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    pos = torch.cat([uv - 0.5, torch.zeros(4, 1)], -1)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])[:triangles]
    return Mesh(v_pos=pos, t_pos_idx=faces, v_tex=uv, t_tex_idx=faces)


def test_texels_hold_the_material_at_their_surface_points(rasterizer):
    material = _material()
    baked = bake_volumetric(_quad(), material, rasterizer, resolution=16)
    res = 16
    centre = (torch.arange(res) + 0.5) / res
    v, u = torch.meshgrid(1.0 - centre, centre, indexing="ij")  # row 0 is the top of the image: v = 1
    pos = torch.stack([u - 0.5, v - 0.5, torch.zeros_like(u)], -1)
    expected = material.evaluate(pos).detach()
    textures = baked.to_tensors()
    torch.testing.assert_close(textures["kd"], expected[..., 0:3], atol=1e-4, rtol=0)
    torch.testing.assert_close(textures["ks"], expected[..., 3:6], atol=1e-4, rtol=0)
    torch.testing.assert_close(
        textures["normal"], torch.nn.functional.normalize(expected[..., 6:9], dim=-1), atol=1e-4, rtol=0
    )
    assert textures["kd"].std() > 0.01


def test_uncovered_texels_are_filled_from_their_neighbours(rasterizer):
    material = _material()
    baked = bake_volumetric(_quad(triangles=1), material, rasterizer, resolution=16, dilation=2)
    kd = baked.to_tensors()["kd"]
    # The triangle (0,0)-(1,0)-(1,1) covers the lower right half; dilation grows it by two texels,
    # the rest takes the mean colour.
    covered_value, far_corner = kd[12, 12], kd[0, 0]  # image row 0 is v = 1: the top left is empty
    assert (kd >= 0).all() and (kd <= 1).all()
    mean = kd[torch.arange(16)[:, None] > 16 - torch.arange(16)[None, :]].mean(0)
    assert not torch.allclose(covered_value, far_corner)
    torch.testing.assert_close(far_corner, mean, atol=0.05, rtol=0)


def test_baked_material_renders_like_the_volumetric_one(rasterizer, sphere, make_camera):
    material = _material(1)
    material.perturbs_normals = False  # compare the colours only
    baked = bake_volumetric(sphere, material, rasterizer, resolution=128)
    light = EnvironmentLight.constant(1.0, base_res=32)
    cameras = make_camera((48, 48))
    ref = render_mesh(sphere, material, light, cameras, rasterizer, bsdf="kd")
    out = render_mesh(sphere, baked, light, cameras, rasterizer, bsdf="kd")
    inside = (ref["alpha"][..., 0] == 1) & (out["alpha"][..., 0] == 1)
    error = (out["kd"] - ref["kd"]).abs()[inside].mean().item()
    assert error < 0.02, error


def test_bake_needs_uvs(rasterizer, sphere):
    with pytest.raises(ValueError, match="no UVs"):
        bake_volumetric(Mesh(sphere.v_pos, sphere.t_pos_idx), _material(), rasterizer, 16)
