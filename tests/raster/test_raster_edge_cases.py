"""Torch backend edge cases: empty and degenerate input, back faces, clipping, odd sizes, batches, errors."""

import numpy as np
import pytest
import torch
from raster_helpers import clip_from_pixels, pixel_to_clip, project, reference_raster, tris, unambiguous_pixels

import dmtrec.render.raster.torch_rasterize as torch_rasterize
from dmtrec.render.raster.torch_backend import TorchRasterizer
from dmtrec.render.raster.torch_common import float_to_tri_id

R = TorchRasterizer("cpu")


def test_zero_triangles_give_empty_outputs_and_zero_gradients():
    pos = torch.randn(2, 5, 4, requires_grad=True)
    tri = torch.zeros(0, 3, dtype=torch.int32)
    rast, rast_db = R.rasterize(pos, tri, (6, 9))
    assert rast.shape == rast_db.shape == (2, 6, 9, 4)
    assert (rast == 0).all() and (rast_db == 0).all()
    out, out_da = R.interpolate(torch.randn(5, 3), rast, tri, rast_db, diff_attrs="all")
    assert out.shape == (2, 6, 9, 3) and (out == 0).all() and (out_da == 0).all()
    color = torch.rand(2, 6, 9, 3)
    torch.testing.assert_close(R.antialias(color, rast, pos, tri), color)
    (rast.sum() + rast_db.sum()).backward()
    assert torch.equal(pos.grad, torch.zeros_like(pos))


@pytest.mark.parametrize(
    "vertices, faces",
    [
        ([(1, 1), (4, 4), (7, 7)], [0, 1, 2]),  # collinear
        ([(1, 1), (7, 2), (3, 7)], [0, 0, 2]),  # repeated vertex index
        ([(4.49, 4.49), (4.51, 4.49), (4.5, 4.51)], [0, 1, 2]),  # around a centre, snaps to zero area
    ],
)
def test_degenerate_triangles_draw_nothing(vertices, faces):
    pos = clip_from_pixels(vertices, 8, 8)
    rast, rast_db = R.rasterize(pos, tris(faces), (8, 8))
    assert (rast == 0).all() and (rast_db == 0).all()


def test_back_faces_are_drawn_like_front_faces():
    pos = clip_from_pixels([(0.7, 1.2), (9.3, 2.1), (3.9, 8.6)], 10, 10)
    attr = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    front, front_db = R.rasterize(pos, tris([0, 1, 2]), (10, 10))
    back, back_db = R.rasterize(pos, tris([0, 2, 1]), (10, 10))
    assert torch.equal(front[..., 3] > 0, back[..., 3] > 0) and (front[..., 3] > 0).sum() > 20
    torch.testing.assert_close(
        R.interpolate(attr, front, tris([0, 1, 2]))[0], R.interpolate(attr, back, tris([0, 2, 1]))[0]
    )
    torch.testing.assert_close(
        R.interpolate(attr, front, tris([0, 1, 2]), front_db, "all")[1],
        R.interpolate(attr, back, tris([0, 2, 1]), back_db, "all")[1],
    )


@pytest.mark.parametrize(
    "apex",
    [
        (0.0, 0.6, 1.0),  # behind the camera: w < 0
        (0.2, 0.3, -0.3),
    ],  # between the camera and the near plane (0.5)
    ids=["behind-camera", "near-plane"],
)
def test_triangles_crossing_the_near_plane_are_clipped(apex):
    cam = np.array([(-1.5, -1.2, -3.0), (1.4, -1.0, -2.5), apex])
    pos = project(cam)
    height, width = 20, 24
    rast, _ = R.rasterize(torch.tensor(pos, dtype=torch.float32), tris([0, 1, 2]), (height, width))
    ref_ids, ref_u, ref_v, ref_zw = reference_raster(pos, [[0, 1, 2]], height, width)
    _, stable = unambiguous_pixels(pos, [[0, 1, 2]], height, width)
    ids = float_to_tri_id(rast[0, ..., 3]).numpy()
    assert stable.mean() > 0.85 and 40 < (ref_ids > 0).sum() < height * width - 40
    np.testing.assert_array_equal(ids[stable], ref_ids[stable])
    inside = stable & (ref_ids > 0)
    np.testing.assert_allclose(rast[0, ..., 0].numpy()[inside], ref_u[inside], atol=1e-5)
    np.testing.assert_allclose(rast[0, ..., 1].numpy()[inside], ref_v[inside], atol=1e-5)
    np.testing.assert_allclose(rast[0, ..., 2].numpy()[inside], ref_zw[inside], atol=1e-5)
    assert rast[..., 2].abs().max() <= 1.0


def test_vertices_far_outside_the_viewport():
    height, width = 9, 11
    # beyond cudaraster's guard band: one huge triangle over the whole image
    pos = torch.tensor([[-60.0, -60.0, 0.1, 1.0], [80.0, -50.0, 0.1, 1.0], [-40.0, 90.0, 0.1, 1.0]])
    rast, rast_db = R.rasterize(pos, tris([0, 1, 2]), (height, width))
    assert (rast[..., 3] == 1).all()
    ref = reference_raster(pos.double().numpy(), [[0, 1, 2]], height, width)
    np.testing.assert_allclose(rast[0, ..., 0].numpy(), ref[1], atol=1e-5)
    np.testing.assert_allclose(rast[0, ..., 1].numpy(), ref[2], atol=1e-5)
    # inside the guard band but outside the viewport
    pos = clip_from_pixels([(-7.3, 2.2), (15.8, -4.1), (4.4, 20.9)], height, width)
    ref_ids, stable = unambiguous_pixels(pos.double().numpy(), [[0, 1, 2]], height, width)
    rast, _ = R.rasterize(pos, tris([0, 1, 2]), (height, width))
    assert stable.mean() > 0.8
    np.testing.assert_array_equal(float_to_tri_id(rast[0, ..., 3]).numpy()[stable], ref_ids[stable])


