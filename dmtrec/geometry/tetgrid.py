"""Tetrahedral grids of the cube [-0.5, 0.5]^3: generated (body-centred cubic) or nvdiffrec's files.

Generated grids are the body-centred cubic (BCC) tetrahedralization, the lattice nvdiffrec's
quartet grids are cut from: vertices at the corners and centres of ``n^3`` cubes, and for every
face shared by two cubes the four tets around the segment joining the two centres. On the
boundary the outer centre is replaced by the centre of the boundary face, which splits each
boundary pyramid into four tets, so the grid fills the cube exactly and is conforming (every
interior face is shared by exactly two tets). Interior tets are all congruent (edges ``h`` and
``sqrt(3)/2 h``), the isotropy marching tetrahedra needs.

Resolution names follow nvdiffrec: ``resolution`` r uses ``n = round(r * 25 / 64)`` cubes per
side, which gives nearly the vertex and tet counts of nvdiffrec's grid of the same name:

===========  ========================  ==========================
resolution   generated (verts / tets)  nvdiffrec (verts / tets)
===========  ========================  ==========================
32           5,955 / 28,392            6,641 / 30,136
64           36,951 / 195,000          36,562 / 192,492
128          272,651 / 1,530,000       (not shipped here)
===========  ========================  ==========================

Generated grids are cached under ``$DMTREC_CACHE`` (default ``~/.cache/dmtrec``) in ``tets/``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.atomic import atomic_path
from dmtrec.core.cache import cache_dir
from dmtrec.core.types import PathLike

log = logging.getLogger(__name__)


# Local edge order of a tet (pairs of its 4 corners); marching tets' tables index into it.
TET_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))

_CACHE_VERSION = 1


class TetGridError(ValueError):
    """A tet grid file is missing, unreadable or malformed; the message names the file."""


@dataclass(frozen=True)
class TetGrid:
    """A conforming tetrahedral mesh of the cube [-0.5, 0.5]^3 with its edge topology.

    Attributes:
        vertices: ``[V, 3]`` float32 positions in [-0.5, 0.5]^3.
        tets: ``[T, 4]`` int64 corner indices, positively oriented:
            ``det[v1 - v0, v2 - v0, v3 - v0] > 0``.
        edges: ``[E, 2]`` int64 unique edges, ``edges[:, 0] < edges[:, 1]``.
        tet_edges: ``[T, 6]`` int64 index into ``edges`` of each tet's local edges in
            :data:`TET_EDGES` order.
        resolution: nvdiffrec-style resolution name (32, 64, 128, ...).
    """

    vertices: Tensor
    tets: Tensor
    edges: Tensor
    tet_edges: Tensor
    resolution: int

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_tets(self) -> int:
        return int(self.tets.shape[0])

    def to(self, device: torch.device | str) -> "TetGrid":
        return TetGrid(
            self.vertices.to(device),
            self.tets.to(device),
            self.edges.to(device),
            self.tet_edges.to(device),
            self.resolution,
        )


def tet_edge_topology(tets: Tensor, num_vertices: int) -> tuple[Tensor, Tensor]:
    """Unique edges of a tet mesh and, per tet, the index of each local edge.

    Args:
        tets: ``[T, 4]`` integer corner indices.
        num_vertices: number of vertices ``V`` (all indices must be below it).
    Returns:
        ``edges`` ``[E, 2]`` int64 with ``edges[:, 0] < edges[:, 1]``, sorted, and
        ``tet_edges`` ``[T, 6]`` int64 indices into ``edges`` in :data:`TET_EDGES` order.
    """
    tets = tets.long()
    pairs = tets[:, torch.tensor(TET_EDGES, device=tets.device).reshape(-1)].reshape(-1, 2)
    lo, hi = torch.minimum(pairs[:, 0], pairs[:, 1]), torch.maximum(pairs[:, 0], pairs[:, 1])
    # One int64 key per edge: a 1-D unique is much faster than unique(dim=0).
    keys, inverse = torch.unique(lo * num_vertices + hi, return_inverse=True)
    edges = torch.stack((keys // num_vertices, keys % num_vertices), dim=1)
    return edges, inverse.reshape(-1, 6)


def cubes_per_side(resolution: int) -> int:
    """BCC cubes per side for an nvdiffrec-style ``resolution`` name (see module docstring)."""
    if int(resolution) != resolution or resolution < 1:
        raise ValueError(f"tet grid resolution must be a positive integer, got {resolution!r}")
    return max(1, int(resolution * 25 / 64 + 0.5))


def generate_bcc(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BCC tetrahedralization of [-0.5, 0.5]^3 with ``n`` cubes per side.

    Returns:
        vertices ``[(n+1)^3 + n^3 + 6 n^2, 3]`` float32 and tets ``[12 n^3 + 12 n^2, 4]`` int64,
        positively oriented.
    """
    if n < 1:
        raise ValueError(f"BCC grid needs at least one cube per side, got n={n}")
    m = n + 1
    r_m, r_n = np.arange(m), np.arange(n)
    corner_ijk = np.stack(np.meshgrid(r_m, r_m, r_m, indexing="ij"), -1).reshape(-1, 3).astype(np.float64)
    centre_ijk = np.stack(np.meshgrid(r_n, r_n, r_n, indexing="ij"), -1).reshape(-1, 3) + 0.5
    centre_base = m**3
    side_base = centre_base + n**3  # 6 sides (axis, low/high) of n*n boundary face centres

    def corner(i, j, k):
        return (i * m + j) * m + k

    def centre(i, j, k):
        return centre_base + (i * n + j) * n + k

    side_points, tets = [], []
    for axis in range(3):
        a1, a2 = [a for a in range(3) if a != axis]
        # Faces orthogonal to `axis` at plane p, spanning cells (u, w) of the other two axes.
        p, u, w = np.meshgrid(np.arange(m), r_n, r_n, indexing="ij")
        p, u, w = p.ravel(), u.ravel(), w.ravel()

        def ijk(pp, uu, ww):
            out = [None, None, None]
            out[axis], out[a1], out[a2] = pp, uu, ww
            return out

        ring = [
            corner(*ijk(p, u, w)),
            corner(*ijk(p, u + 1, w)),
            corner(*ijk(p, u + 1, w + 1)),
            corner(*ijk(p, u, w + 1)),
        ]
        side_idx = u * n + w
        low_side = side_base + (2 * axis) * n * n + side_idx
        high_side = side_base + (2 * axis + 1) * n * n + side_idx
        below = np.where(p == 0, low_side, centre(*ijk(np.maximum(p - 1, 0), u, w)))
        above = np.where(p == n, high_side, centre(*ijk(np.minimum(p, n - 1), u, w)))
        for q in range(4):
            tets.append(np.stack([below, above, ring[q], ring[(q + 1) % 4]], axis=1))
        for plane in (0, n):
            uu, ww = np.meshgrid(r_n, r_n, indexing="ij")
            pts = np.zeros((n * n, 3))
            pts[:, axis] = plane
            pts[:, a1], pts[:, a2] = uu.ravel() + 0.5, ww.ravel() + 0.5
            side_points.append(pts)

    vertices = (np.concatenate([corner_ijk, centre_ijk] + side_points) / n - 0.5).astype(np.float32)
    tets = np.concatenate(tets).astype(np.int64)
    return vertices, orient_positive(vertices, tets)


