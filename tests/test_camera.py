import math

import torch

from dmtrec.render.camera import Cameras, look_at, perspective
from dmtrec.render.camera_distributions import orbit_c2w, random_orbit_c2w


def test_look_at_points_minus_z_at_target_with_y_up():
    c2w = look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3))
    assert torch.allclose(c2w[:3, 2], torch.tensor([0.0, 0.0, 1.0]))  # -Z looks at the origin
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(c2w[:3, 0], torch.tensor([1.0, 0.0, 0.0]))
    # looking straight down the up axis still gives an orthonormal frame
    down = look_at(torch.tensor([0.0, 5.0, 0.0]), torch.zeros(3))
    assert torch.allclose(down[:3, :3].T @ down[:3, :3], torch.eye(3), atol=1e-6)


def test_projection_puts_target_at_centre_and_up_at_row_zero():
    cams = Cameras.from_fov(look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3)), math.radians(45), (64, 96))
    clip = cams.project(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.5, 0.0, 0.0]]))
    ndc = clip[..., :3] / clip[..., 3:]
    assert torch.allclose(ndc[0, 0, :2], torch.zeros(2), atol=1e-6)
    assert ndc[0, 1, 1] < 0  # world up maps to clip y < 0, which is image row 0 in nvdiffrast
    assert ndc[0, 2, 0] > 0  # world +X is to the right
    # the vertical extent at distance 3 is 3 * tan(fovy / 2)
    edge = cams.project(torch.tensor([[0.0, 3.0 * math.tan(math.radians(22.5)), 0.0]]))
    assert abs((edge[0, 0, 1] / edge[0, 0, 3]).item() + 1.0) < 1e-5
    assert torch.allclose(cams.campos, torch.tensor([[0.0, 0.0, 3.0]]))


def test_fovx_conversion_and_depth_range():
    fovy = Cameras.fovy_from_fovx(math.radians(60), (100, 200))
    assert abs(math.tan(fovy / 2) * 2 - math.tan(math.radians(30))) < 1e-9
    proj = perspective(0.8, 1.0, near=0.5, far=10.0)
    for depth, expected in ((0.5, -1.0), (10.0, 1.0)):
        p = proj @ torch.tensor([0.0, 0.0, -depth, 1.0])
        assert abs((p[2] / p[3]).item() - expected) < 1e-5


def test_orbit_cameras_sit_on_the_sphere_and_look_inwards():
    gen = torch.Generator().manual_seed(0)
    c2w = random_orbit_c2w(16, 2.5, gen)
    assert torch.allclose(c2w[:, :3, 3].norm(dim=-1), torch.full((16,), 2.5), atol=1e-5)
    forward = -c2w[:, :3, 2]
    assert torch.allclose((forward * -c2w[:, :3, 3] / 2.5).sum(-1), torch.ones(16), atol=1e-5)
    single = orbit_c2w(torch.tensor([math.pi / 2]), torch.tensor([0.0]), 2.0)
    assert torch.allclose(single[0, :3, 3], torch.tensor([2.0, 0.0, 0.0]), atol=1e-6)
