"""Torch backend ``rasterize``: coverage, tie rule, depth, barycentrics, pixel derivatives, gradients."""

import math

import numpy as np
import pytest
import torch
from raster_helpers import clip_from_pixels, project, reference_raster, tris, unambiguous_pixels

from dmtrec.render.raster.torch_backend import TorchRasterizer
from dmtrec.render.raster.torch_common import float_to_tri_id, tri_id_to_float

R = TorchRasterizer("cpu")


def ids_of(rast):
    return float_to_tri_id(rast[..., 3]).numpy()


@pytest.mark.parametrize(
    "vertices",
    [
        [(1.125, 8.75), (2.8125, 0.5), (10.3125, 5.875)],  # on the 1/16-pixel grid: snapping changes nothing
        [(9.4, 5.3), (0.75, 9.48), (0.79, 0.13)],  # off the grid
    ],
)
def test_covers_exactly_the_pixel_centres_inside(vertices):
    height, width = 10, 12
    pos = clip_from_pixels(vertices, height, width, z=0.3)
    ref_ids, stable = unambiguous_pixels(pos.double().numpy(), [[0, 1, 2]], height, width, margin=0.05)
    assert stable.all(), "scene must keep pixel centres away from the edges"
    rast, _ = R.rasterize(pos[None], tris([0, 1, 2]), (height, width))
    assert 20 < ref_ids.sum() < height * width
    np.testing.assert_array_equal(ids_of(rast[0]), ref_ids)
    np.testing.assert_allclose(rast[0, ..., 2][ref_ids > 0].numpy(), 0.3, rtol=1e-6)


@pytest.mark.parametrize("faces", [[[0, 1, 2], [0, 2, 3]], [[0, 2, 1], [0, 3, 2]]], ids=["ccw", "cw"])
def test_tie_rule_for_centres_on_edges(faces):
    # A 3x3-pixel square whose edges and diagonal run through pixel centres (pixel i at i + 0.5):
    # cudaraster keeps centres on the left and top-of-image (low y) edges and drops those on the
    # right and bottom (high y) edges; each centre on the shared diagonal goes to exactly one triangle.
    height, width = 8, 8
    pos = clip_from_pixels([(2.5, 1.5), (5.5, 1.5), (5.5, 4.5), (2.5, 4.5)], height, width)
    rast, _ = R.rasterize(pos, tris(faces), (height, width))
    expected = np.zeros((height, width), dtype=bool)
    expected[1:4, 2:5] = True
    np.testing.assert_array_equal(ids_of(rast[0]) > 0, expected)
    counts = sum((ids_of(R.rasterize(pos, tris(f), (height, width))[0][0]) > 0).astype(int) for f in faces)
    np.testing.assert_array_equal(counts, expected.astype(int))


@pytest.mark.parametrize("left, covered", [(4.47, True), (4.53, True), (4.54, False)])
def test_vertices_snap_to_the_nearest_sixteenth_of_a_pixel(left, covered):
    # A left edge at 4.53 px snaps onto the centre of pixel 4 (4.5) and the left-edge rule keeps
    # it, although the exact edge passes right of the centre; at 4.54 it snaps to 4.5625.
    height, width = 4, 16
    pos = clip_from_pixels([(left, -2), (12, -2), (12, 6), (left, 6)], height, width)
    rast, _ = R.rasterize(pos, tris([[0, 1, 2], [0, 2, 3]]), (height, width))
    column = rast[0, :, 4, 3] > 0
    assert bool(column.all()) if covered else not column.any()
    assert (rast[0, :, 5:12, 3] > 0).all() and (rast[0, :, :4, 3] == 0).all()


