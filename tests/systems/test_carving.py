"""Space carving from the training silhouettes (``model.dmtet.carve_silhouettes``): which points a
view sees as background, and a pass-1 step keeping them outside. Expected pixels are worked out by
hand from the pinhole geometry; the torus's silhouettes come from the rasterizer, its hole and tube
from the analytic shape."""

import math

import torch

from dmtrec.geometry import DMTetGeometry
from dmtrec.geometry.sdf import torus_sdf
from dmtrec.render.camera import Cameras, look_at
from dmtrec.render.carving import background_points, carved_sdf
from dmtrec.render.raster import get_rasterizer
from dmtrec.systems.pipeline import ReconstructionSystem


def front_camera(size: int = 8) -> Cameras:
    """At (0, 0, 3) looking at the origin, 60 degrees of view: the image spans x in
    [-tan(30) 3, tan(30) 3] = [-1.732, 1.732] at the origin's depth."""
    return Cameras.from_fov(look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3))[None], math.pi / 3, (size, size))


def test_background_points_follow_the_pixels_they_project_to():
    alpha = torch.zeros(1, 8, 8)
    alpha[0, 2:6, 2:6] = 1.0  # a centred 4 x 4 silhouette: pixel columns 2-5 (x from -0.866 to 0.866)
    points = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # centre pixel: covered
            [0.9, 0.0, 0.0],  # ndc 0.9 / 1.732 = 0.52: column 6, next to the silhouette
            [1.5, 0.0, 0.0],  # ndc 0.866: column 7, two pixels off
            [0.0, 0.0, 4.0],  # behind the camera
            [5.0, 0.0, 0.0],  # outside the image
        ]
    )
    cameras = front_camera()
    assert background_points(points, cameras, alpha, margin=0).tolist() == [False, True, True, False, False]
    # grown by one pixel, column 6 is covered; column 7 is still background
    assert background_points(points, cameras, alpha, margin=1).tolist() == [False, False, True, False, False]


def test_carved_sdf_sets_marked_vertices_outside_and_keeps_the_rest():
    sdf = torch.tensor([0.5, -0.2, 0.0, 0.3])
    carved = torch.tensor([True, True, True, False])
    assert torch.equal(carved_sdf(sdf, carved), torch.tensor([-0.5, -0.2, -1e-4, 0.3]))


def torus_views():
    """The analytic torus (axis z, radii 0.7 and 0.25) seen from above, below and two sides:
    cameras and coverage from the rasterizer."""
    geo = DMTetGeometry(resolution=32, scale=2.4, init="sphere")
    with torch.no_grad():
        geo.sdf.copy_(torus_sdf(geo.grid_verts, 0.7, 0.25))
    mesh = geo.mesh(with_uv=False)
    eyes = torch.tensor([[0.0, 0.01, 4.0], [0.0, 0.01, -4.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    c2w = torch.stack([look_at(e, torch.zeros(3)) for e in eyes])
    cameras = Cameras.from_fov(c2w, math.radians(45), (64, 64))
    rast, _ = get_rasterizer("torch", "cpu").rasterize(
        cameras.project(mesh.v_pos.detach()), mesh.t_pos_idx.int(), (64, 64), grad_db=False
    )
    return cameras, (rast[..., 3] > 0).float()


def test_a_torus_hole_is_carved_and_its_tube_kept():
    cameras, alpha = torus_views()
    g = torch.linspace(-1.2, 1.2, 25)
    p = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    carved = background_points(p, cameras, alpha, margin=1)
    ring = (p[:, :2].norm(dim=1) - 0.7).square() + p[:, 2].square()
    assert not carved[ring < 0.25**2].any(), "a point of the tube was carved"
    hole = (p[:, :2].norm(dim=1) < 0.3) & (p[:, 2].abs() < 0.2)
    assert hole.sum() > 0 and carved[hole].all(), "a point in the hole was kept"


def test_a_pass_one_step_keeps_carved_vertices_outside():
    cameras, alpha = torus_views()
    system = ReconstructionSystem(
        iters_dmtet=10,
        iters_mesh=1,
        rasterizer="torch",
        dmtet={"resolution": 16, "scale": 2.4, "init": "sphere", "carve_silhouettes": True},
        light={"init": "constant", "base_res": 32},
        material={"volumetric": {"n_levels": 2, "log2_table_size": 8}},
    )
    img = torch.cat([torch.ones(4, 64, 64, 3), alpha[..., None]], -1)
    system.carve({"img": img[:2], "c2w": cameras.c2w[:2], "proj": cameras.proj[:2]})  # top and bottom views
    system.carve({"img": img[2:], "c2w": cameras.c2w[2:], "proj": cameras.proj[2:]})
    expected = background_points(system.geometry.deformed_vertices(), cameras, alpha, margin=1)
    assert torch.equal(system._carved, expected)  # marks add up over batches
    sdf = system.geometry.sdf.detach()
    assert (sdf[expected] < 0).all()
    p = system.geometry.grid_verts
    hole = (p[:, :2].norm(dim=1) < 0.3) & (p[:, 2].abs() < 0.2)
    assert (sdf[hole] < 0).all(), "the sphere start still fills the torus's hole"
