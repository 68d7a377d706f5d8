"""Torch backend ``antialias`` and its topology hash: blends, silhouettes, gradients."""

import numpy as np
import pytest
import torch
from raster_helpers import clip_from_pixels, icosphere, project, tris

from dmtrec.render.raster.torch_antialias import construct_topology_hash
from dmtrec.render.raster.torch_backend import TorchRasterizer

R = TorchRasterizer("cpu")


def coverage_color(rast, values):
    """Colour image with ``values[id]`` per pixel (index 0 = background)."""
    ids = rast[..., 3].long()
    return torch.as_tensor(values, dtype=torch.float32)[ids].unsqueeze(-1).expand(*ids.shape, 3).contiguous()


def test_vertical_silhouette_edges_get_box_filter_coverage():
    height, width = 6, 12
    left, right = 2.3, 9.2  # edge positions in pixels; the quad's top and bottom lie outside the image
    pos = clip_from_pixels([(left, -3), (right, -3), (right, 9), (left, 9)], height, width)
    tri = tris([[0, 1, 2], [0, 2, 3]])
    rast, _ = R.rasterize(pos, tri, (height, width))
    out = R.antialias(coverage_color(rast, [0.0, 1.0, 1.0]), rast, pos, tri)
    cells = np.arange(width)
    box = np.clip(np.minimum(cells + 1, right) - np.maximum(cells, left), 0, 1)  # [0,0,0.7,1,...,1,0.2,0,0]
    np.testing.assert_allclose(out[0, ..., 0].numpy(), np.broadcast_to(box, (height, width)), atol=1e-5)


