import math

import torch

from dmtrec.render.camera_distributions import orbit_view_c2w, random_rotation, random_view_c2w


def rotate_x(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]], dtype=torch.float64)


def rotate_y(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]], dtype=torch.float64)


def translate(x, y, z):
    m = torch.eye(4, dtype=torch.float64)
    m[:3, 3] = torch.tensor([x, y, z], dtype=torch.float64)
    return m


def test_random_rotations_are_proper_and_uniform():
    g = torch.Generator().manual_seed(0)
    rotations = random_rotation(g, 4000)
    assert random_rotation(g).shape == (3, 3)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(rotations.transpose(1, 2) @ rotations, eye.expand(4000, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(rotations), torch.ones(4000, dtype=torch.float64))
    # Haar measure: every entry has mean 0 and variance 1/3 (a biased sampler, e.g. uniform
    # Euler angles, fails this).
    assert rotations.mean(0).abs().max() < 0.03
    assert (rotations.pow(2).mean(0) - 1.0 / 3.0).abs().max() < 0.03


def test_random_views_put_the_jittered_object_cam_radius_down_minus_z():
    g = torch.Generator().manual_seed(1)
    radius, jitter = 3.0, 0.25
    for _ in range(50):
        c2w = random_view_c2w(g, radius, jitter).double()
        assert torch.allclose(c2w[:3, :3].T @ c2w[:3, :3], torch.eye(3, dtype=torch.float64), atol=1e-5)
        origin_in_camera = torch.linalg.inv(c2w) @ torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
        assert origin_in_camera[:2].abs().max() <= jitter + 1e-5
        assert -radius - jitter - 1e-5 <= origin_in_camera[2] <= -radius + jitter + 1e-5


def test_orbit_matches_nvdiffrec_rotate_scene_and_test_views_sit_between():
    radius, n = 3.0, 6
    val = orbit_view_c2w(n, radius)
    for i in range(n):
        mv = translate(0, 0, -radius) @ rotate_x(0.4) @ rotate_y(2 * math.pi * i / n)
        assert torch.allclose(val[i].double(), torch.linalg.inv(mv), atol=1e-5)
    test = orbit_view_c2w(n, radius, phase=0.5)
    mv = translate(0, 0, -radius) @ rotate_x(0.4) @ rotate_y(2 * math.pi * 0.5 / n)
    assert torch.allclose(test[0].double(), torch.linalg.inv(mv), atol=1e-5)
    # no test camera coincides with a validation camera
    distances = torch.cdist(val[:, :3, 3], test[:, :3, 3])
    assert distances.min() > 0.5
