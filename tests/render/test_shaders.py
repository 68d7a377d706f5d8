"""Shading models as plug-ins (dmtrec.render.shaders): the built-in PBR and unlit models render
exactly what render_mesh's bsdf modes render, and the probe's SH and main light are right."""

import math

import pytest
import torch
from common import PROBE_HDR, SPOT_OBJ

from dmtrec.assets.views import view_cameras
from dmtrec.datasets.reference_mesh import load_asset, load_probe
from dmtrec.render.cubemap import cube_directions
from dmtrec.render.raster import get_rasterizer
from dmtrec.render.render_mesh import render_mesh
from dmtrec.render.shaders import BUILTINS, ShaderMaterial
from dmtrec.render.shaders.sh import main_light, project_cubemap, sh_basis, sh_irradiance


@pytest.fixture(scope="module")
def spot():
    torch.set_num_threads(1)
    mesh, material = load_asset(SPOT_OBJ)
    light = load_probe(PROBE_HDR, 32)
    cameras = view_cameras("sphere", 3, mesh, resolution=48, seed=0)
    return mesh, material, light, cameras, get_rasterizer("torch")


def _render_both(seed_args, **shader_args):
    torch.manual_seed(0)  # kd_grad's jitter is random
    a = render_mesh(*seed_args[0], **seed_args[1])
    torch.manual_seed(0)
    b = render_mesh(*seed_args[0], **shader_args)
    return a, b


@pytest.mark.parametrize("mode", ["pbr", "unlit"])
def test_builtin_pbr_and_unlit_render_what_the_bsdf_modes_render(spot, mode):
    mesh, material, light, cameras, rasterizer = spot
    args = (mesh, material, light, cameras, rasterizer)
    a, b = _render_both((args, {"bsdf": mode}), shader=BUILTINS[mode]())
    assert a.keys() == b.keys()
    assert float(a["shaded"][..., 3].sum()) > 100  # Spot is in view
    for key in a:
        assert float((a[key] - b[key]).abs().max()) <= 1e-6, key


def test_builtin_unlit_with_vertex_colours_matches_the_bsdf_mode(spot):
    mesh, _, _, cameras, rasterizer = spot
    colors = torch.rand(mesh.num_vertices, 3, generator=torch.Generator().manual_seed(1))
    args = (mesh, None, None, cameras, rasterizer)
    a, b = _render_both(
        (args, {"bsdf": "unlit", "vertex_color": colors}), shader=BUILTINS["unlit"](), vertex_color=colors
    )
    for key in a:
        assert float((a[key] - b[key]).abs().max()) <= 1e-6, key


def test_game_models_render_finite_images_that_depend_on_their_values(spot):
    mesh, material, light, cameras, rasterizer = spot
    for name in ("simple_lit", "lambert_vc", "matcap", "toon"):
        model = BUILTINS[name]()
        values = {p.name: material.kd.data[0, ..., :3] for p in model.params if p.init == "kd"}
        shader_material = ShaderMaterial(model, values)
        out = render_mesh(mesh, shader_material, light, cameras, rasterizer, shader=model)["shaded"]
        assert torch.isfinite(out).all() and float(out[..., :3].detach().max()) > 0.05, name
        loss = out[..., :3].sum()
        loss.backward()
        grads = [p.grad for p in shader_material.parameters() if p.requires_grad]
        assert any(g is not None and float(g.abs().sum()) > 0 for g in grads), name


# ---------------------------------------------------------------------------- SH


def _radiance(d):
    """A probe with a sharp lobe (not band-limited) on a smooth sky, float64."""
    sun = torch.tensor([0.3, 0.8, -0.52], dtype=d.dtype)
    sun = sun / sun.norm()
    return torch.stack(
        [
            0.4 + 0.3 * d[..., 1] + 3.0 * torch.exp(8.0 * ((d * sun).sum(-1) - 1.0)),
            0.5 + 0.2 * d[..., 0] * d[..., 2],
            0.6 - 0.1 * d[..., 2] + d[..., 0] ** 4,
        ],
        -1,
    )


