"""UV unwrapping: xatlas in a time-limited subprocess, with a chart atlas as fallback.

xatlas (0.0.11) holds the GIL, segfaults on some very regular meshes (e.g. an 82k-triangle
icosphere) and can run for many minutes on noisy ones. It therefore runs in a child process
(``_xatlas_worker.py``, arrays passed through a temporary ``.npz``) under a time limit; on a
crash, timeout, error or an implausible result the mesh gets :func:`chart_atlas` (axis-projected
charts grown over edge-connected faces, shelf-packed: seconds for 600k triangles, and texels
shared inside charts so that pass 2's textures stay coherent), which always works.
:func:`per_triangle_atlas` (one chart per triangle) remains available. Which path was taken, and
the atlas's texel utilisation (:func:`texel_utilisation`), are logged and returned.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.child_process import run_python
from dmtrec.core.mesh import Mesh

from .ops import connected_components

log = logging.getLogger(__name__)

_WORKER = Path(__file__).with_name("_xatlas_worker.py")


class UVUnwrapResult(NamedTuple):
    """Outcome of :func:`uv_unwrap` (a tuple: ``mesh, method, reason, seconds = result``).

    Attributes:
        mesh: a copy of the input mesh with ``v_tex`` ``[Vt, 2]`` (in [0, 1]) and
            ``t_tex_idx`` ``[F, 3]`` set and tangents dropped (they belong to the old UVs;
            recompute them with :func:`.normals.compute_tangents`); positions, faces and
            normals are unchanged.
        method: ``"xatlas"`` or ``"charts"``.
        reason: why the fallback was taken (empty for xatlas).
        seconds: wall time spent.
    """

    mesh: Mesh
    method: str
    reason: str
    seconds: float

    @property
    def utilisation(self) -> float:
        """Fraction of the atlas square covered by UV triangles (:func:`texel_utilisation`)."""
        return texel_utilisation(self.mesh)


class XatlasError(RuntimeError):
    """xatlas crashed, timed out, failed or returned an unusable atlas."""


def uv_unwrap(mesh: Mesh, timeout_s: float = 300.0, texture_res: int = 1024, use_xatlas: bool = True) -> UVUnwrapResult:
    """Give ``mesh`` a UV atlas, with xatlas where it works and a per-triangle atlas otherwise.

    Args:
        mesh: triangle mesh (``v_pos`` ``[V, 3]``, ``t_pos_idx`` ``[F, 3]``), any device.
        timeout_s: wall-clock limit for xatlas; the child process is killed after it.
        texture_res: texture size the fallback atlas leaves a margin for (in texels).
        use_xatlas: False goes straight to the fallback.
    """
    start = time.perf_counter()
    mesh.validate("uv_unwrap")
    if mesh.is_empty:
        reason = "mesh has no faces"
    elif not use_xatlas:
        reason = "xatlas disabled"
    else:
        try:
            v_tex, t_tex_idx = xatlas_unwrap(mesh.v_pos, mesh.t_pos_idx, timeout_s)
            seconds = time.perf_counter() - start
            log.info("UV unwrap: xatlas, %d faces -> %d UVs in %.1f s", mesh.num_faces, v_tex.shape[0], seconds)
            return UVUnwrapResult(_with_uvs(mesh, v_tex, t_tex_idx), "xatlas", "", seconds)
        except XatlasError as exc:
            reason = str(exc)
    v_tex, t_tex_idx = chart_atlas(mesh.v_pos, mesh.t_pos_idx, texture_res)
    seconds = time.perf_counter() - start
    log.warning("UV unwrap: chart atlas for %d faces in %.1f s (%s)", mesh.num_faces, seconds, reason)
    return UVUnwrapResult(_with_uvs(mesh, v_tex, t_tex_idx), "charts", reason, seconds)


def texel_utilisation(mesh: Mesh) -> float:
    """Fraction of the unit UV square covered by the mesh's UV triangles (0 without UVs)."""
    if mesh.v_tex is None or mesh.t_tex_idx is None or mesh.t_tex_idx.shape[0] == 0:
        return 0.0
    uv = mesh.v_tex[mesh.t_tex_idx].double()
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    return float((0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs()).sum())


