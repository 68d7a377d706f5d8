"""Torch backend ``interpolate``: values, broadcasting, pixel derivatives and gradients."""

import numpy as np
import pytest
import torch
from raster_helpers import clip_from_pixels, pixel_to_clip, project, tris

from dmtrec.render.raster.torch_backend import TorchRasterizer

R = TorchRasterizer("cpu")


def screen_quad(height=12, width=10, batch=1):
    """Two triangles covering the whole image at w = 1, so clip xy is affine in pixels."""
    pos = clip_from_pixels([(-1, -1), (width + 1, -1), (width + 1, height + 1), (-1, height + 1)], height, width)
    pos = pos.expand(batch, -1, -1).contiguous()
    return pos, tris([[0, 1, 2], [0, 2, 3]])


def test_interpolated_clip_xy_is_the_pixel_centre():
    height, width = 12, 10
    pos, tri = screen_quad(height, width)
    rast, rast_db = R.rasterize(pos, tri, (height, width))
    out, out_da = R.interpolate(pos[0, :, :2].contiguous(), rast, tri, rast_db, diff_attrs=[0, -1])
    py, px = np.mgrid[0:height, 0:width]
    cx, cy = pixel_to_clip(px + 0.5, py + 0.5, height, width)
    np.testing.assert_allclose(out[0, ..., 0].numpy(), cx, atol=1e-6)
    np.testing.assert_allclose(out[0, ..., 1].numpy(), cy, atol=1e-6)
    # d(clip x)/dX = 2 / W, d(clip y)/dY = 2 / H, cross terms 0
    expected = np.broadcast_to([2 / width, 0, 0, 2 / height], (height, width, 4))
    np.testing.assert_allclose(out_da[0].numpy(), expected, atol=1e-6)


def test_perspective_interpolation_recovers_camera_space_points():
    # Interpolating camera-space positions must land on the pixel's viewing ray.
    cam = np.array([(-1.0, -1.0, -3.0), (1.5, -0.8, -5.0), (0.0, 1.2, -2.5)])
    pos = torch.tensor(project(cam), dtype=torch.float32)
    tri = tris([0, 1, 2])
    rast, _ = R.rasterize(pos, tri, (16, 16))
    out, _ = R.interpolate(torch.tensor(cam, dtype=torch.float32), rast, tri)
    covered = rast[0, ..., 3] > 0
    assert covered.sum() > 30
    p = out[0][covered].double().numpy()
    clip = project(p)
    py, px = np.nonzero(covered.numpy())
    cx, cy = pixel_to_clip(px + 0.5, py + 0.5, 16, 16)
    np.testing.assert_allclose(clip[:, 0] / clip[:, 3], cx, atol=2e-5)
    np.testing.assert_allclose(clip[:, 1] / clip[:, 3], cy, atol=2e-5)


def test_empty_pixels_are_zero():
    pos = clip_from_pixels([(1, 1), (5, 1), (1, 5)], 8, 8)
    tri = tris([0, 1, 2])
    rast, rast_db = R.rasterize(pos, tri, (8, 8))
    attr = torch.full((3, 2), 7.0)
    out, out_da = R.interpolate(attr, rast, tri, rast_db, diff_attrs="all")
    empty = rast[0, ..., 3] == 0
    assert empty.sum() > 20 and (~empty).sum() > 3
    assert (out[0][empty] == 0).all() and (out_da[0][empty] == 0).all()
    torch.testing.assert_close(out[0][~empty], torch.full_like(out[0][~empty], 7.0))


def test_attribute_batch_broadcasting():
    pos, tri = screen_quad(batch=3)
    rast, _ = R.rasterize(pos, tri, (12, 10))
    shared = torch.randn(4, 5)
    per_image = torch.randn(3, 4, 5)
    out_shared, _ = R.interpolate(shared, rast, tri)
    out_one, _ = R.interpolate(shared[None], rast, tri)
    out_batched, _ = R.interpolate(shared.expand(3, -1, -1).contiguous(), rast, tri)
    torch.testing.assert_close(out_shared, out_batched)
    torch.testing.assert_close(out_one, out_batched)
    out_each, _ = R.interpolate(per_image, rast, tri)
    for b in range(3):
        torch.testing.assert_close(out_each[b : b + 1], R.interpolate(per_image[b], rast[b : b + 1], tri)[0])
    assert not torch.allclose(out_each[0], out_each[1])


def test_no_diff_attrs_returns_none():
    pos, tri = screen_quad()
    rast, rast_db = R.rasterize(pos, tri, (12, 10))
    assert R.interpolate(torch.randn(4, 2), rast, tri, rast_db)[1] is None
    assert R.interpolate(torch.randn(4, 2), rast, tri, rast_db, diff_attrs=[])[1] is None


def test_gradients_match_finite_differences():
    # Barycentrics and their derivatives are inputs here, so every input is smooth: gradcheck applies.
    pos = torch.tensor(project([(-1.0, -1.0, -3.0), (1.5, -0.8, -5.0), (0.0, 1.2, -2.5), (1.2, 1.1, -3.0)]))
    tri = tris([[0, 1, 2], [1, 3, 2]])
    rast, rast_db = R.rasterize(pos.float(), tri, (7, 8))
    assert (rast[..., 3] > 0).sum() > 10 and (rast[..., 3] == 0).sum() > 3
    fixed = rast[..., 2:].double()
    gen = torch.Generator().manual_seed(0)
    attr = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    uv = rast[..., :2].double().requires_grad_(True)
    db = rast_db.double().requires_grad_(True)

    def f(attr, uv, db):
        return R.interpolate(attr, torch.cat([uv, fixed], -1), tri, db, diff_attrs=[2, 0])

    assert torch.autograd.gradcheck(f, (attr, uv, db), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(attr=torch.randn(2, 4, 3)), "attr has batch size 2 but rast has 1"),
        (dict(attr=torch.randn(4)), "attr must be a float tensor of shape"),
        (dict(diff_attrs=[0]), "diff_attrs needs rast_db"),
        (dict(diff_attrs=[3], with_db=True), r"diff_attrs \[3\] out of range for 3 attributes"),
        (dict(diff_attrs="some", with_db=True), "diff_attrs must be 'all' or a list"),
        (dict(tri=tris([0, 1, 7])), r"tri holds vertex indices in \[0, 7\] but pos has 4 vertices"),
        (dict(tri=torch.tensor([[0, 1, 2]])), "tri must be an int32 tensor of shape"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    pos, tri = screen_quad()
    rast, rast_db = R.rasterize(pos, tri, (12, 10))
    attr = kwargs.pop("attr", torch.randn(4, 3))
    tri = kwargs.pop("tri", tri)
    db = rast_db if kwargs.pop("with_db", False) else None
    with pytest.raises(ValueError, match=message):
        R.interpolate(attr, rast, tri, db, **kwargs)
