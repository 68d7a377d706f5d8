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

How the work is laid out, so that its cost grows with the pixels actually tested:

* Vertices are projected and snapped once, not once per triangle corner.
* Per image, triangles are culled in chunks before any setup: outside one frustum plane, or
  (snapped) with no pixel centre in their pixel box, which drops most sub-pixel triangles of a
  dense mesh. Back faces are kept: nvdiffrast draws both facings.
* Snapped triangles are set up (edge functions, depth plane) in float64, which holds every
  integer edge value exactly and, unlike int64, multiplies in vector registers. A triangle whose
  box is one pixel is tested there first: the misses (most sub-pixel triangles) skip the rest.
* Triangles are binned by the power-of-two size of their pixel box; each well-filled bin up to
  64 x 64 pixels is tested as a dense grid per triangle with broadcast arithmetic, without
  per-pixel gathers or divisions. Larger boxes, thin bins and clipped triangles go through lists
  of (triangle, pixel) candidates.
* Depth resolution is one ``scatter_reduce(amin)`` of (depth, id) keys per batch of fragments.

Peak memory is bounded by the chunk sizes (``TRIANGLES_PER_CHUNK`` triangles set up,
``CANDIDATES_PER_CHUNK`` pairs tested at once), not by the mesh or the image.
"""

from __future__ import annotations

from typing import Iterator, List, Tuple

import torch
from torch import Tensor

from . import torch_parallel
from .torch_common import tri_id_to_float, value_with_grad_of

SUBPIXELS = 16  # cudaraster snaps to 1/16 pixel
SUBPIXEL_BITS = 4  # log2(SUBPIXELS)
GUARD_BAND = 32767  # snapped coordinates beyond +-2**15 go through cudaraster's clipper
TRIANGLES_PER_CHUNK = 1 << 18  # (batch item, triangle) pairs set up at once
CANDIDATES_PER_CHUNK = 1 << 20  # (triangle, pixel) pairs tested at once
GRID_CLASSES = 6  # boxes up to 2**6 = 64 pixels a side are tested as dense grids
GRID_MIN_PAIRS = 1 << 12  # ... when their size class has at least this many (triangle, pixel) pairs
BARY_GRAD_EPS = 1e-6  # nvdiffrast's epsilon on the barycentric denominator in backward
_EMPTY = torch.iinfo(torch.int64).max
_OUTSIDE_BITS, _DEPTH_BIT = 0x3F, 0x40  # vertex flags, see _project_vertices
_SNAP_LIMIT = float(1 << 24)
PARALLEL_MIN_PIXELS = 1 << 14  # pixels of a batch below which one thread rasterizes it


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
    a pixel is the nearest one, ties broken by the smaller index. With several torch threads,
    groups of images are drawn in parallel (:mod:`.torch_parallel`; no autograd here): a pixel's
    minimum does not depend on the grouping, so the keys are the same.
    """
    batch = pos.shape[0]
    groups = torch_parallel.split(batch, torch_parallel.threads())
    if len(groups) > 1 and batch * height * width >= PARALLEL_MIN_PIXELS:
        draw = lambda g: _nearest_fragments(pos[g[0] : g[1]], tri, height, width)  # noqa: E731
        return torch.cat(torch_parallel.parallel_map(draw, groups))
    return _nearest_fragments(pos, tri, height, width)