def test_fan_around_a_pixel_centre_has_no_holes_or_overlaps():
    height, width = 12, 12
    angles = [math.radians(10 + 45 * k) for k in range(8)]
    ring = [(5.5 + 4.3 * math.cos(a), 5.5 + 4.3 * math.sin(a)) for a in angles]
    pos = clip_from_pixels([(5.5, 5.5)] + ring, height, width)
    faces = [[0, 1 + k, 1 + (k + 1) % 8] for k in range(8)]
    counts = sum((ids_of(R.rasterize(pos, tris(f), (height, width))[0][0]) > 0).astype(int) for f in faces)
    union = ids_of(R.rasterize(pos, tris(faces), (height, width))[0][0]) > 0
    assert counts.max() == 1 and counts[5, 5] == 1
    np.testing.assert_array_equal(counts > 0, union)
    assert union.sum() > 40


@pytest.mark.parametrize("near_first", [True, False])
def test_nearest_triangle_wins(near_first):
    height, width = 16, 16
    far = clip_from_pixels([(1, 1), (14, 2), (3, 14)], height, width, z=0.5)
    near = clip_from_pixels([(15, 15), (2, 12), (12, 1.5)], height, width, z=0.2)
    pos = torch.cat([near, far] if near_first else [far, near])
    near_id = 1 if near_first else 2
    rast, _ = R.rasterize(pos, tris([[0, 1, 2], [3, 4, 5]]), (height, width))
    ids = ids_of(rast[0])
    ref_ids = reference_raster(pos.double().numpy(), [[0, 1, 2], [3, 4, 5]], height, width)[0]
    both = (reference_raster(far.double().numpy(), [[0, 1, 2]], height, width)[0] > 0) & (
        reference_raster(near.double().numpy(), [[0, 1, 2]], height, width)[0] > 0
    )
    assert both.sum() > 10
    assert (ids[both] == near_id).all()
    np.testing.assert_allclose(rast[0, ..., 2].numpy()[both], 0.2, rtol=1e-6)
    assert (ids == ref_ids).mean() > 0.97  # the rest are edge pixels, where snapping decides


def tilted_scene():
    """Two interpenetrating triangles seen in perspective, as float64 clip positions."""
    cam = [
        (-1.0, -1.0, -3.0),
        (1.5, -0.8, -5.0),
        (0.0, 1.2, -2.5),
        (-1.2, 0.9, -4.5),
        (1.3, 0.7, -2.8),
        (-0.2, -1.3, -3.6),
    ]
    return torch.tensor(project(cam)), tris([[0, 1, 2], [3, 4, 5]])


def test_perspective_correct_barycentrics_and_depth():
    pos, tri = tilted_scene()
    height, width = 32, 28
    rast, _ = R.rasterize(pos.float(), tri, (height, width))
    ref_ids, ref_u, ref_v, ref_zw = reference_raster(pos.numpy(), tri.numpy(), height, width)
    _, stable = unambiguous_pixels(pos.numpy(), tri.numpy(), height, width)
    check = stable & (ref_ids > 0)
    assert check.sum() > 100 and stable.mean() > 0.8
    np.testing.assert_array_equal(ids_of(rast[0])[stable], ref_ids[stable])
    np.testing.assert_allclose(rast[0, ..., 0].numpy()[check], ref_u[check], atol=2e-6)
    np.testing.assert_allclose(rast[0, ..., 1].numpy()[check], ref_v[check], atol=2e-6)
    np.testing.assert_allclose(rast[0, ..., 2].numpy()[check], ref_zw[check], atol=2e-6)


def test_rast_db_is_the_pixel_derivative_of_the_barycentrics():
    pos, tri = tilted_scene()
    height, width = 32, 28
    rast, rast_db = R.rasterize(pos.float(), tri, (height, width))
    h = 1e-3
    ids, stable = unambiguous_pixels(pos.numpy(), tri.numpy(), height, width)
    check = stable & (ids > 0)
    derivs = []
    for off in ((h, 0), (0, h)):
        plus = reference_raster(pos.numpy(), tri.numpy(), height, width, off)
        minus = reference_raster(pos.numpy(), tri.numpy(), height, width, (-off[0], -off[1]))
        derivs.append([(plus[k] - minus[k]) / (2 * h) for k in (1, 2)])
    expected = np.stack([derivs[0][0], derivs[1][0], derivs[0][1], derivs[1][1]], -1)  # du/dX, du/dY, dv/dX, dv/dY
    assert np.abs(expected[check]).max() > 0.05
    np.testing.assert_allclose(rast_db[0].numpy()[check], expected[check], rtol=1e-4, atol=1e-6)
    empty = ids_of(rast[0]) == 0
    assert empty.any() and (rast_db[0].numpy()[empty] == 0).all()


