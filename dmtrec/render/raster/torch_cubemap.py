"""Cube-map addressing for the torch texture op, with nvdiffrast's conventions.

A cube map is ``[B, 6, S, S, C]`` with faces ordered +x, -x, +y, -y, +z, -z. A direction
picks the face of its largest-magnitude component (ties go to x, then y: z only wins when
strictly largest, y when strictly larger than x) and lands at face coordinates
``s = (d . s_dir) / (2 |d_major|) + 1/2`` (column) and ``t = (d . t_dir) / (2 |d_major|) + 1/2``
(row), with the per-face directions of :data:`_FACE_BASIS` (the OpenGL layout).

Bilinear taps that fall one texel outside a face read the touching edge texel of the
neighbouring face; a tap outside in both directions (a cube corner, where only three
texels meet) takes the mean of the other three taps. Both rules follow from the geometry:
a texel centre just beyond a face edge, pushed out onto the cube, lies in the
neighbouring face's edge texel.
"""

from __future__ import annotations

import functools
from typing import Tuple, Union

import torch
from torch import Tensor

# Per face, in world axes: the outward normal, then the s (column) and t (row) directions.
_FACE_BASIS = (
    ((1, 0, 0), (0, 0, -1), (0, -1, 0)),  # +x: s along -z, t along -y
    ((-1, 0, 0), (0, 0, 1), (0, -1, 0)),  # -x: s along +z, t along -y
    ((0, 1, 0), (1, 0, 0), (0, 0, 1)),  # +y: s along +x, t along +z
    ((0, -1, 0), (1, 0, 0), (0, 0, -1)),  # -y: s along +x, t along -z
    ((0, 0, 1), (1, 0, 0), (0, -1, 0)),  # +z: s along +x, t along -y
    ((0, 0, -1), (-1, 0, 0), (0, -1, 0)),  # -z: s along -x, t along -y
)

Size = Union[int, Tensor]


