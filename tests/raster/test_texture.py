"""The pure-PyTorch texture op: values against hand-computed samples, nvdiffrast's conventions
(texel centres, boundary modes, mip selection, cube-map faces and edges), finite-difference
gradients for every filter and boundary mode, and input validation."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from dmtrec.render.raster.torch_cubemap import cube_face_coords, cube_face_derivatives, cube_texel_remap
from dmtrec.render.raster.torch_texture import construct_mip, texture
from dmtrec.render.raster.torch_texture_mip import footprint_lod

F64 = torch.float64
MIP_MODES = ("linear-mipmap-nearest", "linear-mipmap-linear")


def ramp(h, w, c=1, b=1, dtype=F64):
    """Distinct, nonzero texel values: texel [b, y, x, ch] = 1 + x + 10 y + 100 ch + 1000 b."""
    b_, y, x, ch = torch.meshgrid(torch.arange(b), torch.arange(h), torch.arange(w), torch.arange(c), indexing="ij")
    return (1 + x + 10 * y + 100 * ch + 1000 * b_).to(dtype)


def uv_at(points, dtype=F64):
    """``[1, 1, N, 2]`` from a list of (u, v)."""
    return torch.tensor(points, dtype=dtype).reshape(1, 1, -1, 2)


def sample(tex, points, **kw):
    return texture(tex, uv_at(points, tex.dtype), **kw).reshape(len(points), -1)


# --------------------------------------------------------------------------- 2D, no mips


def test_linear_hits_texel_centres_and_blends_between_them():
    tex = ramp(2, 4)
    centres = [((x + 0.5) / 4, (y + 0.5) / 2) for y in range(2) for x in range(4)]
    for mode in ("wrap", "clamp", "zero"):
        assert torch.equal(sample(tex, centres, boundary_mode=mode)[:, 0], tex.flatten())
    # A quarter texel right of texel (x=1, y=0) and a quarter texel down from it.
    got = sample(tex, [(1.75 / 4, 0.5 / 2), (1.5 / 4, 0.75 / 2)])[:, 0]
    assert torch.allclose(got, torch.tensor([0.75 * 2 + 0.25 * 3, 0.75 * 2 + 0.25 * 12], dtype=F64))


def test_uv_origin_is_texel_00_corner_without_flip():
    tex = ramp(4, 4)
    # v grows with the row index: (u, v) near (0, 1) reads the last row, first column.
    assert sample(tex, [(0.5 / 4, 3.5 / 4)], filter_mode="nearest").item() == tex[0, 3, 0, 0]
    assert sample(tex, [(0.01, 0.01)], filter_mode="nearest").item() == tex[0, 0, 0, 0]


def test_boundary_modes_at_the_texture_edge():
    tex = ramp(1, 4)  # one row: 1, 2, 3, 4
    at_left_edge = [(0.0, 0.5)]
    assert sample(tex, at_left_edge, boundary_mode="wrap").item() == pytest.approx((1 + 4) / 2)
    assert sample(tex, at_left_edge, boundary_mode="clamp").item() == pytest.approx(1)
    assert sample(tex, at_left_edge, boundary_mode="zero").item() == pytest.approx(1 / 2)
    beyond = [(-0.3, 0.5), (1.3, 0.5)]
    assert sample(tex, beyond, boundary_mode="clamp")[:, 0].tolist() == [1, 4]
    assert sample(tex, beyond, boundary_mode="zero")[:, 0].tolist() == [0, 0]
    # Wrap keeps the fractional part: -0.7 and 1.3 read like 0.3.
    wrapped = sample(tex, [(-0.7, 0.5), (1.3, 0.5), (0.3, 0.5)], boundary_mode="wrap")[:, 0]
    assert torch.allclose(wrapped, wrapped[2].expand(3)) and wrapped[2] == pytest.approx(1 + 0.7)


def test_nearest_reads_floor_of_u_times_width():
    tex = ramp(2, 4)
    pts = [(0.26, 0.1), (0.49, 0.9), (0.999, 0.6)]
    got = sample(tex, pts, filter_mode="nearest")[:, 0]
    assert got.tolist() == [tex[0, 0, 1, 0], tex[0, 1, 1, 0], tex[0, 1, 3, 0]]
    outside = [(-0.1, 0.1), (0.1, 1.2)]
    assert sample(tex, outside, filter_mode="nearest", boundary_mode="zero")[:, 0].tolist() == [0, 0]
    assert sample(tex, outside, filter_mode="nearest", boundary_mode="clamp")[:, 0].tolist() == [1, 11]
    assert sample(tex, outside, filter_mode="nearest", boundary_mode="wrap")[:, 0].tolist() == [4, 1]


# --------------------------------------------------------------------------- mip pyramids


def test_construct_mip_box_filters_down_to_one_texel():
    tex = ramp(4, 4, c=2, b=2)
    l1, l2 = construct_mip(tex)
    assert l1.shape == (2, 2, 2, 2) and l2.shape == (2, 1, 1, 2)
    manual = tex.reshape(2, 2, 2, 2, 2, 2).mean(dim=(2, 4))
    assert torch.allclose(l1, manual)
    assert torch.allclose(l2[:, 0, 0], tex.mean(dim=(1, 2)))


def test_construct_mip_non_square_keeps_unit_extent_and_averages_pairs():
    tex = ramp(2, 8)
    shapes = [tuple(m.shape[1:3]) for m in construct_mip(tex)]
    assert shapes == [(1, 4), (1, 2), (1, 1)]
    l1 = construct_mip(tex)[0]
    assert torch.allclose(l1[0, 0, :, 0], tex[0].reshape(2, 4, 2).mean(dim=(0, 2)))
    tall = ramp(8, 1)
    l1, l2, l3 = construct_mip(tall)
    assert l1.shape[1:3] == (4, 1) and torch.allclose(l2[0, :, 0, 0], torch.tensor([16.0, 56.0], dtype=F64))


def test_construct_mip_odd_extent_needs_max_mip_level():
    with pytest.raises(ValueError, match="odd extent.*max_mip_level <= 1"):
        construct_mip(ramp(6, 6))
    assert [m.shape[1] for m in construct_mip(ramp(6, 6), max_mip_level=1)] == [3]
    assert len(construct_mip(ramp(8, 8), max_mip_level=2)) == 2
    assert construct_mip(ramp(8, 8), max_mip_level=0) == []
    assert [m.shape[1] for m in construct_mip(ramp(2, 2), max_mip_level=9)] == [1]


def test_construct_mip_cube_filters_faces_independently():
    cube = torch.rand(1, 6, 4, 4, 3, dtype=F64)
    l1 = construct_mip(cube, cube_mode=True)[0]
    assert l1.shape == (1, 6, 2, 2, 3)
    assert torch.allclose(l1[0, 4, 1, 0], cube[0, 4, 2:4, 0:2].mean(dim=(0, 1)))


def level_sample(tex, points, level):
    """Bilinear sample of mip level ``level`` built by construct_mip (level 0: tex)."""
    t = tex if level == 0 else construct_mip(tex)[level - 1]
    return sample(t, points)


PTS = [(0.3, 0.7), (0.61, 0.18), (0.05, 0.93)]


def uv_da_for(points, footprint, dtype=F64):
    return torch.tensor(footprint, dtype=dtype).expand(1, 1, len(points), 4).contiguous()


def test_uv_da_selects_level_by_footprint_in_texels():
    tex = torch.rand(1, 16, 8, 2, dtype=F64)
    # Two texels per pixel along u (8 wide) and v (16 high): level 1.
    got = sample(tex, PTS, uv_da=uv_da_for(PTS, (2 / 8, 0, 0, 2 / 16)))
    assert torch.allclose(got, level_sample(tex, PTS, 1))
    # The major axis decides: 4 texels along u, 1 along v -> level 2.
    got = sample(tex, PTS, uv_da=uv_da_for(PTS, (4 / 8, 0, 0, 1 / 16)))
    assert torch.allclose(got, level_sample(tex, PTS, 2))
    # 2^1.75 texels: three quarters of the way from level 1 to level 2, or level 1 without
    # blending (nvdiffrast takes the floor, not the nearest level).
    da = uv_da_for(PTS, (2**1.75 / 8, 0, 0, 0))
    blend = 0.25 * level_sample(tex, PTS, 1) + 0.75 * level_sample(tex, PTS, 2)
    assert torch.allclose(sample(tex, PTS, uv_da=da), blend)
    assert torch.allclose(sample(tex, PTS, uv_da=da, filter_mode="linear-mipmap-nearest"), level_sample(tex, PTS, 1))
    # Magnification stays on the base level.
    assert torch.allclose(sample(tex, PTS, uv_da=uv_da_for(PTS, (0.1 / 8, 0, 0, 0.2 / 16))), level_sample(tex, PTS, 0))


def test_footprint_lod_is_log2_of_largest_singular_value():
    torch.manual_seed(0)
    fp = torch.randn(64, 4, dtype=F64) * 3
    jac = fp.reshape(64, 2, 2)  # rows (s, t), columns (X, Y)
    expected = torch.log2(torch.linalg.svdvals(jac)[:, 0])
    assert torch.allclose(footprint_lod(fp), expected)


def test_mip_level_bias_alone_sets_level_and_is_clamped():
    tex = torch.rand(1, 8, 8, 1, dtype=F64)
    bias = lambda value: torch.full((1, 1, len(PTS)), float(value), dtype=F64)  # noqa: E731
    assert torch.allclose(sample(tex, PTS, mip_level_bias=bias(1)), level_sample(tex, PTS, 1))
    assert torch.allclose(sample(tex, PTS, mip_level_bias=bias(9)), level_sample(tex, PTS, 3))
    assert torch.allclose(sample(tex, PTS, mip_level_bias=bias(-2)), level_sample(tex, PTS, 0))
    assert torch.allclose(sample(tex, PTS, mip_level_bias=bias(2.5), max_mip_level=1), level_sample(tex, PTS, 1))
    # Bias adds to the level from uv_da: level 1 + 1.
    da = uv_da_for(PTS, (2 / 8, 0, 0, 2 / 8))
    assert torch.allclose(sample(tex, PTS, uv_da=da, mip_level_bias=bias(1)), level_sample(tex, PTS, 2))
    # max_mip_level=0 turns a mipmap mode into plain bilinear.
    assert torch.allclose(sample(tex, PTS, mip_level_bias=bias(2), max_mip_level=0), level_sample(tex, PTS, 0))


def test_custom_mip_is_sampled_and_gets_the_gradients():
    tex = torch.rand(1, 4, 4, 1, dtype=F64, requires_grad=True)
    l1 = torch.full((1, 2, 2, 1), 7.0, dtype=F64, requires_grad=True)
    l2 = torch.full((1, 1, 1, 1), 9.0, dtype=F64, requires_grad=True)
    out = sample(tex, PTS, mip=[l1, l2], mip_level_bias=torch.full((1, 1, 3), 1.5, dtype=F64))
    assert torch.allclose(out, torch.full_like(out, 8.0))
    out.sum().backward()
    assert tex.grad.abs().sum() == 0  # custom levels do not feed back into the base texture
    assert l1.grad.sum().item() == pytest.approx(1.5) and l2.grad.sum().item() == pytest.approx(1.5)


def test_prebuilt_mip_equals_internal_one():
    tex = torch.rand(1, 8, 4, 3, dtype=F64)
    da = uv_da_for(PTS, (0.4, 0.1, -0.2, 0.3))
    assert torch.allclose(sample(tex, PTS, uv_da=da, mip=construct_mip(tex)), sample(tex, PTS, uv_da=da))


def test_tex_batch_of_one_broadcasts():
    torch.manual_seed(1)
    tex = torch.rand(1, 4, 4, 2, dtype=F64, requires_grad=True)
    uv = torch.rand(3, 2, 2, 2, dtype=F64)
    bias = torch.rand(3, 2, 2, dtype=F64) * 2
    out = texture(tex, uv, mip_level_bias=bias)
    out.sum().backward()
    tiled = tex.detach().expand(3, -1, -1, -1).clone().requires_grad_()
    out_tiled = texture(tiled, uv, mip_level_bias=bias)
    out_tiled.sum().backward()
    assert torch.allclose(out, out_tiled)
    assert torch.allclose(tex.grad[0], tiled.grad.sum(0))


# --------------------------------------------------------------------------- cube maps

# OpenGL's cube-map face selection (spec table "selection of cube map images"): per face the
# major axis and the (sc, tc) source components; s = (sc / |ma| + 1) / 2, t likewise.
GL_FACES = {
    0: lambda x, y, z: (-z, -y, x),
    1: lambda x, y, z: (z, -y, x),
    2: lambda x, y, z: (x, z, y),
    3: lambda x, y, z: (x, -z, y),
    4: lambda x, y, z: (x, -y, z),
    5: lambda x, y, z: (-x, -y, z),
}
GL_INVERSE = {  # (face, sc, tc) -> direction with |major| = 1
    0: lambda sc, tc: (1, -tc, -sc),
    1: lambda sc, tc: (-1, -tc, sc),
    2: lambda sc, tc: (sc, 1, tc),
    3: lambda sc, tc: (sc, -1, -tc),
    4: lambda sc, tc: (sc, -tc, 1),
    5: lambda sc, tc: (-sc, -tc, -1),
}


def direction(face, s, t, scale=1.0):
    return [scale * c for c in GL_INVERSE[face](2 * s - 1, 2 * t - 1)]


def cube_sample(cube, dirs, **kw):
    d = torch.tensor(dirs, dtype=cube.dtype).reshape(1, 1, -1, 3)
    return texture(cube, d, boundary_mode="cube", **kw).reshape(len(dirs), -1)


def test_cube_axis_directions_hit_face_texels():
    s = 4
    cube = ramp(s, s, b=6).reshape(1, 6, s, s, 1)  # texel value encodes face * 1000 + row * 10 + col
    for face in range(6):
        for row, col in ((0, 0), (1, 2), (3, 3)):
            d = direction(face, (col + 0.5) / s, (row + 0.5) / s, scale=0.7)
            sc, tc, ma = GL_FACES[face](*d)
            assert (sc / abs(ma) + 1) / 2 == pytest.approx((col + 0.5) / s)  # the test's own tables agree
            for mode in ("nearest", "linear"):
                got = cube_sample(cube, [d], filter_mode=mode).item()
                assert got == pytest.approx(cube[0, face, row, col, 0].item(), abs=1e-9), (face, row, col, mode)
    # The axis directions themselves hit the face centres (the mean of the middle 2x2 texels).
    for face, d in enumerate([(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]):
        assert cube_sample(cube, [d]).item() == pytest.approx(cube[0, face, 1:3, 1:3].mean().item())


def test_cube_face_selection_of_diagonal_directions():
    s = 4
    cube = ramp(s, s, b=6).reshape(1, 6, s, s, 1)
    faces = lambda dirs: (cube_sample(cube, dirs, filter_mode="nearest")[:, 0] // 1000).long().tolist()  # noqa: E731
    # Ties: z wins only when strictly largest, then y when strictly larger than x, else x.
    assert faces([(1, 1, 1), (1, 1, 0), (0, 1, 1), (-1, -1, -1), (1, 0.5, 1), (0.5, 1, 1), (0.2, -0.5, -0.9)]) == [
        0,
        0,
        2,
        1,
        0,
        2,
        5,
    ]
    # (1, 1, 1) on +x: s = (-1 + 1) / 2 = 0, t = 0 -> texel row 0, column 0.
    assert cube_sample(cube, [(1, 1, 1)], filter_mode="nearest").item() == cube[0, 0, 0, 0, 0]
    # (1, 0.5, -0.25) on +x: s = (0.25 + 1) / 2 = 0.625 -> column 2, t = (-0.5 + 1) / 2 = 0.25 -> row 1.
    assert cube_sample(cube, [(1, 0.5, -0.25)], filter_mode="nearest").item() == cube[0, 0, 1, 2, 0]


def test_cube_taps_across_an_edge_read_the_neighbouring_face():
    s = 4
    cube = ramp(s, s, b=6).reshape(1, 6, s, s, 1)
    row = 2
    # A quarter texel from +x's s = 1 edge, which touches -z's s = 0 edge (both at x = -z).
    d = direction(0, 1 - 0.25 / s, (row + 0.5) / s)
    expected = 0.75 * cube[0, 0, row, s - 1, 0] + 0.25 * cube[0, 5, row, 0, 0]
    assert cube_sample(cube, [d]).item() == pytest.approx(expected.item())
    # A quarter texel from +x's t = 0 edge (y = x), which touches +y's s = 1 edge with the
    # rows reversed: +x column c meets +y row s - 1 - c.
    col = 1
    d = direction(0, (col + 0.5) / s, 0.25 / s)
    expected = 0.75 * cube[0, 0, 0, col, 0] + 0.25 * cube[0, 2, s - 1 - col, s - 1, 0]
    assert cube_sample(cube, [d]).item() == pytest.approx(expected.item())


def test_cube_corner_tap_is_mean_of_the_three_meeting_texels():
    s = 4
    cube = torch.rand(1, 6, s, s, 2, dtype=F64)
    # A quarter texel from +x's (s, t) = (0, 0) corner, where +x, +y and +z meet.
    d = direction(0, 0.25 / s, 0.25 / s)
    own = cube[0, 0, 0, 0]
    up = cube[0, 2, s - 1, s - 1]  # tap one row above: +y, as in the edge test with column 0
    left = cube[0, 4, 0, s - 1]  # tap one column left: +z's s = 1 edge, same row
    corner = (own + up + left) / 3
    fx = fy = 0.75
    expected = (1 - fx) * (1 - fy) * corner + fx * (1 - fy) * up + (1 - fx) * fy * left + fx * fy * own
    assert torch.allclose(cube_sample(cube, [d])[0], expected)


def test_cube_edge_taps_read_the_nearest_texel_across_the_edge():
    # Brute force over every edge of every face: the virtual texel one step beyond the edge
    # (its centre on the face's extended plane) is read from the texel of another face whose
    # centre direction is closest to it.
    s = 4
    faces, rows, cols = torch.meshgrid(torch.arange(6), torch.arange(s), torch.arange(s), indexing="ij")
    centres = torch.tensor(
        [
            direction(f, (c + 0.5) / s, (r + 0.5) / s)
            for f, r, c in zip(faces.flatten().tolist(), rows.flatten().tolist(), cols.flatten().tolist())
        ],
        dtype=F64,
    )
    centres = centres / centres.norm(dim=-1, keepdim=True)
    taps = [(f, ix, iy) for f in range(6) for k in range(s) for ix, iy in ((-1, k), (s, k), (k, -1), (k, s))]
    face, ix, iy = (torch.tensor(v) for v in zip(*taps))
    new_face, new_ix, new_iy, corner = cube_texel_remap(face, ix, iy, s)
    assert not corner.any()
    for f, x, y, nf, nx, ny in zip(*(t.tolist() for t in (face, ix, iy, new_face, new_ix, new_iy))):
        virtual = torch.tensor(direction(f, (x + 0.5) / s, (y + 0.5) / s), dtype=F64)
        cosine = centres @ (virtual / virtual.norm())
        cosine[f * s * s : (f + 1) * s * s] = -2  # not the tap's own face
        assert int(cosine.argmax()) == (nf * s + ny) * s + nx, (f, x, y)
    # Taps inside the face are left alone.
    inside = cube_texel_remap(torch.tensor([3]), torch.tensor([2]), torch.tensor([1]), s)
    assert [int(t) for t in inside] == [3, 2, 1, 0]


def test_cube_invalid_directions_read_zero_without_gradient():
    cube = torch.rand(1, 6, 2, 2, 3, dtype=F64, requires_grad=True)
    dirs = torch.tensor([[0.0, 0, 0], [math.nan, 1, 0], [1.0, 0.2, 0.1]], dtype=F64).reshape(1, 1, 3, 3)
    dirs.requires_grad_()
    out = texture(cube, dirs, boundary_mode="cube", mip_level_bias=torch.full((1, 1, 3), 0.5, dtype=F64))
    assert torch.all(out[0, 0, :2] == 0) and torch.all(out[0, 0, 2] != 0)
    out.sum().backward()
    assert torch.all(dirs.grad[0, 0, :2] == 0) and torch.isfinite(dirs.grad).all()
    assert torch.isfinite(cube.grad).all()


def test_cube_face_derivatives_are_the_projection_jacobian():
    torch.manual_seed(2)
    dirs = torch.randn(32, 3, dtype=F64)
    dirs_da = torch.randn(32, 6, dtype=F64)
    got = cube_face_derivatives(dirs, dirs_da)
    eps = 1e-6
    for k, axis in enumerate("XY"):
        step = dirs_da[:, k::2] * eps  # direction change along screen axis X or Y
        ds = (cube_face_coords(dirs + step)[1] - cube_face_coords(dirs - step)[1]) / (2 * eps)
        assert torch.allclose(got[:, [k, 2 + k]], ds, atol=1e-6), axis


def test_cube_uv_da_selects_level():
    s = 8
    cube = torch.rand(1, 6, s, s, 2, dtype=F64)
    # At +x's centre s = -z / (2x) + 1/2: dz/dX = -4/S is two texels per pixel -> level 1.
    dirs = torch.tensor([1.0, 0.1, 0.2], dtype=F64).reshape(1, 1, 1, 3)
    da = torch.tensor([0, 0, 0, 0, -4 / s, 0], dtype=F64).reshape(1, 1, 1, 6)
    level1 = construct_mip(cube, cube_mode=True)[0]
    got = texture(cube, dirs, uv_da=da, boundary_mode="cube")
    assert torch.allclose(got, texture(level1, dirs, boundary_mode="cube"))


# --------------------------------------------------------------------------- gradients


def random_inputs(cube, seed, batch=2, tex_batch=1, size=4, channels=2):
    g = torch.Generator().manual_seed(seed)
    if cube:
        tex = torch.rand(tex_batch, 6, size, size, channels, generator=g, dtype=F64)
        uv = torch.randn(batch, 2, 3, 3, generator=g, dtype=F64)
        uv_da = torch.randn(batch, 2, 3, 6, generator=g, dtype=F64) * 0.4
    else:
        tex = torch.rand(tex_batch, size, 2 * size, channels, generator=g, dtype=F64)
        uv = torch.rand(batch, 2, 3, 2, generator=g, dtype=F64) * 1.6 - 0.3
        uv_da = torch.randn(batch, 2, 3, 4, generator=g, dtype=F64) * 0.4
    bias = torch.randn(batch, 2, 3, generator=g, dtype=F64)
    return tex, uv, uv_da, bias


GRAD_CASES = [(b, f) for b in ("wrap", "clamp", "zero", "cube") for f in ("nearest", "linear") + MIP_MODES]


@pytest.mark.parametrize("boundary_mode, filter_mode", GRAD_CASES)
def test_gradients_match_finite_differences(boundary_mode, filter_mode):
    cube = boundary_mode == "cube"
    mipmapped = filter_mode in MIP_MODES
    # Cube maps and mip modes get smaller textures to keep the check quick.
    tex, uv, uv_da, bias = random_inputs(
        cube, seed=len(filter_mode), tex_batch=2, size=2 if cube else 4, channels=1 if cube else 2
    )
    blend = filter_mode == "linear-mipmap-linear"
    inputs = [tex] + ([uv] if filter_mode != "nearest" else []) + ([uv_da, bias] if blend else [])
    for t in inputs:
        t.requires_grad_()

    def fn(*_):
        return texture(
            tex,
            uv,
            uv_da if mipmapped else None,
            bias if mipmapped else None,
            filter_mode=filter_mode,
            boundary_mode=boundary_mode,
        )

    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("cube", [False, True])
def test_mipmap_gradients_with_only_one_of_uv_da_and_bias(cube):
    tex, uv, uv_da, bias = random_inputs(cube, seed=5, batch=1, size=4, channels=1)
    uv.requires_grad_()
    uv_da.requires_grad_()
    bias.requires_grad_()
    mode = "cube" if cube else "clamp"
    assert gradcheck(lambda u, d: texture(tex, u, uv_da=d, boundary_mode=mode), [uv, uv_da], eps=1e-6, atol=1e-6)
    assert gradcheck(
        lambda u, b: texture(tex, u, mip_level_bias=b, boundary_mode=mode), [uv, bias], eps=1e-6, atol=1e-6
    )


def test_gradient_reaches_tex_through_the_internal_pyramid():
    tex = torch.zeros(1, 4, 4, 1, dtype=F64, requires_grad=True)
    uv = uv_at([(0.3, 0.6)])
    texture(tex, uv, mip_level_bias=torch.full((1, 1, 1), 2.0, dtype=F64)).sum().backward()
    # Level 2 is the mean of all 16 texels.
    assert torch.allclose(tex.grad, torch.full_like(tex, 1 / 16))


def test_no_gradient_where_nvdiffrast_gives_none():
    tex, uv, uv_da, bias = random_inputs(False, seed=3)
    for t in (tex, uv, uv_da, bias):
        t.requires_grad_()
    texture(tex, uv, filter_mode="nearest").sum().backward()
    assert uv.grad is None and tex.grad is not None
    texture(tex, uv, uv_da, bias, filter_mode="linear-mipmap-nearest").sum().backward()
    assert uv_da.grad is None and bias.grad is None and uv.grad is not None


def test_level_gradient_follows_nvdiffrast_at_its_kinks():
    tex = torch.rand(1, 8, 8, 1, dtype=F64)
    uv = uv_at([(0.3, 0.7), (0.3, 0.7)])
    # An isotropic footprint (major axis not differentiable): nvdiffrast drops the uv_da
    # gradient; here a 1.5-level footprint, plus an anisotropic one for contrast.
    s = 2**1.5 / 8
    uv_da = torch.tensor([[s, 0, 0, s], [s, 0, 0, s / 2]], dtype=F64).reshape(1, 1, 2, 4).requires_grad_()
    bias = torch.zeros(1, 1, 2, dtype=F64, requires_grad=True)
    texture(tex, uv, uv_da, bias).sum().backward()
    assert torch.all(uv_da.grad[0, 0, 0] == 0) and uv_da.grad[0, 0, 1].abs().sum() > 0
    assert torch.all(bias.grad != 0)
    # A level that is exactly an integer: no level gradient (nvdiffrast blends only above it).
    bias = torch.ones(1, 1, 2, dtype=F64, requires_grad=True)
    texture(tex, uv, mip_level_bias=bias).sum().backward()
    assert torch.all(bias.grad == 0)


def test_clamp_mode_holds_uv_gradient_at_edge_texel_centres():
    tex = torch.rand(1, 4, 4, 1, dtype=F64)
    uv = uv_at([(0.5 / 4, 0.4), (0.0, 0.4), (0.6 / 4, 0.4)]).requires_grad_()
    texture(tex, uv, boundary_mode="clamp").sum().backward()
    assert uv.grad[0, 0, 0, 0] == 0 and uv.grad[0, 0, 1, 0] == 0 and uv.grad[0, 0, 2, 0] != 0


# --------------------------------------------------------------------------- input validation

TEX = torch.rand(1, 4, 4, 3)
CUBE = torch.rand(1, 6, 4, 4, 3)
UV = torch.rand(2, 3, 3, 2)
DIRS = torch.randn(2, 3, 3, 3)

BAD_CALLS = [
    (dict(tex=TEX, uv=UV, filter_mode="bilinear"), "unknown filter_mode"),
    (dict(tex=TEX, uv=UV, boundary_mode="mirror"), "unknown boundary_mode"),
    (dict(tex=CUBE, uv=DIRS), "cube map needs boundary_mode='cube'"),
    (dict(tex=TEX, uv=DIRS, boundary_mode="cube"), r"cube map \[B, 6, S, S, C\]"),
    (dict(tex=torch.rand(1, 6, 4, 2, 3), uv=DIRS, boundary_mode="cube"), "must be square"),
    (dict(tex=TEX, uv=DIRS), r"uv must be \[B, H, W, 2\]"),
    (dict(tex=CUBE, uv=UV, boundary_mode="cube"), r"uv must be \[B, H, W, 3\]"),
    (dict(tex=torch.rand(3, 4, 4, 3), uv=UV), "tex batch 3 must be 1 or uv's batch 2"),
    (dict(tex=TEX.double(), uv=UV), "uv must have tex's dtype"),
    (dict(tex=TEX.long(), uv=UV), "floating-point"),
    (dict(tex=TEX, uv=UV, filter_mode="linear-mipmap-linear"), "needs uv_da and/or mip_level_bias"),
    (dict(tex=TEX, uv=UV, uv_da=torch.rand(2, 3, 3, 2)), r"uv_da must be \[B, H, W, 4\]"),
    (dict(tex=TEX, uv=UV, uv_da=torch.rand(1, 3, 3, 4)), "with the B, H, W of uv"),
    (dict(tex=TEX, uv=UV, mip_level_bias=torch.rand(2, 3, 3, 1)), r"mip_level_bias must be \[B, H, W\]"),
    (dict(tex=TEX, uv=UV, mip_level_bias=torch.rand(2, 3, 3), max_mip_level=-1), "max_mip_level"),
    (dict(tex=torch.rand(1, 6, 6, 3), uv=UV, mip_level_bias=torch.rand(2, 3, 3)), "odd extent"),
    (dict(tex=TEX, uv=UV, mip_level_bias=torch.rand(2, 3, 3), mip=[torch.rand(1, 2, 1, 3)]), r"mip\[0\].*shape"),
    (dict(tex=TEX, uv=UV, mip_level_bias=torch.rand(2, 3, 3), mip=torch.rand(1, 2, 2, 3)), "list of tensors"),
    (
        dict(
            tex=TEX,
            uv=UV,
            mip_level_bias=torch.rand(2, 3, 3),
            mip=[torch.rand(1, 2, 2, 3), torch.rand(1, 1, 1, 3), torch.rand(1, 1, 1, 3)],
        ),
        "must be the last",
    ),
]


@pytest.mark.parametrize("kwargs, message", BAD_CALLS)
def test_bad_input_raises_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        texture(**kwargs)


def test_construct_mip_validates_its_input():
    with pytest.raises(ValueError, match="must be square"):
        construct_mip(torch.rand(1, 6, 4, 2, 1), cube_mode=True)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        construct_mip(torch.rand(4, 4))