def _fd_check(output_channels, make_loss_weights):
    """Central differences of a weighted sum of rast/rast_db channels w.r.t. every pos element (float64)."""
    pos, tri = tilted_scene()
    height, width = 18, 16
    pos = pos.unsqueeze(0)
    rast, _ = R.rasterize(pos, tri, (height, width))
    bary = torch.cat([rast[..., :2], 1 - rast[..., :2].sum(-1, keepdim=True)], -1)
    inside = (bary.amin(-1) > 0.03) & (rast[..., 3] > 0)  # coverage there survives the perturbations
    weights = make_loss_weights(rast.shape) * inside.unsqueeze(-1)

    def loss(p):
        r, db = R.rasterize(p, tri, (height, width))
        return ((torch.cat([r, db], -1)[..., output_channels] * weights).sum(), r[..., 3])

    p = pos.clone().requires_grad_(True)
    value, ids = loss(p)
    (grad,) = torch.autograd.grad(value, p)
    eps = 1e-6
    numeric = torch.zeros_like(pos)
    for idx in np.ndindex(*pos.shape):
        step = torch.zeros_like(pos)
        step[idx] = eps
        (lp, ids_p), (lm, ids_m) = loss(pos + step), loss(pos - step)
        assert torch.equal(ids_p[inside], ids[inside]) and torch.equal(ids_m[inside], ids[inside])
        numeric[idx] = (lp - lm) / (2 * eps)
    assert inside.sum() > 40 and numeric.abs().max() > 1e-2
    torch.testing.assert_close(grad, numeric, rtol=1e-4, atol=1e-6 * numeric.abs().max().item())
    assert (grad[..., 2] == 0).all()  # nvdiffrast sends no gradient to z


def test_barycentric_gradient_wrt_pos_matches_finite_differences():
    gen = torch.Generator().manual_seed(0)
    _fd_check([0, 1], lambda shape: torch.randn(shape[:3] + (2,), generator=gen, dtype=torch.float64))


def test_rast_db_gradient_wrt_pos_matches_finite_differences():
    gen = torch.Generator().manual_seed(1)
    _fd_check([4, 5, 6, 7], lambda shape: torch.randn(shape[:3] + (4,), generator=gen, dtype=torch.float64))


def test_grad_db_false_detaches_only_rast_db():
    pos, tri = tilted_scene()
    p = pos.float().requires_grad_(True)
    rast, rast_db = R.rasterize(p, tri, (8, 8), grad_db=False)
    assert rast.requires_grad and not rast_db.requires_grad
    _, rast_db = R.rasterize(p, tri, (8, 8), grad_db=True)
    assert rast_db.requires_grad


def test_triangle_id_encoding_matches_nvdiffrast_beyond_float_precision():
    ids = torch.tensor([0, 1, 2, 2**24 - 1, 2**24, 2**24 + 1, 2**24 + 2, 2**29])
    encoded = tri_id_to_float(ids)
    assert encoded[:5].tolist() == [0.0, 1.0, 2.0, 2.0**24 - 1, 2.0**24]
    # above 2**24 nvdiffrast writes the float with bit pattern 0x4a800000 + id: one float step per id
    assert encoded.view(torch.int32)[5].item() == 0x4A800000 + 2**24 + 1
    assert (encoded[1:] > encoded[:-1]).all()
    assert torch.equal(float_to_tri_id(encoded), ids)