def chart_atlas(
    v_pos: Tensor, t_pos_idx: Tensor, texture_res: int = 1024, padding_texels: float = 1.0
) -> tuple[Tensor, Tensor]:
    """A UV atlas of charts grown over the surface, for meshes xatlas cannot handle in time.

    Faces are grouped by the signed axis their normal points most along (6 classes); a chart is
    an edge-connected set of faces of one class, projected orthographically onto the plane
    across its axis (orientation kept, so UV winding matches the faces), turned so it is wider
    than tall, and shelf-packed at one texel density for the whole mesh with ``padding_texels``
    (at ``texture_res``) between charts. Faces facing one axis cannot fold over in its
    projection except on surfaces that wrap around; those rare overlaps share texels.

    Returns:
        ``v_tex`` ``[Vt, 2]`` float32 in [0, 1] and ``t_tex_idx`` ``[F, 3]`` int64, on the
        device of ``v_pos``.
    """
    device = v_pos.device
    v = v_pos.detach().cpu().double().numpy()
    faces = t_pos_idx.detach().cpu().numpy().astype(np.int64)
    num_faces = faces.shape[0]
    if num_faces == 0:
        return torch.zeros(0, 2, device=device), torch.zeros(0, 3, dtype=torch.int64, device=device)
    normal = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    axis = np.abs(normal).argmax(1)
    cls = axis * 2 + (normal[np.arange(num_faces), axis] < 0)
    # Faces sharing an edge and a class are neighbours.
    edges = np.sort(np.stack([faces, np.roll(faces, -1, 1)], -1).reshape(-1, 2), 1)
    owner = np.repeat(np.arange(num_faces), 3)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, owner = edges[order], owner[order]
    same = (edges[1:] == edges[:-1]).all(1)
    pairs = np.stack([owner[:-1][same], owner[1:][same]], 1)
    pairs = pairs[cls[pairs[:, 0]] == cls[pairs[:, 1]]]
    chart = connected_components(num_faces, torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])).numpy()
    # One UV per (chart, vertex), projected across the chart's axis; (k+1, k+2) keeps the
    # winding of faces facing +k, swapped for -k.
    corner_chart = np.repeat(chart, 3)
    keys = corner_chart * (v.shape[0] + 1) + faces.reshape(-1)
    unique_keys, t_tex = np.unique(keys, return_inverse=True)
    uv_chart, uv_vertex = unique_keys // (v.shape[0] + 1), unique_keys % (v.shape[0] + 1)
    chart_cls = np.zeros(chart.max() + 1, dtype=np.int64)
    chart_cls[chart] = cls
    k = chart_cls[uv_chart] // 2
    negative = chart_cls[uv_chart] % 2 == 1
    first, second = (k + 1) % 3, (k + 2) % 3
    first, second = np.where(negative, second, first), np.where(negative, first, second)
    p = v[uv_vertex]
    uv = np.stack([p[np.arange(len(p)), first], p[np.arange(len(p)), second]], 1)
    count = chart_cls.shape[0]
    lo = np.full((count, 2), np.inf)
    hi = np.full((count, 2), -np.inf)
    np.minimum.at(lo, uv_chart, uv)
    np.maximum.at(hi, uv_chart, uv)
    size = hi - lo
    uv -= lo[uv_chart]
    # Turn tall charts a quarter (orientation-preserving: (u, v) -> (v, h - u)).
    tall = size[:, 1] > size[:, 0]
    t = tall[uv_chart]
    uv[t] = np.stack([uv[t, 1], size[uv_chart[t], 0] - uv[t, 0]], 1)
    size[tall] = size[tall][:, ::-1]
    offsets, scale = _shelf_pack(size, padding_texels / texture_res)
    uv = uv * scale + offsets[uv_chart]
    return (
        torch.from_numpy(np.clip(uv, 0.0, 1.0).astype(np.float32)).to(device),
        torch.from_numpy(t_tex.reshape(-1, 3).astype(np.int64)).to(device),
    )


def _shelf_pack(size: np.ndarray, padding: float) -> tuple[np.ndarray, float]:
    """Lower-left corners ``[C, 2]`` and the largest common scale (within 2 %) that fit boxes
    ``size [C, 2]`` (world units, wider than tall) into the unit square in shelves, tallest
    first, ``padding`` apart."""
    order = np.argsort(-size[:, 1], kind="stable")

    def place(scale: float) -> Optional[np.ndarray]:
        w, h = size[order, 0] * scale + padding, size[order, 1] * scale + padding
        if not bool((w <= 1.0).all()):
            return None
        offsets = np.zeros((size.shape[0], 2))
        x = y = shelf = 0.0
        for i, (wi, hi) in enumerate(zip(w.tolist(), h.tolist())):
            if x + wi > 1.0:
                x, y, shelf = 0.0, y + shelf, 0.0
            offsets[order[i]] = (x + 0.5 * padding, y + 0.5 * padding)
            x += wi
            shelf = max(shelf, hi)
            if y + shelf > 1.0:
                return None
        return offsets

    low = math.sqrt(0.8 / max(float((size[:, 0] * size[:, 1]).sum()), 1e-30))
    while place(low) is None:
        low *= 0.8
    high = low / 0.8
    for _ in range(6):  # bisect the scale between fitting and not
        mid = 0.5 * (low + high)
        low, high = (mid, high) if place(mid) is not None else (low, mid)
    return place(low), low