def orient_positive(vertices: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Swap two corners of every negatively oriented tet so that all volumes are positive."""
    v = vertices.astype(np.float64)
    a, b, c, d = (v[tets[:, i]] for i in range(4))
    negative = np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a) < 0
    tets = tets.copy()
    tets[negative, 2], tets[negative, 3] = tets[negative, 3], tets[negative, 2].copy()
    return tets


def _make_grid(
    vertices: np.ndarray,
    tets: np.ndarray,
    resolution: int,
    edges: Optional[np.ndarray] = None,
    tet_edges: Optional[np.ndarray] = None,
) -> TetGrid:
    v = torch.from_numpy(np.ascontiguousarray(vertices, dtype=np.float32))
    t = torch.from_numpy(np.ascontiguousarray(tets, dtype=np.int64))
    if edges is None or tet_edges is None:
        e, te = tet_edge_topology(t, v.shape[0])
    else:
        e, te = torch.from_numpy(edges.astype(np.int64)), torch.from_numpy(tet_edges.astype(np.int64))
    return TetGrid(v, t, e, te, int(resolution))


def generate_tet_grid(resolution: int, cache: bool = True) -> TetGrid:
    """A BCC grid for an nvdiffrec-style resolution (32, 64, 128, ...), from the cache if there.

    The cache file holds vertices, tets and edge topology (int32) and is written atomically;
    an unreadable cache file is regenerated.
    """
    n = cubes_per_side(resolution)
    path = cache_dir() / "tets" / f"bcc_n{n}_v{_CACHE_VERSION}.npz"
    if cache and path.is_file():
        try:
            with np.load(path) as data:
                return _make_grid(data["vertices"], data["tets"], resolution, data["edges"], data["tet_edges"])
        except (OSError, KeyError, ValueError) as exc:
            log.warning("tet grid cache %s unreadable (%s); regenerating", path, exc)
    vertices, tets = generate_bcc(n)
    grid = _make_grid(vertices, tets, resolution)
    if cache:
        _write_cache(path, grid)
    return grid


def _write_cache(path: Path, grid: TetGrid) -> None:
    try:
        with atomic_path(path) as tmp:
            np.savez(
                tmp,
                vertices=grid.vertices.numpy(),
                tets=grid.tets.numpy().astype(np.int32),
                edges=grid.edges.numpy().astype(np.int32),
                tet_edges=grid.tet_edges.numpy().astype(np.int32),
            )
    except OSError as exc:  # a read-only home must not stop training
        log.warning("could not cache tet grid at %s (%s)", path, exc)


def load_tet_grid(path: PathLike, resolution: Optional[int] = None) -> TetGrid:
    """Load an nvdiffrec-style grid file (``vertices`` [V, 3], ``indices`` [T, 4]).

    Tets are re-oriented to positive volume. ``resolution`` defaults to the number the file
    name starts with (``64_tets.npz`` -> 64).
    """
    path = Path(path)
    if resolution is None:
        match = re.match(r"(\d+)", path.name)
        if not match:
            raise TetGridError(f"{path}: cannot infer the grid resolution from the file name; pass resolution=")
        resolution = int(match.group(1))
    try:
        with np.load(path) as data:
            vertices, tets = np.asarray(data["vertices"]), np.asarray(data["indices"])
    except FileNotFoundError:
        raise TetGridError(f"{path}: tet grid file not found") from None
    except KeyError as exc:
        raise TetGridError(f"{path}: tet grid file lacks array {exc} (needs 'vertices' and 'indices')") from None
    except (OSError, ValueError) as exc:
        raise TetGridError(f"{path}: not a readable .npz tet grid ({exc})") from None
    if vertices.ndim != 2 or vertices.shape[1] != 3 or tets.ndim != 2 or tets.shape[1] != 4:
        raise TetGridError(
            f"{path}: expected vertices [V, 3] and indices [T, 4], got {vertices.shape} and {tets.shape}"
        )
    if not np.issubdtype(tets.dtype, np.integer) or tets.size and (tets.min() < 0 or tets.max() >= len(vertices)):
        raise TetGridError(f"{path}: tet indices must be integers in [0, {len(vertices)})")
    if not np.isfinite(vertices).all():
        raise TetGridError(f"{path}: vertex positions are not all finite")
    tets = orient_positive(vertices, tets.astype(np.int64))
    return _make_grid(vertices, tets, resolution)


def tet_grid(source: Union[int, PathLike] = 64, cache: bool = True) -> TetGrid:
    """A generated grid for an integer resolution, or the grid stored in an ``.npz`` file."""
    if isinstance(source, (int, np.integer)):
        return generate_tet_grid(int(source), cache=cache)
    return load_tet_grid(source)