def _sphere_quadrature(n_theta=400, n_phi=800):
    """Directions and weights of a midpoint rule in (theta, phi), float64: independent of the cube map."""
    theta = (torch.arange(n_theta, dtype=torch.float64) + 0.5) * math.pi / n_theta
    phi = (torch.arange(n_phi, dtype=torch.float64) + 0.5) * 2 * math.pi / n_phi
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    d = torch.stack([torch.sin(t) * torch.cos(p), torch.sin(t) * torch.sin(p), torch.cos(t)], -1).reshape(-1, 3)
    w = (torch.sin(t) * (math.pi / n_theta) * (2 * math.pi / n_phi)).reshape(-1)
    return d, w


def test_sh_projection_of_a_cube_map_matches_a_numeric_integral():
    d, w = _sphere_quadrature()
    expected = sh_basis(d).T @ (_radiance(d) * w[:, None])  # [9, 3]
    cube = _radiance(cube_directions(64, dtype=torch.float64))
    got = project_cubemap(cube)
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected, atol=2e-3 * float(expected.abs().max()))
    # The basis is orthonormal under the same integral (its constants are right).
    gram = sh_basis(d).T @ (sh_basis(d) * w[:, None])
    assert torch.allclose(gram, torch.eye(9, dtype=torch.float64), atol=1e-4)


def test_sh_irradiance_matches_the_cosine_integral_of_an_order_2_probe():
    d, w = _sphere_quadrature()
    coeffs = torch.randn(9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    radiance = sh_basis(d) @ coeffs  # band-limited: the 9-term formula is exact
    normals = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=-1)
    brute = torch.stack([((radiance * (w * (d @ n).clamp_min(0))[:, None]).sum(0)) for n in normals])
    assert torch.allclose(sh_irradiance(coeffs, normals), brute, atol=1e-3 * float(brute.abs().max()))


def test_main_light_recovers_a_directional_light_over_a_constant_sky():
    direction = torch.nn.functional.normalize(torch.tensor([0.2, 0.9, -0.4], dtype=torch.float64), dim=0)
    color = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    sky = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    # A directional light's projection is c Y(d); a constant sky's only coefficient is the DC one.
    coeffs = sh_basis(direction)[:, None] * color[None]
    coeffs[0] += sky * math.sqrt(4 * math.pi)
    got_dir, got_color, ambient = main_light(coeffs)
    assert torch.allclose(got_dir, direction, atol=1e-6)
    assert torch.allclose(got_color, color, atol=1e-6)
    assert torch.allclose(ambient[1:], torch.zeros_like(ambient[1:]), atol=1e-6)
    # The ambient keeps the sky's DC term: an irradiance of pi * sky from every direction (the
    # light's own DC share removed).
    up = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(sh_irradiance(ambient, up)[0], math.pi * sky, atol=1e-6)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_has_a_glsl_twin_with_a_uniform_per_parameter(name):
    model = BUILTINS[name]()
    text = model.glsl_source()
    assert "vec3 shade()" in text
    for param in model.params:
        assert f" {param.name};" in text or f" {param.name}[" in text, param.name


def test_with_sun_adds_a_directional_light_of_the_asked_irradiance():
    # On a black probe the added sun is all there is: Sloan's extraction must find its direction,
    # and a directional light of irradiance E projects to E * Y_k(d), so its colour is E.
    from dmtrec.render.light import EnvironmentLight
    from dmtrec.render.shaders.sh import with_sun

    sun = torch.tensor([0.3, 0.8, -0.52])
    sun = sun / sun.norm()
    light = with_sun(EnvironmentLight.constant(0.0, base_res=64), sun, 5.0, radius_deg=3.0)
    direction, color, _ = main_light(project_cubemap(light.base))
    assert float(direction.float() @ sun) > math.cos(math.radians(1.0))
    assert torch.allclose(color.float(), torch.full((3,), 5.0), rtol=0.02)