@functools.lru_cache(maxsize=None)
def _basis_table(device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.tensor(_FACE_BASIS, dtype=dtype, device=device).reshape(6, 9)


def _face_basis(face: Tensor, dtype: torch.dtype) -> Tensor:
    """``[..., 3, 3]`` basis rows (normal, s_dir, t_dir) of each face in ``face [...]``."""
    table = _basis_table(face.device, dtype)
    return table.index_select(0, face.reshape(-1)).reshape(face.shape + (3, 3))


@functools.lru_cache(maxsize=None)
def _axis_table(device: torch.device) -> Tensor:
    """Per face: (normal axis, s axis, s sign, t axis, t sign)."""

    def axis_and_sign(v: Tuple[int, int, int]) -> Tuple[int, int]:
        k = next(i for i in range(3) if v[i])
        return k, v[k]

    rows = [(axis_and_sign(n)[0], *axis_and_sign(s), *axis_and_sign(t)) for n, s, t in _FACE_BASIS]
    return torch.tensor(rows, dtype=torch.long, device=device)


def _major_face(d: Tensor) -> Tensor:
    """Face index ``[...]`` (long) of directions ``d [..., 3]`` (float or integer)."""
    ax, ay, az = d.abs().unbind(-1)
    major = torch.where(az > torch.maximum(ax, ay), 2, torch.where(ay > ax, 1, 0))
    c = d.gather(-1, major[..., None]).squeeze(-1)
    return 2 * major + (c < 0).long()


def _project(d: Tensor, face: Tensor) -> Tensor:
    """Face coordinates ``[N, 2]`` of ``d [N, 3]`` on ``face [N]``."""
    # Picking components (rather than dotting with the basis) keeps an infinite component
    # from turning the others into NaN (0 * inf), as nvdiffrast's indexing does.
    major, s_axis, s_sign, t_axis, t_sign = _axis_table(d.device).index_select(0, face).unbind(-1)
    depth2 = 2 * d.gather(-1, major[:, None]).squeeze(-1).abs()
    # Dividing (rather than multiplying by a reciprocal) keeps |a| / (2|c|) <= 1/2 exactly,
    # so s and t never leave [0, 1] and need no clamp.
    s = s_sign * d.gather(-1, s_axis[:, None]).squeeze(-1) / depth2 + 0.5
    t = t_sign * d.gather(-1, t_axis[:, None]).squeeze(-1) / depth2 + 0.5
    return torch.stack([s, t], -1)


def _smooth_directions(dirs: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Directions whose projection and its Jacobian are finite, a placeholder elsewhere.

    Returns ``face [N]`` and ``st_raw [N, 2]`` (the face and projection of ``dirs``, no
    gradient), ``smooth [N]``, and ``safe_dirs [N, 3]``: ``dirs`` where ``smooth``, +x
    elsewhere, so that no NaN reaches the backward pass.
    """
    with torch.no_grad():
        face = _major_face(dirs)
        st_raw = _project(dirs, face)
        smooth = torch.isfinite(st_raw).all(-1) & torch.isfinite(dirs).all(-1)
        placeholder = torch.tensor([1.0, 0.0, 0.0], dtype=dirs.dtype, device=dirs.device)
    return face, st_raw, smooth, torch.where(smooth[:, None], dirs, placeholder)


def cube_face_coords(dirs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Project directions onto the cube.

    Args:
        dirs: ``[N, 3]`` directions (need not be normalized).

    Returns:
        ``face [N]`` long in 0..5, ``st [N, 2]`` face coordinates in [0, 1] (differentiable
        w.r.t. ``dirs``), ``valid [N]`` bool: False where the projection is not finite (a
        zero or NaN direction), where the sample must read as zero.
    """
    face, st_raw, smooth, safe_dirs = _smooth_directions(dirs)
    valid = torch.isfinite(st_raw).all(-1)
    # A direction with an infinite component can still project finitely: it keeps that
    # value without a gradient, as in nvdiffrast, whose Jacobian there is not finite.
    st = torch.where(smooth[:, None], _project(safe_dirs, torch.where(smooth, face, 0)), st_raw.nan_to_num(0.5))
    return torch.where(valid, face, 0), st, valid


def cube_face_derivatives(dirs: Tensor, dirs_da: Tensor) -> Tensor:
    """Pixel derivatives of the face coordinates, the chain rule through the projection.

    Args:
        dirs: ``[N, 3]`` directions.
        dirs_da: ``[N, 6]`` = (dx/dX, dx/dY, dy/dX, dy/dY, dz/dX, dz/dY).

    Returns:
        ``[N, 4]`` = (ds/dX, ds/dY, dt/dX, dt/dY), differentiable w.r.t. ``dirs`` and
        ``dirs_da`` (so the mip level also depends on the direction, as in nvdiffrast);
        zero where the projection or its Jacobian is not finite.
    """
    face, _, smooth, safe_dirs = _smooth_directions(dirs)
    basis = _face_basis(torch.where(smooth, face, 0), dirs.dtype)  # [N, 3, 3]
    dirs_da = torch.where(smooth[:, None], dirs_da, torch.zeros_like(dirs_da))
    local = (basis @ safe_dirs[:, :, None]).squeeze(-1)  # (depth, s numerator, t numerator)
    local_da = basis @ dirs_da.reshape(-1, 3, 2)  # [N, 3, (X, Y)]
    depth, d_depth = local[:, :1], local_da[:, 0]
    # d(a / (2 depth)) = (da * depth - a * d_depth) / (2 depth^2)
    ds = (local_da[:, 1] * depth - local[:, 1:2] * d_depth) / (2 * depth * depth)
    dt = (local_da[:, 2] * depth - local[:, 2:3] * d_depth) / (2 * depth * depth)
    return torch.where(smooth[:, None], torch.cat([ds, dt], -1), 0.0)


def _lift_taps(face: Tensor, ix: Tensor, iy: Tensor, size: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The texel each tap ``(face, ix, iy)`` (ix, iy in ``[-1, size]``, not both outside) lies in.

    The texel centre, in doubled integer face coordinates, is lifted to the point on the
    face's plane at depth ``size`` and projected back onto the cube.
    """
    basis = _face_basis(face, torch.long)
    d = size * basis[:, 0] + (2 * ix + 1 - size)[:, None] * basis[:, 1] + (2 * iy + 1 - size)[:, None] * basis[:, 2]
    new_face = _major_face(d)
    local = (_face_basis(new_face, torch.long) * d[:, None, :]).sum(-1)  # (depth, s and t numerators)
    # Column / row = floor(s * size) with s = numerator / (2 depth) + 1/2, in integers.
    texel = torch.div((local[:, 1:] + local[:, :1]) * size, 2 * local[:, :1], rounding_mode="floor")
    return new_face, texel[:, 0], texel[:, 1]


@functools.lru_cache(maxsize=None)
def _edge_table(device: torch.device) -> Tensor:
    """Per (face, edge), where a tap one texel beyond the edge lands: ``[24, 3]`` rows of
    (neighbour face, column rule, row rule), rows ordered face * 4 + edge with edges
    (column -1, column S, row -1, row S). A rule maps the tap's index ``k`` along the edge
    to 0: 0, 1: S - 1, 2: k, 3: S - 1 - k; the rules are read off the geometry of
    :func:`_lift_taps` (any S > 2 gives the same ones)."""
    size = 5
    k = torch.arange(size)
    before, after = torch.full_like(k, -1), torch.full_like(k, size)
    beyond = [(before, k), (after, k), (k, before), (k, after)]
    candidates = torch.stack([torch.zeros_like(k), torch.full_like(k, size - 1), k, size - 1 - k])
    rows = []
    for face in range(6):
        for ix, iy in beyond:
            new_face, col, row = _lift_taps(torch.full_like(k, face), ix, iy, size)
            rule = [int(torch.nonzero((candidates == v).all(1))[0]) for v in (col, row)]
            rows.append((int(new_face[0]), *rule))
    return torch.tensor(rows, dtype=torch.long, device=device)


def cube_texel_remap(face: Tensor, ix: Tensor, iy: Tensor, size: Size) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Resolve bilinear taps that may lie one texel outside their face.

    Args:
        face: ``[N]`` long face of the sample.
        ix, iy: ``[..., N]`` long texel column / row of taps, each in ``[-1, size]``.
        size: face width of the mip level sampled (int, or long broadcastable to ``ix``).

    Returns:
        ``face, ix, iy`` (``[..., N]``) of the texel on the cube each tap reads (taps inside
        the face are unchanged), and ``corner [..., N]`` bool where the tap is outside in
        both directions and reads nothing (the caller substitutes the mean of the other
        three taps; its ``face, ix, iy`` are meaningless).
    """
    out_x = (ix < 0) | (ix >= size)
    out_y = (iy < 0) | (iy >= size)
    edge = torch.where(out_x, (ix >= 0).long(), 2 + (iy >= 0).long())
    along = torch.where(out_x, iy, ix)
    rules = _edge_table(face.device).index_select(0, (face * 4 + edge).reshape(-1)).reshape(edge.shape + (3,))
    new_face, col_rule, row_rule = rules.unbind(-1)

    def apply(rule: Tensor) -> Tensor:
        last = size - 1
        return torch.where(rule == 0, 0, torch.where(rule == 1, last, torch.where(rule == 2, along, last - along)))

    outside = out_x | out_y
    return (
        torch.where(outside, new_face, face),
        torch.where(outside, apply(col_rule), ix),
        torch.where(outside, apply(row_rule), iy),
        out_x & out_y,
    )
