"""Mitsuba path tracing against dmtrec's split-sum rasterizer: they agree where split-sum is
exact enough (a diffuse convex object under a smooth probe) and differ where it cannot be (the
inside of an open box is shadowed by its walls only in the path-traced image)."""

from __future__ import annotations

import math

import pytest
import torch
from common import PROBE_HDR

from dmtrec.core.mesh import Mesh
from dmtrec.geometry import merge_meshes
from dmtrec.io.image import read_hdr
from dmtrec.render import Cameras, EnvironmentLight, TexturedMaterial, get_rasterizer, look_at, render_mesh
from dmtrec.render.cubemap import latlong_directions, latlong_to_cubemap, sample_latlong

pytest.importorskip("mitsuba", reason="mitsuba (dmtrec[pathtrace]) is not installed")
from dmtrec.render.pathtrace import pathtrace  # noqa: E402

RES = (48, 48)
FOVY = math.radians(40)


def uv_sphere(radius: float, centre=(0.0, 0.0, 0.0), rings: int = 24, segments: int = 48) -> Mesh:
    theta = torch.linspace(0, math.pi, rings + 1)
    phi = torch.linspace(0, 2 * math.pi, segments + 1)[:-1]
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    v = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3) * radius
    faces = []
    for i in range(rings):
        for j in range(segments):
            a, b = i * segments + j, i * segments + (j + 1) % segments
            c, d = a + segments, b + segments
            faces += [[a, b, c], [b, d, c]]  # counter-clockwise seen from outside (outward normals)
    return _with_uv(Mesh(v + torch.tensor(centre), torch.tensor(faces, dtype=torch.int64)))


def quad(half: float, height: float) -> Mesh:
    corners = [[-half, height, -half], [half, height, -half], [half, height, half], [-half, height, half]]
    return oriented_quad(corners, normal=(0, 1, 0))


def _with_uv(mesh: Mesh) -> Mesh:
    # Constant materials: every corner samples the middle of a 1 x 1 texture.
    return mesh.copy(v_tex=torch.full((1, 2), 0.5), t_tex_idx=torch.zeros_like(mesh.t_pos_idx))


def constant_textures(albedo: float, roughness: float) -> dict:
    return {"kd": torch.full((1, 1, 3), albedo), "ks": torch.tensor([[[0.0, roughness, 0.0]]])}


def smooth_probe() -> torch.Tensor:
    """The shipped probe averaged down to 8 x 16 and back up: low frequency, so that both
    renderers integrate it without visible noise."""
    probe = torch.from_numpy(read_hdr(PROBE_HDR)).permute(2, 0, 1)[None]
    small = torch.nn.functional.adaptive_avg_pool2d(probe, (8, 16))
    return torch.nn.functional.interpolate(small, size=(64, 128), mode="bilinear", align_corners=False)[0].permute(
        1, 2, 0
    )


def render_both(mesh: Mesh, textures: dict, probe: torch.Tensor, eye, target, spp: int = 64):
    c2w = look_at(torch.tensor(eye, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))[None]
    cameras = Cameras.from_fov(c2w, FOVY, RES)
    light = EnvironmentLight(_cube(probe))
    material = TexturedMaterial.from_tensors(kd=textures["kd"], ks=textures["ks"])
    shaded = render_mesh(mesh, material, light, cameras, get_rasterizer("torch", "cpu"), smoothness=False)["shaded"]
    traced = pathtrace(mesh, textures, probe, c2w, FOVY, RES, spp=spp)
    return shaded.detach()[0], traced[0]


def _cube(probe: torch.Tensor) -> torch.Tensor:
    return latlong_to_cubemap(probe, 32)


def test_mitsuba_sees_the_probe_in_dmtrecs_orientation():
    # A probe that encodes its own direction: the path tracer's background pixel at the centre
    # of a narrow camera looking along d must decode to d.
    probe = (latlong_directions(64, 128) + 1) / 2
    for d in ([0.9, 0.2, 0.3], [0.1, 0.5, -1.0], [-1.0, -0.3, 0.2]):
        d = torch.tensor(d) / torch.tensor(d).norm()
        c2w = look_at(torch.zeros(3), d)[None]
        mesh = quad(0.01, -50.0)  # far below the camera: only the sky shows
        empty = pathtrace(mesh, constant_textures(0.5, 1.0), probe, c2w, math.radians(1.0), (3, 3), spp=4)
        assert float(empty[0, 1, 1, 3]) == 0.0
        # hide_emitters makes the background transparent; look the radiance up directly instead.
        expected = sample_latlong(probe, d[None])[0]
        seen = _background(probe, c2w)
        assert torch.allclose(seen, expected, atol=0.03), (d, seen, expected)