@pytest.mark.parametrize("size", [(13, 7), (7, 13), (1, 1), (3, 17)])
def test_any_resolution(size):
    height, width = size
    pos = clip_from_pixels([(-1, -1), (width + 1, -1), (width + 1, height + 1), (-1, height + 1)], height, width)
    tri = tris([[0, 1, 2], [0, 2, 3]])
    rast, _ = R.rasterize(pos, tri, size)
    assert (rast[..., 3] > 0).all()
    out, _ = R.interpolate(pos[:, :2].contiguous(), rast, tri)
    py, px = np.mgrid[0:height, 0:width]
    cx, cy = pixel_to_clip(px + 0.5, py + 0.5, height, width)
    np.testing.assert_allclose(out[0].numpy(), np.stack([cx, cy], -1), atol=1e-6)


def test_batch_items_are_independent():
    gen = torch.Generator().manual_seed(0)
    batch = 5
    pos = torch.rand(batch, 9, 4, generator=gen) * 2 - 1
    pos[..., 3] = 1.0 + torch.rand(batch, 9, generator=gen)
    tri = tris([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 4, 8]])
    rast, rast_db = R.rasterize(pos, tri, (15, 17))
    assert (rast[..., 3] > 0).sum() > 100
    for b in range(batch):
        one, one_db = R.rasterize(pos[b], tri, (15, 17))  # [V, 4]: a batch of one
        assert torch.equal(rast[b : b + 1], one) and torch.equal(rast_db[b : b + 1], one_db)
    color = torch.rand(batch, 15, 17, 3, generator=gen)
    out = R.antialias(color, rast, pos, tri)
    assert torch.equal(out[2:3], R.antialias(color[2:3], rast[2:3], pos[2:3], tri))


def test_chunked_processing_gives_the_same_image(monkeypatch):
    pos = torch.tensor(
        project(
            [
                (-1.0, -1.0, -3.0),
                (1.5, -0.8, -5.0),
                (0.0, 1.2, -2.5),
                (-1.2, 0.9, -4.5),
                (1.3, 0.7, -2.8),
                (-0.2, -1.3, -3.6),
                (0.0, 0.3, 0.5),
            ]
        ),
        dtype=torch.float32,
    )
    tri = tris([[0, 1, 2], [3, 4, 5], [0, 4, 6]])  # the last one crosses the near plane
    expected = R.rasterize(pos.expand(2, -1, -1), tri, (20, 18))
    monkeypatch.setattr(torch_rasterize, "CANDIDATES_PER_CHUNK", 37)
    monkeypatch.setattr(torch_rasterize, "TRIANGLES_PER_CHUNK", 2)
    chunked = R.rasterize(pos.expand(2, -1, -1), tri, (20, 18))
    assert torch.equal(expected[0], chunked[0]) and torch.equal(expected[1], chunked[1])
    assert (expected[0][..., 3] == 3).any()


@pytest.mark.parametrize(
    "pos, tri, kwargs, message",
    [
        (torch.rand(4, 4), torch.tensor([[0, 1, 2]]), {}, "tri must be an int32 tensor of shape"),
        (
            torch.rand(4, 4),
            tris([0, 1, 2]).reshape(1, 3).repeat(1, 2)[:, :4],
            {},
            "tri must be an int32 tensor of shape",
        ),
        (torch.rand(4, 3), tris([0, 1, 2]), {}, "pos must be a float32 or float64 tensor of shape"),
        (torch.rand(4, 4).half(), tris([0, 1, 2]), {}, "pos must be a float32 or float64 tensor"),
        (torch.rand(0, 4, 4), tris([0, 1, 2]), {}, "pos must be a float32 or float64 tensor"),
        (torch.rand(4, 4), tris([0, 1, 4]), {}, r"tri holds vertex indices in \[0, 4\] but pos has 4 vertices"),
        (torch.rand(4, 4), tris([0, 1, -1]), {}, r"tri holds vertex indices in \[-1, 1\]"),
        (torch.rand(4, 4), tris([0, 1, 2]), {"ranges": torch.tensor([[0, 1]], dtype=torch.int32)}, "ranges"),
        (torch.rand(4, 4), tris([0, 1, 2]), {"resolution": (0, 4)}, "resolution must be two positive integers"),
        (torch.rand(4, 4), tris([0, 1, 2]), {"resolution": (2.5, 4)}, "resolution must be two positive integers"),
        (torch.rand(4, 4), tris([0, 1, 2]), {"resolution": 8}, "resolution must be two positive integers"),
    ],
)
def test_bad_rasterize_arguments_are_clear_errors(pos, tri, kwargs, message):
    resolution = kwargs.pop("resolution", (4, 4))
    with pytest.raises(ValueError, match=message):
        R.rasterize(pos, tri, resolution, **kwargs)
