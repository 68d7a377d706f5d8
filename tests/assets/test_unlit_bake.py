"""Unlit bakes (dmtrec.assets.unlit_bake): closed forms, the optimiser, point-sampled vs optimised."""

import math

import pytest
import torch
from common import PROBE_HDR, SPOT_OBJ

from dmtrec.assets.unlit_bake import (
    bake_unlit,
    check_overlap,
    closed_form_texture,
    premultiplied,
    render_unlit,
    unlit_material,
    uv_layout,
    with_render_frame,
)
from dmtrec.assets.views import render_reference, view_cameras
from dmtrec.core.mesh import Mesh
from dmtrec.datasets.reference_mesh import load_asset, load_probe
from dmtrec.render.camera_distributions import sample_cameras
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.raster import get_rasterizer


@pytest.fixture(scope="module")
def spot_views():
    """Spot under the probe: 12 training and 4 held-out views at 64 x 64."""
    torch.set_num_threads(1)
    mesh, material = load_asset(SPOT_OBJ)
    mesh = with_render_frame(mesh, material)
    light = load_probe(PROBE_HDR, 32)
    rasterizer = get_rasterizer("torch")
    cameras = view_cameras("sphere", 12, mesh, resolution=64, seed=0)
    held_out = view_cameras("sphere", 4, mesh, resolution=64, seed=1)
    refs = render_reference(mesh, material, light, cameras, rasterizer)
    held_refs = render_reference(mesh, material, light, held_out, rasterizer)
    return mesh, material, light, rasterizer, cameras, refs, held_out, held_refs