def _nearest_fragments(pos: Tensor, tri: Tensor, height: int, width: int) -> Tensor:
    """:func:`nearest_fragments` of one group of images, in the calling thread."""
    batch, num_verts = pos.shape[:2]
    num_tris = tri.shape[0]
    keys = torch.full((batch * height * width,), _EMPTY, dtype=torch.int64, device=pos.device)
    flat_pos = pos.reshape(-1, 4)
    # Per-vertex work once (not once per triangle corner): the same float operations per vertex.
    packed_xy, flags, depth = _project_vertices(flat_pos, height, width)
    pending, num_pending = [], 0  # snapped triangles, drawn together across images and chunks
    for item in range(batch):
        base = item * height * width
        for start in range(0, num_tris, TRIANGLES_PER_CHUNK):
            vidx = tri[start : start + TRIANGLES_PER_CHUNK] + item * num_verts  # [n, 3]
            flat_vidx = vidx.reshape(-1)
            xy = packed_xy.index_select(0, flat_vidx).view(torch.int32).view(-1, 3, 2)
            sx, sy = xy[..., 0], xy[..., 1]
            f = flags.index_select(0, flat_vidx).view(-1, 3)
            culled = (f[:, 0] & f[:, 1] & f[:, 2] & _OUTSIDE_BITS) != 0  # all outside one frustum plane
            min_x, max_x, min_y, max_y = _min3(sx), _max3(sx), _min3(sy), _max3(sy)
            lo, hi = torch.minimum(min_x, min_y), torch.maximum(max_x, max_y)
            # |snapped| <= 2**24 (see _project_vertices), so int32 differences do not overflow.
            in_guard_band = ((f[:, 0] | f[:, 1] | f[:, 2]) & _DEPTH_BIT) == 0
            in_guard_band &= (lo >= -GUARD_BAND - 1) & (hi <= GUARD_BAND) & (hi - lo <= GUARD_BAND)
            # Snapped triangles whose box holds no pixel centre draw nothing: drop them before any setup.
            x0, bw = _pixel_box(min_x, max_x, width)
            y0, bh = _pixel_box(min_y, max_y, height)
            fast = (~culled & in_guard_band & (bw > 0) & (bh > 0)).nonzero().squeeze(1)
            slow = (~culled & ~in_guard_band).nonzero().squeeze(1)
            if fast.numel():
                corners = xy.view(-1, 6).index_select(0, fast).view(-1, 3, 2)  # one gather of both coordinates
                selected = [corners[..., 0], corners[..., 1]] + [t.index_select(0, fast) for t in (x0, bw, y0, bh)]
                zw = depth.index_select(0, vidx.index_select(0, fast).view(-1)).view(-1, 3)
                pending.append(selected + [torch.full_like(fast, base), fast + start, zw])
                num_pending += fast.numel()
            if num_pending >= TRIANGLES_PER_CHUNK:
                _draw_pending(keys, pending, height, width)
                pending, num_pending = [], 0
            if slow.numel():
                verts = flat_pos.index_select(0, vidx.index_select(0, slow).view(-1)).view(-1, 3, 4)
                _draw_homogeneous(keys, verts, torch.full_like(slow, base), slow + start, height, width)
    if pending:
        _draw_pending(keys, pending, height, width)
    return keys


def _draw_pending(keys: Tensor, pending: List[List[Tensor]], height: int, width: int) -> None:
    """:func:`_draw_snapped` of the triangles collected in ``pending`` (each entry: its arguments)."""
    parts = [torch.cat(column) if len(pending) > 1 else column[0] for column in zip(*pending)]
    _draw_snapped(keys, *parts[:2], *(t.long() for t in parts[2:6]), *parts[6:], height, width)


def _min3(t: Tensor) -> Tensor:
    # Column-wise: torch's reductions over a size-3 inner dimension are several times slower.
    return torch.minimum(torch.minimum(t[:, 0], t[:, 1]), t[:, 2])


def _max3(t: Tensor) -> Tensor:
    return torch.maximum(torch.maximum(t[:, 0], t[:, 1]), t[:, 2])


def _all3(t: Tensor) -> Tensor:
    return t[:, 0] & t[:, 1] & t[:, 2]


