"""DMTet: a tet grid with a learnable SDF value and a bounded learnable offset per vertex.

Sign convention: ``sdf > 0`` is inside (nvdiffrec's), see :mod:`.marching_tets`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmtrec.core.mesh import Mesh

from .marching_tets import marching_tetrahedra
from .normals import compute_normals, compute_tangents
from .sdf import mesh_sdf, sphere_sdf
from .tetgrid import generate_tet_grid, load_tet_grid

log = logging.getLogger(__name__)

INIT_MODES = ("random", "sphere", "mesh")


def sdf_reg_loss(sdf: Tensor, edges: Tensor) -> Tensor:
    """nvdiffrec's SDF sign regularizer: binary cross-entropy on the edges that change sign.

    For every grid edge ``(a, b)`` with ``sign(s_a) != sign(s_b)``, each end's SDF is read as
    a logit and pushed towards the other end's occupancy; this discourages floaters and
    internal surfaces by making sign changes costly.

    Args:
        sdf: ``[V]`` SDF values; edges: ``[E, 2]`` grid edges.
    Returns:
        A scalar: the mean BCE over crossing edges, summed over the two directions
        (nvdiffrec's value); 0 (on the graph) when no edge changes sign.
    """
    s = sdf[edges.reshape(-1)].reshape(-1, 2)
    s = s[torch.sign(s[:, 0]) != torch.sign(s[:, 1])]
    if s.shape[0] == 0:
        return sdf.sum() * 0.0
    return F.binary_cross_entropy_with_logits(s[:, 0], (s[:, 1] > 0).to(s.dtype)) + F.binary_cross_entropy_with_logits(
        s[:, 1], (s[:, 0] > 0).to(s.dtype)
    )


def initial_sdf(
    points: Tensor,
    scale: float,
    init: str,
    sphere_radius: Optional[float],
    init_mesh: Optional[Mesh],
    seed: Optional[int],
    owner: str,
) -> Tensor:
    """``[N]`` float32 initial SDF at the ``[N, 3]`` grid ``points`` of a grid cube of side ``scale``.

    ``init``: ``"random"`` (nvdiffrec: ``U(0, 1) - 0.1``, ~90 % inside), ``"sphere"`` (a sphere of
    ``sphere_radius``, default ``scale / 4``, at the origin) or ``"mesh"`` (the SDF of
    ``init_mesh``, a :class:`Mesh`). ``owner`` names the caller in errors.
    """
    if init not in INIT_MODES:
        raise ValueError(f"{owner}: init must be one of {INIT_MODES}, got {init!r}")
    if init == "random":
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.rand(points.shape[0], generator=gen) - 0.1
    if init == "sphere":
        radius = 0.25 * scale if sphere_radius is None else float(sphere_radius)
        if not 0 < radius < 0.5 * scale:
            raise ValueError(f"{owner}: sphere_radius must be in (0, scale/2 = {0.5 * scale}), got {radius}")
        return sphere_sdf(points, radius)
    if init_mesh is None:
        raise ValueError(f"{owner}: init='mesh' needs init_mesh (a Mesh; dmtrec.io.read_mesh reads files)")
    mesh = init_mesh
    lo, hi = mesh.v_pos.detach().min(0).values, mesh.v_pos.detach().max(0).values
    if bool((lo < -0.5 * scale).any() or (hi > 0.5 * scale).any()):
        log.warning(
            "%s: init_mesh AABB %s..%s leaves the grid cube of side %g; it will be cut",
            owner,
            lo.tolist(),
            hi.tolist(),
            scale,
        )
    return mesh_sdf(points, mesh.to(points.device)).float()


class SDFGridGeometry(nn.Module):
    """What DMTet and FlexiCubes share: an SDF and a bounded offset per grid vertex.

    Subclasses set the buffers ``grid_verts`` ``[V, 3]`` and ``edges`` ``[E, 2]``, the attribute
    ``offset_bound`` and the parameters ``sdf`` ``[V]`` and ``deform`` ``[V, 3]``, and implement
    :meth:`mesh` and :meth:`surface_points`.
    """

    def deformed_vertices(self) -> Tensor:
        """``[V, 3]`` grid vertices moved by their bounded offsets."""
        return self.grid_verts + self.offset_bound * torch.tanh(self.deform)

    def mesh(self, with_uv: bool = True, material=None) -> Mesh:
        raise NotImplementedError

    def surface_points(self) -> Tensor:
        """``[N, 3]`` vertices of the current surface (no normals, UVs or gradients needed)."""
        raise NotImplementedError

    def forward(self, with_uv: bool = True, material=None) -> Mesh:
        """Same as :meth:`mesh` (so that ``torch.func.functional_call`` and hooks work)."""
        return self.mesh(with_uv, material)

    def sdf_reg_loss(self) -> Tensor:
        """:func:`sdf_reg_loss` over the grid's edges."""
        return sdf_reg_loss(self.sdf, self.edges)

    @contextmanager
    def sdf_replaced(self, sdf: Tensor) -> Iterator[None]:
        """Within the block, :meth:`mesh` and :meth:`surface_points` extract ``sdf`` ``[V]``
        instead of the learned values, which come back unchanged afterwards (for a cleaned-up
        copy of the field at export, without touching the parameter or its optimizer state)."""
        saved = self.sdf.data
        self.sdf.data = sdf.to(saved)
        try:
            yield
        finally:
            self.sdf.data = saved

    @torch.no_grad()
    def aabb(self) -> tuple[Tensor, Tensor]:
        """``([3], [3])`` bounds of the current surface; the grid's bounds when there is none."""
        v = self.surface_points()
        if v.shape[0] == 0:
            return self.grid_aabb()
        return v.min(0).values, v.max(0).values

    @torch.no_grad()
    def grid_aabb(self) -> tuple[Tensor, Tensor]:
        """``([3], [3])`` bounds of the (undeformed) grid: nvdiffrec's ``getAABB``, the box a
        volumetric material must cover."""
        return self.grid_verts.min(0).values, self.grid_verts.max(0).values


def finish_surface(mesh: Mesh, material, with_uv: bool) -> Mesh:
    """Attach the material and add smooth normals (and, with UVs, tangents) for the renderer."""
    mesh.material = material
    mesh = compute_normals(mesh)
    return compute_tangents(mesh) if with_uv else mesh


class DMTetGeometry(SDFGridGeometry):
    """Deformable tetrahedral grid geometry (Shen et al. 2021; nvdiffrec's pass 1).

    The grid fills the cube ``[-scale/2, scale/2]^3``. Vertex ``i`` sits at
    ``scale * grid_i + offset_bound * tanh(deform_i)`` with nvdiffrec's ``offset_bound = 1 /
    resolution`` in world units whatever ``scale`` is (``2 / (grid_res * 2)`` in its
    ``dmtet.py``): half a cell for ``scale = 2``. The surface is where the per-vertex ``sdf``
    crosses 0 (``> 0`` inside).

    Args:
        resolution: nvdiffrec-style grid resolution (32, 64, 128); see :mod:`.tetgrid`.
        scale: side of the grid cube in world units (nvdiffrec's ``mesh_scale``, default 2.1).
        grid_file: an nvdiffrec ``.npz`` grid to use instead of generating one
            (``resolution`` should then name its resolution, e.g. 64 for ``64_tets.npz``).
        init: ``"random"`` (nvdiffrec: ``U(0, 1) - 0.1``, ~90 % inside), ``"sphere"`` (the SDF
            of a sphere of ``sphere_radius`` at the origin), or ``"mesh"`` (the SDF of
            ``init_mesh``, a :class:`Mesh` in world units).
        sphere_radius: radius for ``init="sphere"``; default a quarter of ``scale``.
        init_mesh: mesh for ``init="mesh"``.
        seed: seed of the random initialisation (the global RNG when None).
        offset_bound: largest offset per axis in world units; None is nvdiffrec's ``1 / resolution``.

    Parameters: ``sdf`` ``[V]`` and ``deform`` ``[V, 3]`` (float32). Grid buffers
    (``grid_verts``, ``tets``, ``edges``, ``tet_edges``) are not saved in the state dict: they
    are rebuilt from the constructor arguments.
    """

    def __init__(
        self,
        resolution: int = 64,
        scale: float = 2.1,
        grid_file: Optional[str] = None,
        init: str = "random",
        sphere_radius: Optional[float] = None,
        init_mesh: Optional[Mesh] = None,
        seed: Optional[int] = None,
        offset_bound: Optional[float] = None,
    ):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"DMTetGeometry: scale must be positive, got {scale!r}")
        grid = load_tet_grid(grid_file, resolution) if grid_file else generate_tet_grid(resolution)
        self.resolution = grid.resolution
        self.scale = float(scale)
        self.offset_bound = 1.0 / self.resolution if offset_bound is None else float(offset_bound)
        if not self.offset_bound >= 0:
            raise ValueError(f"DMTetGeometry: offset_bound must be >= 0, got {offset_bound!r}")
        self.register_buffer("grid_verts", grid.vertices * self.scale, persistent=False)
        self.register_buffer("tets", grid.tets, persistent=False)
        self.register_buffer("edges", grid.edges, persistent=False)
        self.register_buffer("tet_edges", grid.tet_edges, persistent=False)
        self.sdf = nn.Parameter(
            initial_sdf(grid.vertices * self.scale, self.scale, init, sphere_radius, init_mesh, seed, "DMTetGeometry")
        )
        self.deform = nn.Parameter(torch.zeros_like(self.grid_verts))

    def mesh(self, with_uv: bool = True, material=None) -> Mesh:
        """Extract the current surface with smooth normals (and per-triangle UVs and tangents).

        Returns a :class:`Mesh` whose ``v_pos`` is differentiable w.r.t. ``sdf`` and
        ``deform``. Without a sign change it is empty (``[0, 3]`` positions and faces, with
        ``[0, C]`` attributes), still on the autograd graph.
        """
        mesh = marching_tetrahedra(
            self.deformed_vertices(), self.sdf, self.tets, edges=self.edges, tet_edges=self.tet_edges, with_uv=with_uv
        )
        return finish_surface(mesh, material, with_uv)

    @torch.no_grad()
    def surface_points(self) -> Tensor:
        return marching_tetrahedra(
            self.deformed_vertices(), self.sdf, self.tets, edges=self.edges, tet_edges=self.tet_edges
        ).v_pos

    def extra_repr(self) -> str:
        return (
            f"resolution={self.resolution}, scale={self.scale}, vertices={self.grid_verts.shape[0]}, "
            f"tets={self.tets.shape[0]}"
        )