def test_closed_forms_of_a_one_texel_texture_match_hand_sums(spot_views):
    # With a 1 x 1 texture every pixel reads the one texel with weight a = its antialiased
    # coverage, so the footprint mean is sum(a w y) / sum(a w) and the least-squares optimum
    # sum(a w y) / sum(a^2 w) (w: the reference's coverage mask, y: its premultiplied colour).
    mesh, _, _, rasterizer, cameras, refs, _, _ = spot_views
    with torch.no_grad():
        a = render_unlit(mesh, unlit_material(torch.ones(1, 1, 3)), cameras, rasterizer)[..., 3:].double()
    w = (refs[..., 3:] > 0).double()
    y = premultiplied(refs).double()
    mean, _ = closed_form_texture(mesh, 1, cameras, refs, rasterizer)
    optimum, info = closed_form_texture(mesh, 1, cameras, refs, rasterizer, iterations=3)
    expected_mean = (a * w * y).sum((0, 1, 2)) / (a * w).sum()
    expected_optimum = (a * w * y).sum((0, 1, 2)) / (a * a * w).sum()
    torch.testing.assert_close(mean[0, 0].double(), expected_mean, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(optimum[0, 0].double(), expected_optimum, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(expected_mean, expected_optimum, rtol=1e-3)  # the check tells them apart
    # A prior p weighing as lam pixels: (sum(a w y) + lam p) / (sum(a^2 w) + lam).
    prior, lam = torch.tensor([[[0.9, 0.1, 0.5]]]), float((a * a * w).sum()) / 3.0
    shrunk, _ = closed_form_texture(mesh, 1, cameras, refs, rasterizer, iterations=3, prior=prior, prior_weight=lam)
    expected_shrunk = ((a * w * y).sum((0, 1, 2)) + lam * prior[0, 0].double()) / ((a * a * w).sum() + lam)
    torch.testing.assert_close(shrunk[0, 0].double(), expected_shrunk, rtol=1e-4, atol=1e-6)


def test_optimised_texture_reaches_the_closed_form_optimum(spot_views):
    mesh, material, light, rasterizer, cameras, refs, held_out, held_refs = spot_views
    result = bake_unlit(
        mesh, material, light, None, "texture", cameras, refs, held_out, held_refs, rasterizer,
        texture_res=32, steps=80, lr=0.03, batch=6, cg_iterations=25,
    )  # fmt: skip
    scores = result.scores
    # Within 0.1 dB of the least-squares optimum on the views it was fitted to, and held-out.
    assert scores["optimised"]["train_psnr"] > scores["least_squares"]["train_psnr"] - 0.1
    assert abs(scores["optimised"]["psnr"] - scores["least_squares"]["psnr"]) < 0.1
    # The optimum beats the footprint mean (blurred by bilinear lookups) and the point sample.
    assert scores["least_squares"]["train_psnr"] > scores["closed_form"]["train_psnr"]
    assert scores["optimised"]["psnr"] > scores["point_sampled"]["psnr"] + 0.5
    assert result.info["cg_residuals"][-1] < result.info["cg_residuals"][0]


def test_a_heavy_prior_keeps_the_point_sample(spot_views):
    mesh, material, light, rasterizer, cameras, refs, held_out, held_refs = spot_views
    result = bake_unlit(
        mesh, material, light, None, "texture", cameras, refs, held_out, held_refs, rasterizer,
        texture_res=16, steps=20, batch=6, closed_form=False, prior_weight=1e6,
    )  # fmt: skip
    assert (result.optimised - result.point).abs().max() < 0.01


def _grey_sphere(icosphere, subdivisions):
    v_pos, faces = icosphere(subdivisions, 1.0)
    # A constant rough grey dielectric: any UVs read it.
    mesh = Mesh(v_pos, faces, v_tex=torch.zeros(1, 2), t_tex_idx=torch.zeros_like(faces))
    material = TexturedMaterial.from_tensors(torch.full((1, 1, 3), 0.6), torch.tensor([[[0.0, 0.4, 0.0]]]))
    return with_render_frame(mesh), material


def _patterned_plane():
    """A 3 x 3-vertex grid over [-1, 1]^2 in the y = 0 plane (8 triangles, normal +Y), textured
    with ``kd = 0.15 + 0.7 sin^2(2 pi u) sin^2(2 pi v)``: 0.15 at every vertex, brighter inside
    every triangle, a pattern linear interpolation between vertices cannot follow."""
    ticks = torch.tensor([-1.0, 0.0, 1.0])
    z, x = torch.meshgrid(ticks, ticks, indexing="ij")
    v_pos = torch.stack([x.reshape(-1), torch.zeros(9), z.reshape(-1)], -1)
    faces = []
    for row in range(2):
        for col in range(2):
            a, b, c, d = 3 * row + col, 3 * row + col + 1, 3 * row + col + 4, 3 * row + col + 3
            faces += [[a, d, c], [a, c, b]]  # counter-clockwise seen from +Y
    faces = torch.tensor(faces)
    uv = torch.stack([(v_pos[:, 0] + 1) / 2, (1 - v_pos[:, 2]) / 2], -1)
    mesh = with_render_frame(Mesh(v_pos, faces, v_tex=uv, t_tex_idx=faces))
    t = (torch.arange(64) + 0.5) / 64
    pattern = torch.sin(2 * math.pi * t)[:, None] ** 2 * torch.sin(2 * math.pi * t)[None, :] ** 2
    kd = (0.15 + 0.7 * pattern)[..., None].expand(64, 64, 3)
    return mesh, TexturedMaterial.from_tensors(kd, torch.tensor([[[0.0, 0.8, 0.0]]]))


def test_optimised_vertex_colours_beat_point_samples_on_a_low_poly_mesh():
    torch.set_num_threads(1)
    mesh, material = _patterned_plane()
    light = load_probe(PROBE_HDR, 32)
    rasterizer = get_rasterizer("torch")
    cameras = sample_cameras(12, "hemisphere", 3.5, 45.0, 48, seed=0)
    held_out = sample_cameras(4, "hemisphere", 3.5, 45.0, 48, seed=1)
    refs = render_reference(mesh, material, light, cameras, rasterizer)
    held_refs = render_reference(mesh, material, light, held_out, rasterizer)
    result = bake_unlit(
        mesh, material, light, None, "vertex", cameras, refs, held_out, held_refs, rasterizer,
        steps=60, lr=0.03, batch=6,
    )  # fmt: skip
    point, optimised = result.scores["point_sampled"], result.scores["optimised"]
    assert optimised["psnr"] > point["psnr"] + 1.0, (point, optimised)
    assert optimised["psnr_linear"] > point["psnr_linear"] + 1.0, (point, optimised)
    # And it is the least-squares optimum (CG on the normal equations) on the views it fitted.
    assert optimised["train_psnr"] > result.scores["least_squares"]["train_psnr"] - 0.1
    # The point samples all see kd = 0.15; the optimum brightens the vertices towards the
    # pattern's mean (0.15 + 0.7 / 4 = 0.325 as albedo).
    assert float(result.optimised.mean()) > float(result.point.mean()) * 1.3


def test_uv_layout_maps_each_texel_to_the_surface_point_at_its_centre():
    # The plane's UVs are an affine function of position, so a texel's surface point, read
    # back through the UVs, must land on the texel centre (row 0 is the top, v = 1).
    mesh, _ = _patterned_plane()
    points, covered = uv_layout(mesh, 16, get_rasterizer("torch"))
    assert bool(covered.all())
    uv = points.interpolate(mesh.v_tex, mesh.t_tex_idx)
    rows, cols = covered.nonzero().unbind(1)
    centres = torch.stack([(cols + 0.5) / 16, 1 - (rows + 0.5) / 16], -1)
    torch.testing.assert_close(uv, centres, atol=1e-5, rtol=0)
    pos = points.interpolate(mesh.v_pos, mesh.t_pos_idx)
    torch.testing.assert_close(pos[:, 0], centres[:, 0] * 2 - 1, atol=1e-5, rtol=0)


def test_overlap_check_rejects_a_far_mesh(icosphere):
    mesh, _ = _grey_sphere(icosphere, 2)
    assert check_overlap(mesh, mesh, "same.glb") < 1e-6
    far = mesh.copy(v_pos=mesh.v_pos + torch.tensor([10.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="far.glb: mesh does not overlap"):
        check_overlap(mesh, far, "far.glb")


def test_constant_light_point_sample_is_the_diffuse_albedo_times_radiance(icosphere):
    # Under a uniform white sky a rough dielectric's point sample is kd * L plus its specular
    # (F0 0.04 scaled by the split-sum terms): bounded by kd * L and kd * L + 0.04-ish * L.
    mesh, material = _grey_sphere(icosphere, 2)
    light = EnvironmentLight.constant(1.0, 32)
    cameras = sample_cameras(2, "sphere", 3.5, 45.0, 32, seed=0)
    refs = render_reference(mesh, material, light, cameras, get_rasterizer("torch"))
    result = bake_unlit(
        mesh, material, light, None, "vertex", cameras, refs, cameras, refs, get_rasterizer("torch"), steps=0
    )
    assert torch.all(result.point > 0.6) and torch.all(result.point < 0.6 + 0.1)