def test_the_nearer_triangle_of_a_pair_decides():
    # The same quad in front of a far background quad: at its edges the front quad is examined,
    # so the blend is the box coverage between the two surfaces' colours.
    height, width = 6, 12
    left, right = 2.3, 9.2
    front = clip_from_pixels([(left, -3), (right, -3), (right, 9), (left, 9)], height, width, z=0.2)
    back = clip_from_pixels([(-4, -4), (16, -4), (16, 10), (-4, 10)], height, width, z=0.8)
    pos = torch.cat([back, front])
    tri = tris([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    rast, _ = R.rasterize(pos, tri, (height, width))
    out = R.antialias(coverage_color(rast, [0.0, 0.2, 0.2, 1.0, 1.0]), rast, pos, tri)
    cells = np.arange(width)
    box = np.clip(np.minimum(cells + 1, right) - np.maximum(cells, left), 0, 1)
    np.testing.assert_allclose(out[0, ..., 0].numpy(), np.broadcast_to(0.2 + 0.8 * box, (height, width)), atol=1e-5)


def test_saturated_blends_send_no_position_gradient():
    # The right edge at 8.52 px snaps to the centre of pixel 8 (8.5), which the right-edge rule
    # leaves uncovered; seen from pixel 7 the edge crosses beyond pixel 8's centre, so the blend
    # saturates at 0.5 and, as in nvdiffrast, the edge's vertices get no gradient from it.
    height, width = 4, 12
    pos = clip_from_pixels([(2.3, -3), (8.52, -3), (8.52, 7), (2.3, 7)], height, width).requires_grad_(True)
    tri = tris([[0, 1, 2], [0, 2, 3]])
    rast, _ = R.rasterize(pos.detach(), tri, (height, width))
    out = R.antialias(coverage_color(rast, [0.0, 1.0, 1.0]), rast, pos, tri)
    np.testing.assert_allclose(out[0, :, 8, 0].detach().numpy(), 0.5)
    out.sum().backward()
    assert (pos.grad[[1, 2]] == 0).all() and (pos.grad[[0, 3], 0].abs() > 0.1).all()


def test_interior_edges_are_not_blended_but_open_ones_are():
    height, width = 10, 10
    corners = [(-2, -2), (12, -2), (12, 12), (-2, 12)]
    shared = clip_from_pixels(corners, height, width)
    faces = tris([[0, 1, 2], [0, 2, 3]])
    rast, _ = R.rasterize(shared, faces, (height, width))
    color = coverage_color(rast, [0.0, 1.0, 0.25])  # the two triangles differ in colour across the diagonal
    assert torch.equal(R.antialias(color, rast, shared, faces), color)
    # The same triangles with their own vertices: the diagonal is now a boundary (silhouette) edge.
    split = clip_from_pixels([corners[i] for i in (0, 1, 2, 0, 2, 3)], height, width)
    split_faces = tris([[0, 1, 2], [3, 4, 5]])
    out = R.antialias(color, rast, split, split_faces)
    changed = (out != color).any(-1)[0]
    assert changed.sum() >= height - 1
    assert all(abs(int(y) - int(x)) <= 1 for y, x in changed.nonzero())  # only along the diagonal


@pytest.mark.parametrize("folded", [False, True])
def test_a_fold_makes_the_shared_edge_a_silhouette(folded):
    # Triangles A (front) and B share a vertical edge at x = 8.3. Flat, B continues the surface to
    # the right; folded, B lies behind A and the background shows right of the edge.
    height, width = 8, 12
    third_b = (3.0, 5.0) if folded else (14.0, 5.0)
    pos = clip_from_pixels([(8.3, -3), (8.3, 12), (1.0, 4.0), third_b], height, width, z=[0.1, 0.1, 0.1, 0.5])
    tri = tris([[0, 1, 2], [1, 0, 3]])
    rast, _ = R.rasterize(pos, tri, (height, width))
    color = coverage_color(rast, [0.0, 1.0, 0.5])
    out = R.antialias(color, rast, pos, tri)
    rows = slice(2, 6)  # away from A's other edges
    if folded:
        np.testing.assert_allclose(out[0, rows, 8, 0].numpy(), 0.3, atol=1e-5)  # pixel [8, 9] holds 0.3 of A
        np.testing.assert_allclose(out[0, rows, 7, 0].numpy(), 1.0)
    else:
        assert torch.equal(out[0, rows, 6:10], color[0, rows, 6:10])


def test_only_silhouette_pixels_of_a_closed_mesh_change():
    # A cube with a different colour per triangle: its creases and face diagonals separate
    # colours but are no silhouettes, so only pixels along the outline may change.
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    faces = [
        (0, 1, 3),
        (0, 3, 2),
        (4, 6, 7),
        (4, 7, 5),
        (0, 4, 5),
        (0, 5, 1),
        (2, 3, 7),
        (2, 7, 6),
        (0, 2, 6),
        (0, 6, 4),
        (1, 5, 7),
        (1, 7, 3),
    ]
    ay, ax = 0.5, 0.7
    rot_y = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    pos = torch.tensor(project(corners @ rot_y.T @ rot_x.T * 0.8 + [0.05, 0.0, -4.0]), dtype=torch.float32)
    tri = torch.tensor(faces, dtype=torch.int32)
    rast, _ = R.rasterize(pos, tri, (48, 48))
    palette = torch.rand(len(faces) + 1, 3, generator=torch.Generator().manual_seed(0))
    palette[0] = 0
    color = palette[rast[..., 3].long()]
    out = R.antialias(color, rast, pos, tri)
    changed = (out != color).any(-1)[0]
    covered = rast[0, ..., 3] > 0
    ids = rast[0, ..., 3]
    outline = torch.zeros_like(covered)
    interior_seams = torch.zeros_like(covered)
    for shift in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        outline |= torch.roll(covered, shift, (0, 1)) != covered
        interior_seams |= (torch.roll(ids, shift, (0, 1)) != ids) & covered & torch.roll(covered, shift, (0, 1))
    assert interior_seams.sum() > 50
    assert not (changed & ~outline).any()
    assert changed.sum() > 0.4 * outline.sum()  # an outline pixel pair changes one of its two pixels


def silhouette_scene(dtype=torch.float64):
    """A tilted quad in perspective with all four edges inside a 24 x 20 image."""
    cam = [(-1.1, -0.9, -3.0), (1.2, -1.0, -4.2), (1.0, 1.1, -3.6), (-0.9, 0.8, -2.8)]
    return torch.tensor(project(cam), dtype=dtype), tris([[0, 1, 2], [0, 2, 3]]), (24, 20)


def test_color_gradient_matches_finite_differences():
    pos, tri, size = silhouette_scene()
    rast, _ = R.rasterize(pos, tri, size)
    gen = torch.Generator().manual_seed(0)
    color = torch.rand(1, *size, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda c: R.antialias(c, rast, pos, tri), (color,), eps=1e-6, atol=1e-8, fast_mode=True
    )


def test_position_gradient_matches_finite_differences():
    pos, tri, size = silhouette_scene()
    pos = pos.unsqueeze(0)
    rast, _ = R.rasterize(pos, tri, size)  # fixed: antialias differentiates through its pos argument only
    gen = torch.Generator().manual_seed(1)
    color = torch.rand(1, *size, 3, generator=gen, dtype=torch.float64)
    weights = torch.randn(1, *size, 3, generator=gen, dtype=torch.float64)

    def loss(p):
        return (R.antialias(color, rast, p, tri) * weights).sum()

    p = pos.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(p), p)
    eps = 1e-7
    numeric = torch.zeros_like(pos)
    for idx in np.ndindex(*pos.shape):
        step = torch.zeros_like(pos)
        step[idx] = eps
        numeric[idx] = (loss(pos + step) - loss(pos - step)) / (2 * eps)
    assert numeric.abs().max() > 1.0
    # nvdiffrast's 1e-3 pixel epsilon on the edge's extent (here > 10 pixels) keeps them within 1e-4.
    torch.testing.assert_close(grad, numeric, rtol=1e-3, atol=1e-5 * numeric.abs().max().item())
    assert (grad[..., 2] == 0).all()


def test_pos_gradient_boost_scales_only_position_gradients():
    pos, tri, size = silhouette_scene(torch.float32)
    rast, _ = R.rasterize(pos, tri, size)
    color = torch.rand(1, *size, 3, generator=torch.Generator().manual_seed(2))
    grads = []
    for boost in (1.0, 3.0):
        p, c = pos.clone().requires_grad_(True), color.clone().requires_grad_(True)
        out = R.antialias(c, rast, p, tri, pos_gradient_boost=boost)
        out.square().sum().backward()
        grads.append((out.detach(), p.grad, c.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][2], grads[1][2])
    assert grads[0][1].abs().max() > 0
    torch.testing.assert_close(grads[1][1], 3.0 * grads[0][1])


def test_topology_hash_of_a_closed_mesh_pairs_every_edge():
    verts, faces = icosphere(1)
    tri = torch.tensor(faces, dtype=torch.int32)
    opposite = construct_topology_hash(tri).opposite
    assert (opposite >= 0).all()
    faces_l = tri.long()
    for f in range(len(faces)):
        for k in range(3):
            a, b = faces_l[f, (k + 1) % 3].item(), faces_l[f, (k + 2) % 3].item()
            others = [g for g in range(len(faces)) if g != f and {a, b} <= set(faces_l[g].tolist())]
            assert len(others) == 1
            g = others[0]
            assert opposite[f, k].item() == (set(faces_l[g].tolist()) - {a, b}).pop()


def test_topology_hash_boundaries_non_manifold_and_degenerate_triangles():
    tri = tris(
        [
            [0, 1, 2],
            [0, 2, 3],  # a quad: diagonal 0-2 shared
            [4, 5, 6],
            [4, 5, 7],
            [4, 5, 8],  # edge 4-5 shared by three triangles
            [9, 10, 11],
            [9, 10, 11],  # a duplicated triangle
            [0, 0, 1],
        ]
    )  # repeated index: left out
    opp = construct_topology_hash(tri).opposite.tolist()
    assert opp[0] == [-1, 3, -1] and opp[1] == [-1, -1, 1]
    # the first two triangles on 4-5 see each other; the third is treated as a boundary
    assert opp[2][2] == 7 and opp[3][2] == 6 and opp[4][2] == -1
    assert opp[5] == [-1, -1, -1] and opp[6] == [-1, -1, -1]
    assert opp[7] == [-1, -1, -1]


def test_precomputed_topology_hash_gives_the_same_image_and_is_checked():
    pos, tri, size = silhouette_scene(torch.float32)
    rast, _ = R.rasterize(pos, tri, size)
    color = torch.rand(1, *size, 3, generator=torch.Generator().manual_seed(3))
    topo = R.construct_topology_hash(tri)
    assert torch.equal(R.antialias(color, rast, pos, tri, topology_hash=topo), R.antialias(color, rast, pos, tri))
    with pytest.raises(ValueError, match="topology_hash must come from"):
        R.antialias(color, rast, pos, tri, topology_hash=R.construct_topology_hash(tris([0, 1, 2])))
    with pytest.raises(ValueError, match="pos has batch size 2 but rast has 1"):
        R.antialias(color, rast, pos.expand(2, -1, -1), tri)
    with pytest.raises(ValueError, match="color must be a float tensor of shape"):
        R.antialias(color[..., :4, :], rast, pos, tri)
