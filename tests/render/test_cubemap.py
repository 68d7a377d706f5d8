"""Cube map and latlong geometry: texel directions, solid angles, resampling round trips."""

import math

import torch

from dmtrec.render import cubemap


def test_solid_angles_cover_the_sphere():
    for res in (1, 4, 16):
        area = cubemap.cube_texel_solid_angles(res, dtype=torch.float64)
        assert area.shape == (6, res, res)
        assert abs(area.sum().item() - 4 * math.pi) < 1e-9
    # Centre texels subtend more than corner texels; each matches a fine numerical integral.
    area = cubemap.cube_texel_solid_angles(4, dtype=torch.float64)
    assert area[0, 1, 1] > area[0, 0, 0]
    fine = 400
    x = (torch.arange(fine, dtype=torch.float64) + 0.5) / fine * 0.5 - 1.0  # texel [0, 0] spans [-1, -0.5]^2
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    numeric = ((0.5 / fine) ** 2 / (1 + xx**2 + yy**2) ** 1.5).sum().item()
    assert abs(area[0, 0, 0].item() - numeric) < 1e-6


def test_texel_directions_follow_the_rasterizer_cube_layout(rasterizer):
    # Looking up a cube map along its own texel directions must return exactly those texels.
    res = 8
    ids = torch.arange(6 * res * res, dtype=torch.float32).reshape(6, res, res, 1)
    directions = cubemap.cube_directions(res).reshape(1, 6 * res, res, 3)
    got = rasterizer.texture(ids[None], directions, filter_mode="nearest", boundary_mode="cube")
    torch.testing.assert_close(got.reshape(ids.shape), ids)
    # Face 0 is +x, face 2 is +y, face 4 is +z.
    d = cubemap.cube_directions(res)
    assert (d[0, ..., 0] > 0.5).all() and (d[2, ..., 1] > 0.5).all() and (d[4, ..., 2] > 0.5).all()


def test_latlong_directions_round_trip():
    d = cubemap.latlong_directions(16, 32, dtype=torch.float64)
    uv = cubemap.direction_to_latlong_uv(d)
    expect_u = (torch.arange(32, dtype=torch.float64) + 0.5) / 32
    expect_v = (torch.arange(16, dtype=torch.float64) + 0.5) / 16
    torch.testing.assert_close(uv[..., 0], expect_u.expand(16, 32))
    torch.testing.assert_close(uv[..., 1], expect_v[:, None].expand(16, 32))
    # nvdiffrec's orientation: row 0 is the +y pole, the centre column looks down -z.
    assert d[0, 16, 1] > 0.99
    assert d[8, 16, 2] < -0.99


def _smooth_field(d: torch.Tensor) -> torch.Tensor:
    return torch.stack([1.0 + 0.5 * d[..., 0], 1.0 + 0.5 * d[..., 1] * d[..., 2], 1.5 - 0.3 * d[..., 2]], -1)


def test_latlong_cube_round_trip(rasterizer):
    latlong = _smooth_field(cubemap.latlong_directions(64, 128))
    cube = cubemap.latlong_to_cubemap(latlong, 32)
    torch.testing.assert_close(cube, _smooth_field(cubemap.cube_directions(32)), atol=2e-3, rtol=0)
    back = cubemap.cubemap_to_latlong(cube, 64, 128, rasterizer)
    torch.testing.assert_close(back, latlong, atol=3e-3, rtol=0)


def test_sample_latlong_wraps_in_azimuth_and_clamps_at_the_poles():
    image = torch.tensor([[[0.0], [1.0], [2.0], [3.0]], [[4.0], [5.0], [6.0], [7.0]]])  # [2, 4, 1]
    # The seam between the last and first column (azimuth pi = -pi, direction +z) blends them.
    seam = cubemap.sample_latlong(image, torch.tensor([[0.0, 0.0, 1.0]]))
    assert seam.item() == (3.0 + 0.0) / 2 * 0.5 + (7.0 + 4.0) / 2 * 0.5
    pole = cubemap.sample_latlong(image, torch.tensor([[1e-4, 1.0, 0.0]]))
    assert 0.0 <= pole.item() <= 3.0
