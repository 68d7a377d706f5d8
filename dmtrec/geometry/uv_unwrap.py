"""UV unwrapping: xatlas in a time-limited subprocess, with a per-triangle atlas as fallback.

xatlas (0.0.11) holds the GIL, segfaults on some very regular meshes (e.g. an 82k-triangle
icosphere) and can run for many minutes on noisy ones. It therefore runs in a child process
(``_xatlas_worker.py``, arrays passed through a temporary ``.npz``) under a time limit; on a
crash, timeout, error or an implausible result the mesh gets :func:`per_triangle_atlas`,
which always works. Which path was taken is logged and returned.
"""

from __future__ import annotations

import logging
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh

log = logging.getLogger(__name__)

_WORKER = Path(__file__).with_name("_xatlas_worker.py")


class UVUnwrapResult(NamedTuple):
    """Outcome of :func:`uv_unwrap` (a tuple: ``mesh, method, reason, seconds = result``).

    Attributes:
        mesh: a copy of the input mesh with ``v_tex`` ``[Vt, 2]`` (in [0, 1]) and
            ``t_tex_idx`` ``[F, 3]`` set and tangents dropped (they belong to the old UVs;
            recompute them with :func:`.normals.compute_tangents`); positions, faces and
            normals are unchanged.
        method: ``"xatlas"`` or ``"per_triangle"``.
        reason: why the fallback was taken (empty for xatlas).
        seconds: wall time spent.
    """

    mesh: Mesh
    method: str
    reason: str
    seconds: float


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
    v_tex, t_tex_idx = per_triangle_atlas(mesh.num_faces, texture_res, device=mesh.device)
    seconds = time.perf_counter() - start
    log.warning("UV unwrap: per-triangle atlas for %d faces (%s)", mesh.num_faces, reason)
    return UVUnwrapResult(_with_uvs(mesh, v_tex, t_tex_idx), "per_triangle", reason, seconds)


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
        try:
            proc = subprocess.run(
                [sys.executable, str(_WORKER), str(src), str(dst)], capture_output=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            raise XatlasError(f"xatlas timed out after {timeout_s:g} s") from None
        if proc.returncode < 0:
            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:
                name = f"signal {-proc.returncode}"
            raise XatlasError(f"xatlas crashed ({name})")
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise XatlasError(f"xatlas failed with exit status {proc.returncode}: {tail[0][:200]}")
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
