"""Cube-map addressing for the torch texture op, with nvdiffrast's conventions.

A cube map is ``[B, 6, S, S, C]`` with faces ordered +x, -x, +y, -y, +z, -z. A direction
picks the face of its largest-magnitude component (ties go to x, then y: z only wins when
strictly largest, y when strictly larger than x) and lands at face coordinates
``s = sign_s * d[s_axis] / (2 |d[major]|) + 1/2`` (column) and
``t = sign_t * d[t_axis] / (2 |d[major]|) + 1/2`` (row), the OpenGL layout.

Bilinear taps that fall one texel outside a face read the touching edge texel of the
neighbouring face; a tap outside in both directions (a cube corner, where only three
texels meet) takes the mean of the other three taps. Both rules are derived here from the
geometry: a texel centre just beyond a face edge, pushed out onto the cube, lies on the
neighbouring face's edge texel.
"""

from __future__ import annotations

import functools
from typing import Tuple, Union

import torch
from torch import Tensor

# Per face: (major axis, sign of the major component, s axis, s sign, t axis, t sign).
_FACE_AXES = (
    (0, 1, 2, -1, 1, -1),  # +x
    (0, -1, 2, 1, 1, -1),  # -x
    (1, 1, 0, 1, 2, 1),  # +y
    (1, -1, 0, 1, 2, -1),  # -y
    (2, 1, 0, 1, 1, -1),  # +z
    (2, -1, 0, -1, 1, -1),  # -z
)

Size = Union[int, Tensor]


@functools.lru_cache(maxsize=None)
def _face_axes_on(device: torch.device) -> Tensor:
    return torch.tensor(_FACE_AXES, dtype=torch.long, device=device)


def _face_table(face: Tensor) -> Tuple[Tensor, ...]:
    """Columns of :data:`_FACE_AXES` looked up per element of ``face`` (long, any shape)."""
    return _face_axes_on(face.device)[face].unbind(-1)


def _major_face(d: Tensor) -> Tensor:
    """Face index ``[N]`` (long) of directions ``d [N, 3]`` (float or integer)."""
    ax, ay, az = d.abs().unbind(-1)
    major = torch.where(az > torch.maximum(ax, ay), 2, torch.where(ay > ax, 1, 0))
    c = d.gather(-1, major[:, None]).squeeze(-1)
    return 2 * major + (c < 0).long()


