"""render_mesh: white furnace, mirror reflection, buffers, modes, bad input, empty meshes."""

import pytest
import torch

from dmtrec.geometry import Mesh, MeshGeometry, topology, topology_cache
from dmtrec.render.cubemap import cube_directions
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial, VolumetricMaterial
from dmtrec.render.render_mesh import _topology_hash, render_mesh

RADIANCE = 0.8


def _white_textured(roughness=0.5, metallic=0.0, alpha=None):
    kd = torch.ones(1, 1, 3) if alpha is None else torch.tensor([1.0, 1.0, 1.0, alpha]).reshape(1, 1, 4)
    return TexturedMaterial.from_tensors(kd, torch.tensor([0.0, roughness, metallic]).reshape(1, 1, 3))


def _white_volumetric():
    return VolumetricMaterial(
        [[-1.5] * 3, [1.5] * 3],
        n_levels=2,
        log2_table_size=8,
        base_resolution=2,
        finest_resolution=4,
        kd_range=((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
        ks_range=((0.0, 0.5, 0.0), (0.0, 0.5, 0.0)),
    )


def _interior(out):
    """Pixels fully inside the silhouette (antialiasing leaves them alone)."""
    return (out["mask"][..., 0] > 0) & (out["alpha"][..., 0] == 1.0)


@pytest.mark.parametrize("material", ["textured", "volumetric"])
@pytest.mark.parametrize("bsdf", ["diffuse", "white"])
def test_white_furnace(material, bsdf, rasterizer, sphere, make_camera):
    light = EnvironmentLight.constant(RADIANCE, base_res=32)
    mat = _white_textured() if material == "textured" else _white_volumetric()
    background = torch.full((1, 48, 48, 3), 0.25)
    out = render_mesh(sphere, mat, light, make_camera((48, 48)), rasterizer, background=background, bsdf=bsdf)
    inside = _interior(out)
    assert inside.sum() > 600
    rgb = out["shaded"][..., :3][inside]
    torch.testing.assert_close(rgb, torch.full_like(rgb, RADIANCE), rtol=1e-5, atol=0)
    outside = out["mask"][..., 0] == 0
    torch.testing.assert_close(
        out["shaded"][outside], torch.tensor([0.25, 0.25, 0.25, 0.0]).expand(int(outside.sum()), 4)
    )


def _sky(d):
    return torch.stack([1.0 + 0.5 * d[..., 0], 1.0 + 0.5 * d[..., 1], 1.5 - 0.3 * d[..., 2]], -1)


def _view_rays(cameras):
    """World-space unit directions from the camera through each pixel centre, ``[B, H, W, 3]``."""
    height, width = cameras.resolution
    ys = (torch.arange(height) + 0.5) / height * 2 - 1
    xs = (torch.arange(width) + 0.5) / width * 2 - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    # Camera space at depth 1 (looking down -z): x = x_ndc / P[0, 0], y = y_ndc / P[1, 1].
    batch = cameras.batch_size
    local = torch.stack(
        [
            x.expand(batch, -1, -1) / cameras.proj[:, 0, 0, None, None],
            y.expand(batch, -1, -1) / cameras.proj[:, 1, 1, None, None],
            -torch.ones(batch, height, width),
        ],
        -1,
    )
    world = torch.einsum("bij,bhwj->bhwi", cameras.c2w[:, :3, :3], local)
    return torch.nn.functional.normalize(world, dim=-1)


def test_metal_mirror_reflects_the_environment(rasterizer, sphere, make_camera):
    light = EnvironmentLight(_sky(cube_directions(64)))
    cameras = make_camera((48, 48))
    out = render_mesh(sphere, _white_textured(roughness=0.0, metallic=1.0), light, cameras, rasterizer)
    ray = _view_rays(cameras)
    n = out["normal"]
    n_dot_v = -(ray * n).sum(-1)
    reflected = ray - 2 * (ray * n).sum(-1, keepdim=True) * n
    use = _interior(out) & (n_dot_v > 0.3)
    assert use.sum() > 400
    got, expected = out["shaded"][..., :3][use], _sky(reflected)[use]
    # kd = 1 and metallic = 1 make F0 = 1; at the 0.08 roughness floor the split sum reflects
    # the (smooth) environment almost unchanged.
    relative = ((got - expected).abs() / expected).max().item()
    assert relative < 0.03, relative


def test_buffers(rasterizer, sphere, make_camera):
    light = EnvironmentLight.constant(RADIANCE, base_res=32)
    cameras = make_camera((48, 48), batch=2)
    material = _white_textured(alpha=0.5)
    background = torch.zeros(2, 48, 48, 3)
    background[1] = 1.0
    out = render_mesh(sphere, material, light, cameras, rasterizer, background=background, bsdf="diffuse")
    assert {k: tuple(v.shape[-1:]) for k, v in out.items()} == {
        "shaded": (4,),
        "alpha": (1,),
        "mask": (1,),
        "kd": (3,),
        "ks": (3,),
        "normal": (3,),
        "depth": (1,),
        "kd_grad": (1,),
    }
    inside = _interior(out) | ((out["mask"][..., 0] > 0) & (out["alpha"][..., 0] == 0.5))
    # kd alpha 0.5: half the surface over half the background.
    torch.testing.assert_close(out["alpha"][inside], torch.full_like(out["alpha"][inside], 0.5))
    torch.testing.assert_close(out["shaded"][0][..., :3][inside[0]], torch.full((int(inside[0].sum()), 3), 0.4))
    torch.testing.assert_close(out["shaded"][1][..., :3][inside[1]], torch.full((int(inside[1].sum()), 3), 0.9))
    # Depth of the sphere's front point, seen from distance 3: 2.
    centre = out["depth"][0, 23:25, 23:25, 0] / out["alpha"][0, 23:25, 23:25, 0]
    assert centre.min().item() == pytest.approx(2.0, abs=5e-3)  # a faceted sphere: slightly behind
    # Shading normals are unit length (bending towards the face normal at grazing angles, which
    # nvdiffrec does not renormalize, shortens them a little) and face the camera at the centre.
    n = out["normal"][0][inside[0]] / 0.5
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(n.shape[0]), atol=1e-3, rtol=0)
    assert out["normal"][0, 24, 24, 2].item() / 0.5 > 0.99
    assert (out["kd_grad"] == 0).all()  # constant kd


@pytest.mark.parametrize("mode", ["kd", "ks", "normal"])
def test_debug_modes(mode, rasterizer, sphere, make_camera):
    material = TexturedMaterial.from_tensors(torch.rand(8, 8, 3), torch.rand(8, 8, 3))
    out = render_mesh(sphere, material, None, make_camera((32, 32)), rasterizer, bsdf=mode)
    inside = _interior(out)
    expected = (out["normal"] + 1) / 2 if mode == "normal" else out[mode]
    torch.testing.assert_close(out["shaded"][..., :3][inside], expected[inside])


def test_supersampling_matches_inside(rasterizer, sphere, make_camera):
    light = EnvironmentLight.constant(RADIANCE, base_res=32)
    material = _white_textured(roughness=0.4)
    one = render_mesh(sphere, material, light, make_camera((32, 32)), rasterizer, spp=1)
    two = render_mesh(sphere, material, light, make_camera((32, 32)), rasterizer, spp=2)
    assert two["shaded"].shape == (1, 32, 32, 4)
    inside = _interior(one) & (two["alpha"][..., 0] == 1.0)
    torch.testing.assert_close(two["shaded"][inside], one["shaded"][inside], atol=2e-2, rtol=0)
    assert abs(two["alpha"].sum() - one["alpha"].sum()) / one["alpha"].sum() < 0.02


def test_bad_arguments(rasterizer, sphere, make_camera):
    light = EnvironmentLight.constant(RADIANCE, base_res=32)
    material = _white_textured()
    cameras = make_camera((16, 16))
    with pytest.raises(ValueError, match="unknown bsdf"):
        render_mesh(sphere, material, light, cameras, rasterizer, bsdf="phong")
    with pytest.raises(NotImplementedError, match="depth peeling"):
        render_mesh(sphere, material, light, cameras, rasterizer, num_layers=2)
    with pytest.raises(ValueError, match="background must be"):
        render_mesh(sphere, material, light, cameras, rasterizer, background=torch.zeros(1, 8, 8, 3))
    with pytest.raises(ValueError, match="needs a light"):
        render_mesh(sphere, material, None, cameras, rasterizer)
    bare = Mesh(sphere.v_pos, sphere.t_pos_idx)
    with pytest.raises(ValueError, match="no UVs"):
        render_mesh(bare, material, light, cameras, rasterizer)
    with pytest.raises(ValueError, match="tangents"):
        render_mesh(
            bare,
            VolumetricMaterial(
                [[-1] * 3, [1] * 3], n_levels=2, log2_table_size=8, base_resolution=2, finest_resolution=4
            ),
            light,
            cameras,
            rasterizer,
        )


def test_normals_are_computed_when_missing(rasterizer, sphere, make_camera):
    light = EnvironmentLight.constant(RADIANCE, base_res=32)
    flat = _white_volumetric()
    flat.perturbs_normals = False
    bare = Mesh(sphere.v_pos, sphere.t_pos_idx)
    out = render_mesh(bare, flat, light, make_camera((32, 32)), rasterizer, bsdf="white")
    inside = _interior(out)
    torch.testing.assert_close(
        out["shaded"][..., :3][inside], torch.full((int(inside.sum()), 3), RADIANCE), rtol=1e-5, atol=0
    )


@pytest.mark.parametrize("where", ["empty", "out_of_view"])
def test_empty_or_invisible_mesh_gives_background_and_backpropagates(where, rasterizer, sphere, make_camera):
    light = EnvironmentLight.random(base_res=32, generator=torch.Generator().manual_seed(0))
    material = _white_volumetric()
    if where == "empty":
        mesh = Mesh(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 3, dtype=torch.long))
    else:
        mesh = Mesh(
            sphere.v_pos + torch.tensor([0.0, 0.0, 10.0]),
            sphere.t_pos_idx,
            sphere.v_nrm,
            sphere.t_nrm_idx,
            sphere.v_tex,
            sphere.t_tex_idx,
            sphere.v_tng,
            sphere.t_tng_idx,
        )
    background = torch.rand(2, 16, 16, 3)
    out = render_mesh(mesh, material, light, make_camera((16, 16), batch=2), rasterizer, background=background)
    torch.testing.assert_close(out["shaded"][..., :3], background)
    assert (out["shaded"][..., 3] == 0).all() and all((out[k] == 0).all() for k in ("alpha", "kd", "depth", "kd_grad"))
    loss = (out["shaded"] - 1.0).abs().mean() + out["kd_grad"].mean()
    loss.backward()
    assert light.base.grad is not None and (light.base.grad == 0).all()
    assert material.encoding.table.grad is not None