def _project_vertices(verts: Tensor, height: int, width: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Per vertex of ``verts [N, 4]``: its snapped 1/16-pixel ``(x, y)`` as an int32 pair packed in
    one int64 (one gather fetches both), flags (bits 0-5: the frustum planes it lies outside; a
    triangle whose three vertices share one is culled; bit 6: outside the depth range ``|z| <= w``)
    and ``z/w``."""
    x, y, z, w = verts.unbind(-1)
    flags = (w < z.abs()).to(torch.uint8) << 6
    for bit, coord in enumerate((x, y, z)):
        flags |= (w < coord).to(torch.uint8) << (2 * bit)
        flags |= (w < -coord).to(torch.uint8) << (2 * bit + 1)
    rcp_w = 1.0 / w

    # cvt.rni.sat.s32: round half to even, NaN -> 0, saturate. Saturating at 2**24 instead of
    # 2**31 changes nothing: beyond the guard band (2**15) a triangle takes the clipping path.
    def snap(coord: Tensor, size: int) -> Tensor:
        scaled = (coord * rcp_w * float(size * SUBPIXELS // 2)).round()
        return torch.nan_to_num(scaled, nan=0.0).clamp(-_SNAP_LIMIT, _SNAP_LIMIT).to(torch.int32)

    packed = torch.stack([snap(x, width), snap(y, height)], 1).view(torch.int64).squeeze(1)
    return packed, flags, z / w


def _pixel_box(lo: Tensor, hi: Tensor, size: int) -> Tuple[Tensor, Tensor]:
    """First pixel and pixel count along one axis whose sample lies in snapped ``[lo, hi]``."""
    offset = (size - 1) * SUBPIXELS // 2  # sample of pixel p sits at 16 p - offset
    # Floor division by 16 as an arithmetic shift (integer division is not vectorized).
    first = ((lo + (offset + SUBPIXELS - 1)) >> SUBPIXEL_BITS).clamp(min=0)
    last = ((hi + offset) >> SUBPIXEL_BITS).clamp(max=size - 1)
    return first, (last - first + 1).clamp(min=0)


def _draw_snapped(
    keys: Tensor,
    sx: Tensor,
    sy: Tensor,
    x0: Tensor,
    bw: Tensor,
    y0: Tensor,
    bh: Tensor,
    base: Tensor,
    face: Tensor,
    zw: Tensor,
    height: int,
    width: int,
) -> None:
    """Integer edge-function rasterization of guard-band triangles, as cudaraster's fine raster.

    ``sx, sy, zw [m, 3]`` are the snapped corners and their ``z/w``; ``x0, bw, y0, bh`` the
    non-empty pixel box; ``base`` their image's first pixel in ``keys``.

    The edge functions are evaluated in float64, which holds all their values exactly (guard-band
    coordinates and their differences are below 2**16, so edge values at any pixel of a box stay
    below 2**40) and, unlike int64, multiplies in vector registers."""
    px = [sx[:, k].double() for k in range(3)]
    py = [sy[:, k].double() for k in range(3)]
    zs = [zw[:, k] for k in range(3)]
    area = (px[1] - px[0]) * (py[2] - py[0]) - (py[1] - py[0]) * (px[2] - px[0])
    keep = (area != 0).nonzero().squeeze(1)
    if keep.numel() < area.numel():
        px, py, zs = ([t.index_select(0, keep) for t in column] for column in (px, py, zs))
        area, x0, bw, y0, bh, base, face = (t.index_select(0, keep) for t in (area, x0, bw, y0, bh, base, face))
    sample_x = (SUBPIXELS * x0 - (width - 1) * SUBPIXELS // 2).double()
    sample_y = (SUBPIXELS * y0 - (height - 1) * SUBPIXELS // 2).double()
    sign = area.sign()

    # Edge k runs from vertex k+1 to vertex k+2 (opposite vertex k), oriented so the inside is >= 0;
    # its value at the box's first pixel (tie rule applied) and its steps per pixel in x and y.
    dx, dy, at_corner, first = [], [], [], []
    for k in range(3):
        i, j = (k + 1) % 3, (k + 2) % 3
        dx.append(sign * (px[j] - px[i]))
        dy.append(sign * (py[j] - py[i]))
        at_corner.append((px[i] - sample_x) * dy[k] - (py[i] - sample_y) * dx[k])
        # Tie rule: a sample exactly on the edge is the triangle's unless the oriented edge heads
        # +y, or is horizontal heading -x.
        exclusive = (dy[k] > 0) | ((dy[k] == 0) & (dx[k] <= 0))
        first.append(at_corner[k] - exclusive.double())
    # Most triangles of a dense mesh have a one-pixel box: that pixel is their only test, done here,
    # so that the misses (most of them) skip the rest of the setup.
    miss = (bw == 1) & (bh == 1) & ((first[0] < 0) | (first[1] < 0) | (first[2] < 0))
    if bool(miss.any()):
        keep = (~miss).nonzero().squeeze(1)
        dx, dy, at_corner, first, zs = ([t.index_select(0, keep) for t in c] for c in (dx, dy, at_corner, first, zs))
        area, x0, bw, y0, bh, base, face = (t.index_select(0, keep) for t in (area, x0, bw, y0, bh, base, face))
    inv_area = 1.0 / area.abs()

    rows, plane = [], torch.zeros(3, area.shape[0], dtype=torch.float64, device=area.device)
    for k in range(3):
        step_x, step_y = -SUBPIXELS * dy[k], SUBPIXELS * dx[k]
        rows += [first[k], step_x, step_y]
        # z/w is affine in screen space; edge k / |area| is vertex k's screen-space weight.
        weight = zs[k].double() * inv_area
        for row, term in zip(plane, (at_corner[k], step_x, step_y)):
            row += term * weight
    setup = rows + [bw.double(), bh.double()]  # 11 rows [m]: 1D gathers are the fastest layout
    ints = [base + y0 * width + x0, face]  # first pixel, triangle index
    plane = list(plane.float())

    # Boxes up to 2**GRID_CLASSES pixels a side are tested as dense power-of-two grids, one size
    # class at a time (broadcast arithmetic, no per-pair gathers or divisions); larger ones pair
    # by pair, as lists of candidates.
    cls_x, cls_y = _size_class(bw), _size_class(bh)
    cls = torch.where((cls_x <= GRID_CLASSES) & (cls_y <= GRID_CLASSES), cls_y * (GRID_CLASSES + 1) + cls_x, -1)
    counts = torch.bincount(cls + 1, minlength=(GRID_CLASSES + 1) ** 2 + 1)[1:].tolist()
    # A class with little work costs more in per-call overhead than its pairs: it joins the list.
    gridded = []
    for c, count in enumerate(counts):
        side_x, side_y = 1 << (c % (GRID_CLASSES + 1)), 1 << (c // (GRID_CLASSES + 1))
        if count * side_x * side_y >= GRID_MIN_PAIRS or (count and side_x * side_y == 1):
            members = (cls == c).nonzero().squeeze(1)
            _draw_grid(keys, setup, ints, plane, members, side_x, side_y, width)
            gridded.append(c)
    in_grid = torch.zeros(len(counts) + 1, dtype=torch.bool, device=cls.device)
    in_grid[[c + 1 for c in gridded]] = True
    listed = ~in_grid[cls + 1]  # class -1 (boxes beyond the grids) is never gridded
    if bool(listed.any()):
        large = listed.nonzero().squeeze(1)
        setup, ints, plane = ([row.index_select(0, large) for row in rows] for rows in (setup, ints, plane))
        bw, bh = bw[large], bh[large]
        for tri_idx, local in _candidates(bw * bh):
            rows = [row.index_select(0, tri_idx) for row in setup[:9]]  # 1D gathers: fastest layout
            box_w = bw.index_select(0, tri_idx)
            ly = torch.div(local, box_w, rounding_mode="floor")
            lx = local - ly * box_w
            fx, fy = lx.double(), ly.double()
            inside = (rows[0] + rows[1] * fx + rows[2] * fy) >= 0
            inside &= (rows[3] + rows[4] * fx + rows[5] * fy) >= 0
            inside &= (rows[6] + rows[7] * fx + rows[8] * fy) >= 0
            hit = inside.nonzero().squeeze(1)
            tri_idx, lx, ly = tri_idx.index_select(0, hit), lx.index_select(0, hit), ly.index_select(0, hit)
            z0, zx, zy, pixel0, tri_face = (row.index_select(0, tri_idx) for row in (*plane, *ints))
            _resolve(keys, pixel0 + ly * width + lx, z0 + zx * lx + zy * ly, tri_face)


def _size_class(extent: Tensor) -> Tensor:
    """``ceil(log2(extent))`` of extents >= 1 up to ``2**GRID_CLASSES``, ``GRID_CLASSES + 1`` above: the
    power-of-two grid side that holds them (comparisons: frexp is not vectorized)."""
    extent = extent.int()
    cls = (extent > 1).int()
    for c in range(1, GRID_CLASSES + 1):
        cls += extent > (1 << c)
    return cls


def _draw_grid(
    keys: Tensor,
    setup: List[Tensor],
    ints: List[Tensor],
    plane: List[Tensor],
    members: Tensor,
    side_x: int,
    side_y: int,
    width: int,
) -> None:
    """Test triangles ``members`` (boxes within ``side_x x side_y``) at every pixel of that grid."""
    cells = side_x * side_y
    lx = torch.arange(side_x, dtype=setup[0].dtype, device=members.device)
    ly = torch.arange(side_y, dtype=setup[0].dtype, device=members.device).unsqueeze(1)  # [side_y, 1]
    shift_x, shift_cells = side_x.bit_length() - 1, cells.bit_length() - 1
    per_chunk = max(1, CANDIDATES_PER_CHUNK // cells)
    for m0 in range(0, members.numel(), per_chunk):
        chunk = members[m0 : m0 + per_chunk]
        rows = [row.index_select(0, chunk).unsqueeze(1) for row in setup]  # [m, 1] each
        # Inside the clipped box, then inside all three edges: [m, side_y, side_x].
        inside = (lx < rows[9]).unsqueeze(1) & (ly < rows[10].unsqueeze(1))
        for k in range(3):
            along_x = (rows[3 * k] + rows[3 * k + 1] * lx).unsqueeze(1)  # [m, 1, side_x]
            inside &= (along_x + rows[3 * k + 2].unsqueeze(1) * ly) >= 0
        hit = inside.view(-1).nonzero().squeeze(1)
        tri_idx = chunk.index_select(0, hit >> shift_cells)
        hx, hy = hit & (side_x - 1), (hit >> shift_x) & (side_y - 1)
        z0, zx, zy, pixel0, tri_face = (row.index_select(0, tri_idx) for row in (*plane, *ints))
        _resolve(keys, pixel0 + hy * width + hx, z0 + zx * hx + zy * hy, tri_face)


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
    vidx = tri.index_select(0, faces) + (item * num_verts).unsqueeze(1)
    # One gather, then 12 contiguous columns: per-column arithmetic on [n] vectors makes far fewer
    # and smaller temporaries than strided [n, 3] views. p[k][c] is coordinate c of corner k.
    corners = pos.reshape(-1, 4).index_select(0, vidx.view(-1)).view(-1, 12).t().contiguous().view(3, 4, -1)
    p = [c.unbind(0) for c in corners.unbind(0)]
    p_ = [[c.detach() for c in corner] for corner in p]
    scale_x, offset_x = _pixel_to_clip(width, pos.dtype, pos.device)
    scale_y, offset_y = _pixel_to_clip(height, pos.dtype, pos.device)
    fx = scale_x * px.to(pos.dtype) + offset_x
    fy = scale_y * py.to(pos.dtype) + offset_y

    # nvdiffrast's 2D homogeneous edge functions a_k at (fx, fy), k = 0, 1, 2.
    qx = [corner[0] - fx * corner[3] for corner in p]
    qy = [corner[1] - fy * corner[3] for corner in p]
    a = [qx[(k + 1) % 3] * qy[(k + 2) % 3] - qy[(k + 1) % 3] * qx[(k + 2) % 3] for k in range(3)]
    total = a[0] + a[1] + a[2]
    a_, total_ = [t.detach() for t in a], total.detach()
    inv = 1.0 / total_
    bary = [(a_[k] * inv).clamp(0.0, 1.0) for k in range(2)]
    z = p_[0][2] * a_[0] + p_[1][2] * a_[1] + p_[2][2] * a_[2]
    w = p_[0][3] * a_[0] + p_[1][3] * a_[1] + p_[2][3] * a_[2]
    depth = (z / w).clamp(-1.0, 1.0)

    inv_eps = 1.0 / (total + torch.copysign(torch.full_like(total_, BARY_GRAD_EPS), total_))
    bary_eps = [a[k] * inv_eps for k in range(2)]
    uv = value_with_grad_of(torch.stack(bary, 1), torch.stack(bary_eps, 1))
    values = torch.cat([uv, depth.unsqueeze(1), tri_id_to_float(faces + 1).to(pos.dtype).unsqueeze(1)], 1)

    # d a_k / d(clip x) and d a_k / d(clip y), up to sign: (p_{k+2}.y p_{k+1}.w - p_{k+1}.y p_{k+2}.w, ...)
    def edge_slopes(q):
        da_dx = [q[(k + 2) % 3][1] * q[(k + 1) % 3][3] - q[(k + 1) % 3][1] * q[(k + 2) % 3][3] for k in range(3)]
        da_dy = [q[(k + 1) % 3][0] * q[(k + 2) % 3][3] - q[(k + 2) % 3][0] * q[(k + 1) % 3][3] for k in range(3)]
        return da_dx, da_dy, da_dx[0] + da_dx[1] + da_dx[2], da_dy[0] + da_dy[1] + da_dy[2]

    def derivatives(b, inv_total: Tensor, dx, dy, sdx: Tensor, sdy: Tensor) -> Tensor:
        ddx, ddy = scale_x * inv_total, scale_y * inv_total
        return torch.stack(
            [
                ddx * (b[0] * sdx - dx[0]),
                ddy * (b[0] * sdy - dy[0]),
                ddx * (b[1] * sdx - dx[1]),
                ddy * (b[1] * sdy - dy[1]),
            ],
            1,
        )

    derivs = derivatives(bary, inv, *edge_slopes(p_))
    if grad_db:
        derivs = value_with_grad_of(derivs, derivatives(bary_eps, inv_eps, *edge_slopes(p)))
    return values, derivs