def _smooth_directions(dirs: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Directions with a finite projection and Jacobian, a placeholder elsewhere.

    Returns ``safe_dirs [N, 3]`` (``dirs`` where ``smooth``, else +x, so that no NaN reaches
    the backward pass), ``safe_face [N]`` (their faces), ``smooth [N]``, and the face
    ``face [N]`` and projection ``st_raw [N, 2]`` of ``dirs`` itself (no gradient).
    """
    with torch.no_grad():
        face = _major_face(dirs)
        st_raw = _project(dirs, face)
        smooth = torch.isfinite(st_raw).all(-1) & torch.isfinite(dirs).all(-1)
        placeholder = torch.tensor([1.0, 0.0, 0.0], dtype=dirs.dtype, device=dirs.device)
    safe_dirs = torch.where(smooth[:, None], dirs, placeholder)
    return safe_dirs, torch.where(smooth, face, 0), smooth, face, st_raw


def cube_face_coords(dirs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Project directions onto the cube.

    Args:
        dirs: ``[N, 3]`` directions (need not be normalized).

    Returns:
        ``face [N]`` long in 0..5, ``st [N, 2]`` face coordinates in [0, 1] (differentiable
        w.r.t. ``dirs``), ``valid [N]`` bool: False where the projection is not finite (a
        zero or NaN direction), where the sample must read as zero.
    """
    safe_dirs, safe_face, smooth, face, st_raw = _smooth_directions(dirs)
    valid = torch.isfinite(st_raw).all(-1)
    # A direction with an infinite component can still project finitely: it keeps that
    # value without a gradient, as in nvdiffrast, whose Jacobian there is not finite.
    st = torch.where(smooth[:, None], _project(safe_dirs, safe_face), st_raw.nan_to_num(0.5))
    return face, st, valid


def _project(d: Tensor, face: Tensor) -> Tensor:
    major, _, s_axis, s_sign, t_axis, t_sign = _face_table(face)
    c2 = 2 * d.gather(-1, major[:, None]).squeeze(-1).abs()
    # Dividing (rather than multiplying by a reciprocal) keeps |a| / (2|c|) <= 1/2 exactly,
    # so s and t never leave [0, 1] and need no clamp.
    s = s_sign * d.gather(-1, s_axis[:, None]).squeeze(-1) / c2 + 0.5
    t = t_sign * d.gather(-1, t_axis[:, None]).squeeze(-1) / c2 + 0.5
    return torch.stack([s, t], -1)


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
    dirs, face, smooth, _, _ = _smooth_directions(dirs)
    dirs_da = torch.where(smooth[:, None], dirs_da, torch.zeros_like(dirs_da))
    major, _, s_axis, s_sign, t_axis, t_sign = _face_table(face)
    dd = dirs_da.reshape(-1, 3, 2)  # [N, axis, (X, Y)]

    def pick(axis: Tensor) -> Tuple[Tensor, Tensor]:
        return dirs.gather(-1, axis[:, None]), dd.gather(1, axis[:, None, None].expand(-1, 1, 2)).squeeze(1)

    c, dc = pick(major)
    a_s, da_s = pick(s_axis)
    a_t, da_t = pick(t_axis)
    # d(a / (2|c|)) = (da * c - a * dc) / (2 |c| c)
    denom = 2 * c.abs() * c
    ds = s_sign[:, None] * (da_s * c - a_s * dc) / denom
    dt = t_sign[:, None] * (da_t * c - a_t * dc) / denom
    return torch.where(smooth[:, None], torch.cat([ds, dt], -1), 0.0)


def cube_texel_remap(face: Tensor, ix: Tensor, iy: Tensor, size: Size) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Resolve bilinear taps that may lie one texel outside their face.

    Args:
        face: ``[N]`` long face of the sample.
        ix, iy: ``[N]`` long texel column / row of the tap, each in ``[-1, size]``.
        size: face width of the mip level sampled (int, or ``[N]`` long per sample).

    Returns:
        ``face, ix, iy`` of the texel on the cube the tap reads (taps inside the face are
        unchanged), and ``corner [N]`` bool where the tap is outside in both directions and
        reads nothing (the caller substitutes the mean of the other three taps).
    """
    outside_x = (ix < 0) | (ix >= size)
    outside_y = (iy < 0) | (iy >= size)
    # Texel centre in doubled integer face coordinates, lifted to a point D on the face's
    # plane with |D[major]| = size; projecting D back onto the cube gives the texel.
    major, sign, s_axis, s_sign, t_axis, t_sign = _face_table(face)
    size_t = torch.as_tensor(size, dtype=torch.long, device=face.device).expand_as(face)
    d = torch.zeros(face.shape + (3,), dtype=torch.long, device=face.device)
    d.scatter_(-1, major[:, None], (sign * size_t)[:, None])
    d.scatter_(-1, s_axis[:, None], (s_sign * (2 * ix + 1 - size_t))[:, None])
    d.scatter_(-1, t_axis[:, None], (t_sign * (2 * iy + 1 - size_t))[:, None])

    new_face = _major_face(d)
    major, _, s_axis, s_sign, t_axis, t_sign = _face_table(new_face)
    c = d.gather(-1, major[:, None]).squeeze(-1).abs()

    def texel(axis: Tensor, sign_: Tensor) -> Tensor:
        num = (sign_ * d.gather(-1, axis[:, None]).squeeze(-1) + c) * size_t
        return torch.minimum(torch.div(num, 2 * c, rounding_mode="floor"), size_t - 1).clamp(min=0)

    return new_face, texel(s_axis, s_sign), texel(t_axis, t_sign), outside_x & outside_y