def test_antialias_topology_is_built_once_per_unchanged_face_tensor(rasterizer, sphere, make_camera):
    first = _topology_hash(rasterizer, sphere)
    assert _topology_hash(rasterizer, sphere) is first
    again = Mesh(v_pos=sphere.v_pos, t_pos_idx=sphere.t_pos_idx.clone())  # same faces, another tensor
    assert _topology_hash(rasterizer, again) is not first
    faces = sphere.t_pos_idx.clone()
    mesh = Mesh(v_pos=sphere.v_pos, t_pos_idx=faces)
    before = _topology_hash(rasterizer, mesh)
    faces[[0, 1]] = faces[[1, 0]]  # an in-place edit must not reuse the old structure
    assert _topology_hash(rasterizer, mesh) is not before
    # Renders with the kept structure match renders that build their own.
    material, light, cams = _white_textured(), EnvironmentLight.constant(1.0, base_res=32), make_camera()
    shaded = render_mesh(sphere, material, light, cams, rasterizer)["shaded"]
    assert _topology_hash(rasterizer, sphere) is first  # the render reused it
    topology._ENTRIES.clear()
    torch.testing.assert_close(render_mesh(sphere, material, light, cams, rasterizer)["shaded"], shaded, rtol=0, atol=0)


def test_pass2_renders_are_the_same_with_and_without_the_topology_cache(rasterizer, sphere, make_camera):
    """Pass 2's geometry (normals, MikkTSpace tangents) under a normal map, with UVs mirrored on
    one side: the cached path renders the same image with the same gradients."""
    v_tex = sphere.v_tex.clone()
    v_tex[:, 0] = 1.0 - (2.0 * v_tex[:, 0] - 1.0).abs()
    geometry = MeshGeometry(sphere.v_pos, sphere.t_pos_idx, v_tex, sphere.t_tex_idx)
    gen = torch.Generator().manual_seed(0)
    normal = torch.nn.functional.normalize(
        torch.randn(16, 16, 3, generator=gen) * 0.3 + torch.tensor([0.0, 0.0, 1.0]), dim=-1
    )
    material = TexturedMaterial.from_tensors(torch.full((1, 1, 3), 0.7), torch.tensor([[[0.0, 0.4, 0.0]]]), normal)
    light, cams = EnvironmentLight.constant(1.0, base_res=32), make_camera((48, 48))

    def render():
        geometry.v_pos.grad = None
        shaded = render_mesh(geometry.mesh(), material, light, cams, rasterizer)["shaded"]
        (shaded * torch.linspace(0.0, 1.0, shaded.numel()).reshape(shaded.shape)).sum().backward()
        return shaded.detach(), geometry.v_pos.grad.clone()

    with topology_cache(False):
        image, grad = render()
    with topology_cache(True):
        render()  # builds the cache
        cached_image, cached_grad = render()
    assert (grad != 0).any()
    torch.testing.assert_close(cached_image, image, rtol=0, atol=0)
    torch.testing.assert_close(cached_grad, grad, rtol=1e-6, atol=1e-6 * grad.abs().max().item())