def _background(probe: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """The centre pixel of Mitsuba's render of the bare probe (emitter visible)."""
    import mitsuba as mi

    from dmtrec.render import pathtrace as pt

    pt._mitsuba()
    scene = mi.load_dict(
        {
            "type": "scene",
            "integrator": {"type": "direct"},
            "emitter": {
                "type": "envmap",
                "bitmap": mi.Bitmap(probe.numpy()),
                "to_world": mi.ScalarTransform4f(pt._ENV_TO_WORLD.tolist()),
            },
        }
    )
    sensor = mi.load_dict(
        {
            "type": "perspective",
            "fov": 1.0,
            "to_world": mi.ScalarTransform4f((c2w[0].double().numpy() @ pt._GL_TO_MITSUBA_CAMERA).tolist()),
            "film": {"type": "hdrfilm", "width": 3, "height": 3, "rfilter": {"type": "box"}},
        }
    )
    return torch.from_numpy(__import__("numpy").array(mi.render(scene, sensor=sensor)))[1, 1, :3]


def test_diffuse_convex_object_agrees_within_a_few_percent():
    probe = smooth_probe()
    sphere = uv_sphere(0.6)
    shaded, traced = render_both(sphere, constant_textures(0.7, 1.0), probe, eye=(0.0, 0.8, 2.6), target=(0, 0, 0))
    inside = (shaded[..., 3] > 0.999) & (traced[..., 3] > 0.999)
    assert inside.sum() > 300
    raster, path = shaded[..., :3][inside].mean(0), traced[..., :3][inside].mean(0)
    # Split-sum and a path tracer differ here only by noise and by the diffuse models (Lambert
    # vs the principled BSDF's Disney diffuse); a wrong orientation or scale is 10 %+ off.
    assert torch.allclose(path, raster, rtol=0.06), (raster, path)
    # Silhouettes agree: same cameras, same geometry.
    cover_r, cover_p = shaded[..., 3] > 0.5, traced[..., 3] > 0.5
    assert (cover_r & cover_p).sum() / (cover_r | cover_p).sum() > 0.97


def test_an_open_box_shadows_its_own_floor_only_when_path_traced():
    # Looking down into an open box whose walls are as tall as its floor is wide.
    probe = smooth_probe()
    floor = oriented_quad([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1]], normal=(0, 1, 0))
    walls = [
        oriented_quad([[-1, 0, -1], [1, 0, -1], [1, 2, -1], [-1, 2, -1]], normal=(0, 0, 1)),
        oriented_quad([[-1, 0, 1], [1, 0, 1], [1, 2, 1], [-1, 2, 1]], normal=(0, 0, -1)),
        oriented_quad([[-1, 0, -1], [-1, 0, 1], [-1, 2, 1], [-1, 2, -1]], normal=(1, 0, 0)),
        oriented_quad([[1, 0, -1], [1, 0, 1], [1, 2, 1], [1, 2, -1]], normal=(-1, 0, 0)),
    ]
    box = merge_meshes([floor, *walls])
    eye, target = (0.0, 6.0, 0.01), (0.0, 0.0, 0.0)
    shaded, traced = render_both(box, constant_textures(0.7, 1.0), probe, eye=eye, target=target)
    floor_cover = render_both(floor, constant_textures(0.7, 1.0), probe, eye=eye, target=target, spp=1)[0][..., 3]
    on_floor = (floor_cover > 0.999) & ~_dilate(~(floor_cover > 0.999), 1)  # without its rim pixels
    assert on_floor.sum() > 100
    raster, path = shaded[..., :3][on_floor].mean(), traced[..., :3][on_floor].mean()
    # Without visibility the floor sees the whole sky and is uniform (light at infinity, one
    # normal); the path tracer lets only the box's opening (a fifth of the cosine-weighted sky
    # at the centre) and the walls' bounce light reach it. The sphere above agreed within 6 %.
    raster_floor = shaded[..., :3][on_floor].mean(-1)
    assert float(raster_floor.std() / raster_floor.mean()) < 0.02
    assert float(path / raster) < 0.7, (float(path), float(raster))


def oriented_quad(corners, normal) -> Mesh:
    """Two triangles over four corners in order, wound so that their normal is ``normal``."""
    v = torch.tensor(corners, dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    n = torch.linalg.cross(v[1] - v[0], v[2] - v[0])
    if float(n @ torch.tensor(normal, dtype=torch.float32)) < 0:
        faces = faces.flip(1)
    return _with_uv(Mesh(v, faces))


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    kernel = torch.ones(1, 1, 2 * radius + 1, 2 * radius + 1)
    return torch.nn.functional.conv2d(mask.float()[None, None], kernel, padding=radius)[0, 0] > 0


def test_mitsuba_renders_on_torchs_thread_count():
    # Dr.Jit's pool defaults to every core: a one-thread job (OMP_NUM_THREADS=1) would take them all.
    import drjit

    from dmtrec.render.pathtrace import _mitsuba

    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            _mitsuba()
            assert drjit.thread_count() == threads
    finally:
        torch.set_num_threads(before)
        _mitsuba()