def _with_uvs(mesh: Mesh, v_tex: Tensor, t_tex_idx: Tensor) -> Mesh:
    # Tangents follow the UVs: the old ones no longer match.
    return mesh.copy(v_tex=v_tex, t_tex_idx=t_tex_idx, v_tng=None, t_tng_idx=None)


def xatlas_unwrap(v_pos: Tensor, t_pos_idx: Tensor, timeout_s: float = 300.0) -> tuple[Tensor, Tensor]:
    """Run xatlas on ``[V, 3]`` / ``[F, 3]`` in a child process.

    Returns:
        ``v_tex`` ``[Vt, 2]`` float32 and ``t_tex_idx`` ``[F, 3]`` int64 (face order kept), on
        the device of ``v_pos``.
    Raises:
        XatlasError: with the reason (crash signal, timeout, error output, bad result).
    """
    faces = t_pos_idx.detach().cpu().numpy().astype(np.int64)
    with tempfile.TemporaryDirectory(prefix="dmtrec_xatlas_") as folder:
        src, dst = Path(folder) / "mesh.npz", Path(folder) / "atlas.npz"
        np.savez(src, positions=v_pos.detach().cpu().numpy().astype(np.float32), faces=faces.astype(np.uint32))
        run_python(_WORKER, [src, dst], timeout_s, "xatlas", XatlasError)
        try:
            with np.load(dst) as data:
                vmapping, indices, uvs = data["vmapping"], data["indices"].astype(np.int64), data["uvs"]
        except (OSError, KeyError, ValueError) as exc:
            raise XatlasError(f"xatlas result unreadable ({exc})") from None
    if (
        indices.shape != faces.shape
        or uvs.ndim != 2
        or uvs.shape[1] != 2
        or indices.min() < 0
        or indices.max() >= uvs.shape[0]
        or vmapping.shape[0] != uvs.shape[0]
    ):
        raise XatlasError(f"xatlas returned inconsistent arrays (indices {indices.shape}, uvs {uvs.shape})")
    if not np.array_equal(vmapping[indices], faces):
        raise XatlasError("xatlas changed the face order or corners")
    if not np.isfinite(uvs).all() or uvs.min() < -1e-4 or uvs.max() > 1 + 1e-4:
        raise XatlasError("xatlas returned UVs outside [0, 1]")
    device = v_pos.device
    return (
        torch.from_numpy(np.clip(uvs, 0.0, 1.0).astype(np.float32)).to(device),
        torch.from_numpy(indices).to(device),
    )


def per_triangle_atlas(
    num_faces: int, texture_res: int = 1024, margin_texels: float = 1.0, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """A UV atlas that always works: every triangle gets its own right triangle.

    Triangles are paired in the square cells of a ``ceil(sqrt(F / 2))``-sided grid: one takes
    the lower-left half of its cell, the other the upper-right half, both counter-clockwise.
    Each stays ``margin_texels`` texels (at ``texture_res``) from the cell borders and the
    cell diagonal, so bilinear lookups never mix two triangles (the margin shrinks, with a
    warning, when cells are smaller than a few texels).

    Returns:
        ``v_tex`` ``[3 F, 2]`` float32 and ``t_tex_idx`` ``[F, 3]`` int64 (``3 f + k``).
    """
    cells = max(1, math.ceil(math.sqrt(math.ceil(num_faces / 2))))
    side = 1.0 / cells
    margin = margin_texels / texture_res
    if side < 8 * margin:
        log.warning(
            "per-triangle atlas: %d faces leave %.1f texels per cell at %d; margin reduced",
            num_faces,
            side * texture_res,
            texture_res,
        )
        margin = side / 8
    f = torch.arange(num_faces, device=device)
    cell, upper = f // 2, (f % 2).bool()
    x0 = (cell % cells).float() * side
    y0 = torch.div(cell, cells, rounding_mode="floor").float() * side
    near, far = margin, side - margin * (1 + math.sqrt(2))  # far corner stays `margin` off the diagonal
    lower_tri = torch.tensor([[near, near], [far, near], [near, far]], device=device)
    upper_tri = side - lower_tri  # point reflection through the cell centre keeps the winding
    corners = torch.where(upper[:, None, None], upper_tri, lower_tri) + torch.stack((x0, y0), 1)[:, None, :]
    return corners.reshape(-1, 2), torch.arange(3 * num_faces, device=device).reshape(-1, 3)
