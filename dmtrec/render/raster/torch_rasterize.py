"""``rasterize`` in pure PyTorch, reproducing nvdiffrast's CUDA rasterizer (cudaraster).

How a pixel gets its triangle, as in cudaraster:

* Pixel ``(px, py)`` samples clip-space ``x = (2 px + 1) / W - 1``, ``y = (2 py + 1) / H - 1``;
  row 0 is ``y = -1``. Both faces are drawn.
* A triangle whose three vertices lie in the depth range (``|z| <= w``) and whose projection
  fits cudaraster's guard band (vertices within 2048 pixels of the centre, extent below 2048
  pixels) is snapped to a 1/16-pixel grid (round to nearest) and tested with exact integer edge
  functions and cudaraster's tie rule for sample points on an edge: with the triangle turned
  to positive area, an edge owns them when it heads towards -y, or towards +x when horizontal,
  which keeps the left and the low-y (top-of-image) edges. Triangles that snap to zero area
  are degenerate and draw nothing. Coverage then matches nvdiffrast bit for bit (for images up
  to 2048 pixels; larger ones nvdiffrast draws in tiles, snapped with other float rounding).
* Any other triangle (crossing the near or far plane or ``w = 0``, or reaching far outside
  the viewport) is clipped by cudaraster; here it is rasterized homogeneously (Olano & Greer):
  a pixel is covered when its perspective-correct barycentrics are all >= 0 and the point
  they give satisfies ``|z| <= w`` (so ``w > 0``). This equals clipping to the frustum up to
  float rounding on the clip edges, where the two backends may disagree on a pixel. A
  triangle crossing ``w = 0`` has no finite screen bounding box and is tested at every pixel.
* Triangles entirely outside one frustum plane are culled. The nearest fragment wins
  (smallest z/w, computed in float32; exact ties go to the smaller triangle id), so the result
  is deterministic.

The winning triangle's ``(u, v)``, ``z/w`` and pixel derivatives are then evaluated from
``pos`` with nvdiffrast's formulas, differentiably: the backward pass is nvdiffrast's (its
barycentric gradients use ``1 / (area + 1e-6 sign(area))`` and ignore the [0, 1] clamp; ``z``
gets no gradient, ``w`` does).

Work is vectorized over all (batch item, triangle) pairs; candidate (triangle, pixel) pairs
come from each triangle's pixel bounding box and are processed in chunks of bounded size.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import torch
from torch import Tensor

from .torch_common import tri_id_to_float, value_with_grad_of

SUBPIXELS = 16  # cudaraster snaps to 1/16 pixel
GUARD_BAND = 32767  # snapped coordinates beyond +-2**15 go through cudaraster's clipper
TRIANGLES_PER_CHUNK = 1 << 18  # (batch item, triangle) pairs set up at once
CANDIDATES_PER_CHUNK = 1 << 20  # (triangle, pixel) pairs tested at once
BARY_GRAD_EPS = 1e-6  # nvdiffrast's epsilon on the barycentric denominator in backward
_EMPTY = torch.iinfo(torch.int64).max


def rasterize(pos: Tensor, tri: Tensor, resolution: Tuple[int, int], grad_db: bool = True) -> Tuple[Tensor, Tensor]:
    """Rasterize ``tri`` at ``resolution``; arguments are assumed checked (see ``TorchRasterizer``).

    Args:
        pos: ``[B, V, 4]`` clip-space positions, float32 or float64 (coverage is always decided
            in float32, as on the GPU; outputs and gradients follow ``pos``'s dtype).
        tri: ``[F, 3]`` integer vertex indices, ``F >= 0``.
        resolution: ``(H, W)``.
        grad_db: whether ``rast_db`` is differentiable w.r.t. ``pos``.

    Returns:
        ``rast [B, H, W, 4]`` = (u, v, z/w, triangle_id + 1) and ``rast_db [B, H, W, 4]`` =
        (du/dX, du/dY, dv/dX, dv/dY), zeros where no triangle covers the pixel centre.
    """
    height, width = resolution
    batch = pos.shape[0]
    tri = tri.long()
    with torch.no_grad():
        keys = nearest_fragments(pos.detach().to(torch.float32), tri, height, width)
        pixels = (keys != _EMPTY).nonzero().squeeze(1)
        faces = keys[pixels] & 0xFFFFFFFF
    values, derivs = _pixel_outputs(pos, tri, pixels, faces, height, width, grad_db)
    num_pixels = batch * height * width
    rast = values.new_zeros(num_pixels, 4).index_copy(0, pixels, values)
    rast_db = derivs.new_zeros(num_pixels, 4).index_copy(0, pixels, derivs)
    return rast.view(batch, height, width, 4), rast_db.view(batch, height, width, 4)


def nearest_fragments(pos: Tensor, tri: Tensor, height: int, width: int) -> Tensor:
    """Depth-resolve all triangles: ``[B * H * W]`` int64 keys, ``_EMPTY`` where nothing is drawn.

    A key is ``ordered_bits(z/w) << 32 | triangle_index``, so its minimum over the fragments of
    a pixel is the nearest one, ties broken by the smaller index.
    """
    batch, num_verts = pos.shape[:2]
    num_tris = tri.shape[0]
    keys = torch.full((batch * height * width,), _EMPTY, dtype=torch.int64, device=pos.device)
    flat_pos = pos.reshape(-1, 4)
    for start in range(0, batch * num_tris, TRIANGLES_PER_CHUNK):
        inst = torch.arange(start, min(start + TRIANGLES_PER_CHUNK, batch * num_tris), device=pos.device)
        item = torch.div(inst, num_tris, rounding_mode="floor")
        face = inst - item * num_tris
        verts = flat_pos.index_select(0, (tri[face] + (item * num_verts).unsqueeze(1)).view(-1)).view(-1, 3, 4)
        sx, sy, in_guard_band, visible = _classify(verts, height, width)
        fast = (visible & in_guard_band).nonzero().squeeze(1)
        slow = (visible & ~in_guard_band).nonzero().squeeze(1)
        base = item * (height * width)
        _draw_snapped(keys, *(t.index_select(0, fast) for t in (sx, sy, verts, base, face)), height, width)
        _draw_homogeneous(keys, *(t.index_select(0, slow) for t in (verts, base, face)), height, width)
    return keys


def _min3(t: Tensor) -> Tensor:
    # Column-wise: torch's reductions over a size-3 inner dimension are several times slower.
    return torch.minimum(torch.minimum(t[:, 0], t[:, 1]), t[:, 2])


def _max3(t: Tensor) -> Tensor:
    return torch.maximum(torch.maximum(t[:, 0], t[:, 1]), t[:, 2])


def _all3(t: Tensor) -> Tensor:
    return t[:, 0] & t[:, 1] & t[:, 2]


def _classify(verts: Tensor, height: int, width: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Snapped 1/16-pixel coordinates ``sx, sy [n, 3]`` (int64), guard-band test and frustum cull."""
    x, y, z, w = verts.unbind(-1)
    outside_one_plane = torch.zeros_like(w[:, 0], dtype=torch.bool)
    for coord in (x, y, z):
        outside_one_plane |= _all3(w < coord) | _all3(w < -coord)
    rcp_w = 1.0 / w

    def snap(coord: Tensor, size: int) -> Tensor:  # cvt.rni.sat.s32: round half to even, NaN -> 0, saturate
        scaled = (coord * rcp_w * float(size * SUBPIXELS // 2)).round()
        return torch.nan_to_num(scaled, nan=0.0).clamp(-(2.0**31), 2.0**31 - 1).to(torch.int64)

    sx, sy = snap(x, width), snap(y, height)
    lo = torch.minimum(_min3(sx), _min3(sy))
    hi = torch.maximum(_max3(sx), _max3(sy))
    in_guard_band = _all3(w >= z.abs()) & (lo >= -GUARD_BAND - 1) & (hi <= GUARD_BAND) & (hi - lo <= GUARD_BAND)
    return sx, sy, in_guard_band, ~outside_one_plane


def _pixel_box(lo: Tensor, hi: Tensor, size: int) -> Tuple[Tensor, Tensor]:
    """First pixel and pixel count along one axis whose sample lies in snapped ``[lo, hi]``."""
    offset = (size - 1) * SUBPIXELS // 2  # sample of pixel p sits at 16 p - offset
    first = torch.div(lo + offset + SUBPIXELS - 1, SUBPIXELS, rounding_mode="floor").clamp(min=0)
    last = torch.div(hi + offset, SUBPIXELS, rounding_mode="floor").clamp(max=size - 1)
    return first, (last - first + 1).clamp(min=0)


def _draw_snapped(
    keys: Tensor, sx: Tensor, sy: Tensor, verts: Tensor, base: Tensor, face: Tensor, height: int, width: int
) -> None:
    """Integer edge-function rasterization of guard-band triangles, as cudaraster's fine raster."""
    area = (sx[:, 1] - sx[:, 0]) * (sy[:, 2] - sy[:, 0]) - (sy[:, 1] - sy[:, 0]) * (sx[:, 2] - sx[:, 0])
    keep = (area != 0).nonzero().squeeze(1)
    sx, sy, area, verts, base, face = (t.index_select(0, keep) for t in (sx, sy, area, verts, base, face))
    x0, bw = _pixel_box(_min3(sx), _max3(sx), width)
    y0, bh = _pixel_box(_min3(sy), _max3(sy), height)
    sample_x = SUBPIXELS * x0 - (width - 1) * SUBPIXELS // 2
    sample_y = SUBPIXELS * y0 - (height - 1) * SUBPIXELS // 2
    sign = area.sign()
    zw = verts[..., 2] / verts[..., 3]
    inv_area = 1.0 / area.abs().double()

    # Edge k runs from vertex k+1 to vertex k+2 (opposite vertex k), oriented so the inside is >= 0;
    # its value at the box's first pixel and its steps per pixel in x and y.
    columns, plane = [], torch.zeros(3, sx.shape[0], dtype=torch.float64, device=sx.device)
    for k in range(3):
        i, j = (k + 1) % 3, (k + 2) % 3
        dx, dy = sign * (sx[:, j] - sx[:, i]), sign * (sy[:, j] - sy[:, i])
        at_corner = (sx[:, i] - sample_x) * dy - (sy[:, i] - sample_y) * dx
        step_x, step_y = -SUBPIXELS * dy, SUBPIXELS * dx
        # Tie rule: a sample exactly on the edge is the triangle's unless the oriented edge heads
        # +y, or is horizontal heading -x.
        exclusive = (dy > 0) | ((dy == 0) & (dx <= 0))
        columns += [at_corner - exclusive.long(), step_x, step_y]
        # z/w is affine in screen space; edge k / |area| is vertex k's screen-space weight.
        weight = zw[:, k].double() * inv_area
        plane += torch.stack([at_corner, step_x, step_y]).double() * weight
    setup = torch.stack(columns + [bw, base + y0 * width + x0, face])  # [12, m], rows contiguous
    plane = plane.float()

    for tri_idx, local in _candidates(bw * bh):
        rows = [row.index_select(0, tri_idx) for row in setup[:10]]  # 1D gathers: fastest layout
        ly = torch.div(local, rows[9], rounding_mode="floor")
        lx = local - ly * rows[9]
        inside = (rows[0] + rows[1] * lx + rows[2] * ly) >= 0
        inside &= (rows[3] + rows[4] * lx + rows[5] * ly) >= 0
        inside &= (rows[6] + rows[7] * lx + rows[8] * ly) >= 0
        hit = inside.nonzero().squeeze(1)
        tri_idx, lx, ly = tri_idx.index_select(0, hit), lx.index_select(0, hit), ly.index_select(0, hit)
        z0, zx, zy, pixel0, tri_face = (row.index_select(0, tri_idx) for row in (*plane, setup[10], setup[11]))
        _resolve(keys, pixel0 + ly * width + lx, z0 + zx * lx + zy * ly, tri_face)


def _draw_homogeneous(keys: Tensor, verts: Tensor, base: Tensor, face: Tensor, height: int, width: int) -> None:
    """Homogeneous rasterization of the triangles cudaraster would clip."""
    if verts.shape[0] == 0:
        return
    x, y, w = verts[..., 0], verts[..., 1], verts[..., 3]
    # Where all w > 0 the projected vertices bound the triangle; otherwise it may reach any pixel.
    finite = (w > 0).all(1)
    boxes = []
    for coord, size in ((x, width), (y, height)):
        pixel = ((coord / w).clamp(-4.0, 4.0) + 1.0) * (size / 2) - 0.5
        first = torch.where(finite, pixel.amin(1).floor() - 1, torch.zeros_like(pixel[:, 0])).clamp(0, size - 1).long()
        last = (
            torch.where(finite, pixel.amax(1).ceil() + 1, torch.full_like(pixel[:, 0], size - 1))
            .clamp(0, size - 1)
            .long()
        )
        boxes.append((first, last - first + 1))
    (x0, bw), (y0, bh) = boxes
    setup = torch.stack([bw, x0, y0, base + y0 * width + x0, face], 1)
    flat_verts = verts.reshape(-1, 12)
    scale_x, offset_x = _pixel_to_clip(width, verts.dtype, verts.device)
    scale_y, offset_y = _pixel_to_clip(height, verts.dtype, verts.device)

    for tri_idx, local in _candidates(bw * bh):
        rows = setup.index_select(0, tri_idx)
        ly = torch.div(local, rows[:, 0], rounding_mode="floor")
        lx = local - ly * rows[:, 0]
        fx = scale_x * (rows[:, 1] + lx).to(verts.dtype) + offset_x
        fy = scale_y * (rows[:, 2] + ly).to(verts.dtype) + offset_y
        p = flat_verts.index_select(0, tri_idx).view(-1, 3, 4)
        a = _edge_functions(p, fx, fy)  # [c, 3]
        total = a.sum(1)
        a = a * total.sign().unsqueeze(1)
        w_num = (a * p[..., 3]).sum(1)  # |total| * w at the point hit
        z_num = (a * p[..., 2]).sum(1)
        hit = ((a >= 0).all(1) & (total != 0) & (w_num > 0) & (z_num.abs() <= w_num)).nonzero().squeeze(1)
        _resolve(keys, rows[hit, 3] + ly[hit] * width + lx[hit], z_num[hit] / w_num[hit], rows[hit, 4])


def _candidates(counts: Tensor) -> Iterator[Tuple[Tensor, Tensor]]:
    """Yield ``(triangle, index inside its box)`` for all ``counts.sum()`` pairs, a chunk at a time."""
    total = int(counts.sum()) if counts.numel() else 0
    if total == 0:
        return
    ends = counts.cumsum(0)
    starts = ends - counts
    for c0 in range(0, total, CANDIDATES_PER_CHUNK):
        c1 = min(c0 + CANDIDATES_PER_CHUNK, total)
        t0, t1 = int((ends <= c0).sum()), int((ends <= c1 - 1).sum())  # first and last triangle in [c0, c1)
        tris = torch.arange(t0, t1 + 1, device=counts.device)
        skip = (c0 - starts[tris]).clamp(min=0)
        take = torch.minimum(counts[tris], c1 - starts[tris]) - skip
        tris, skip, take = tris[take > 0], skip[take > 0], take[take > 0]
        # Segment of each pair by a cumulative sum over segment starts (repeat_interleave without
        # its thread-pool round trip, which costs milliseconds on a busy machine).
        seg_start = take.cumsum(0) - take
        seg = torch.zeros(c1 - c0, dtype=torch.int64, device=counts.device)
        seg[seg_start[1:]] = 1
        seg = seg.cumsum(0)
        yield tris[seg], torch.arange(c1 - c0, device=counts.device) - seg_start[seg] + skip[seg]


def _resolve(keys: Tensor, pixel: Tensor, depth: Tensor, face: Tensor) -> None:
    """Keep, per pixel, the fragment with the smallest (depth, face)."""
    bits = depth.float().contiguous().view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # monotonic in the float's value
    keys.scatter_reduce_(0, pixel, (ordered.long() << 32) | face, reduce="amin")


def _pixel_to_clip(size: int, dtype: torch.dtype, device: torch.device) -> Tuple[Tensor, Tensor]:
    """``(scale, offset)`` with pixel centre ``p`` at clip ``scale * p + offset``, rounded as nvdiffrast."""
    one = torch.ones((), dtype=dtype, device=device)
    return 2 * one / size, one / size - 1


def _edge_functions(p: Tensor, fx: Tensor, fy: Tensor) -> Tensor:
    """nvdiffrast's 2D homogeneous edge functions ``[n, 3]`` of triangles ``p [n, 3, 4]`` at ``(fx, fy)``."""
    qx = p[..., 0] - fx.unsqueeze(1) * p[..., 3]
    qy = p[..., 1] - fy.unsqueeze(1) * p[..., 3]
    i, j = [1, 2, 0], [2, 0, 1]
    return qx[:, i] * qy[:, j] - qy[:, i] * qx[:, j]


def _pixel_outputs(
    pos: Tensor, tri: Tensor, pixels: Tensor, faces: Tensor, height: int, width: int, grad_db: bool
) -> Tuple[Tensor, Tensor]:
    """``(u, v, z/w, id)`` and ``(du/dX, du/dY, dv/dX, dv/dY)`` ``[n, 4]`` at the given pixels."""
    batch, num_verts = pos.shape[:2]
    item = torch.div(pixels, height * width, rounding_mode="floor")
    rest = pixels - item * (height * width)
    py = torch.div(rest, width, rounding_mode="floor")
    px = rest - py * width
    vidx = tri[faces] + (item * num_verts).unsqueeze(1)
    p = pos.reshape(-1, 4).index_select(0, vidx.view(-1)).view(-1, 3, 4)
    scale_x, offset_x = _pixel_to_clip(width, pos.dtype, pos.device)
    scale_y, offset_y = _pixel_to_clip(height, pos.dtype, pos.device)
    fx = scale_x * px.to(pos.dtype) + offset_x
    fy = scale_y * py.to(pos.dtype) + offset_y

    a = _edge_functions(p, fx, fy)
    total = a[:, 0] + a[:, 1] + a[:, 2]
    a_, total_, p_ = a.detach(), total.detach(), p.detach()
    inv = 1.0 / total_
    bary = (a_[:, :2] * inv.unsqueeze(1)).clamp(0.0, 1.0)
    z = p_[:, 0, 2] * a_[:, 0] + p_[:, 1, 2] * a_[:, 1] + p_[:, 2, 2] * a_[:, 2]
    w = p_[:, 0, 3] * a_[:, 0] + p_[:, 1, 3] * a_[:, 1] + p_[:, 2, 3] * a_[:, 2]
    depth = (z / w).clamp(-1.0, 1.0)

    inv_eps = 1.0 / (total + torch.copysign(torch.full_like(total_, BARY_GRAD_EPS), total_))
    bary_eps = a[:, :2] * inv_eps.unsqueeze(1)
    uv = value_with_grad_of(bary, bary_eps)
    values = torch.cat([uv, depth.unsqueeze(1), tri_id_to_float(faces + 1).to(pos.dtype).unsqueeze(1)], 1)

    # d a_k / d(clip x) and d a_k / d(clip y), up to sign: (p_{k+2}.y p_{k+1}.w - p_{k+1}.y p_{k+2}.w, ...)
    i, j = [1, 2, 0], [2, 0, 1]
    q = p if grad_db else p_
    da_dx = q[:, j, 1] * q[:, i, 3] - q[:, i, 1] * q[:, j, 3]  # [n, 3]
    da_dy = q[:, i, 0] * q[:, j, 3] - q[:, j, 0] * q[:, i, 3]
    sum_dx = da_dx[:, 0] + da_dx[:, 1] + da_dx[:, 2]
    sum_dy = da_dy[:, 0] + da_dy[:, 1] + da_dy[:, 2]

    def derivatives(b: Tensor, inv_total: Tensor, dx: Tensor, dy: Tensor, sdx: Tensor, sdy: Tensor) -> Tensor:
        ddx, ddy = scale_x * inv_total, scale_y * inv_total
        return torch.stack(
            [
                ddx * (b[:, 0] * sdx - dx[:, 0]),
                ddy * (b[:, 0] * sdy - dy[:, 0]),
                ddx * (b[:, 1] * sdx - dx[:, 1]),
                ddy * (b[:, 1] * sdy - dy[:, 1]),
            ],
            1,
        )

    derivs = derivatives(bary, inv, da_dx.detach(), da_dy.detach(), sum_dx.detach(), sum_dy.detach())
    if grad_db:
        derivs = value_with_grad_of(derivs, derivatives(bary_eps, inv_eps, da_dx, da_dy, sum_dx, sum_dy))
    return values, derivs
