"""Geometry: tet grids, marching tetrahedra, the DMTet and FlexiCubes modules (pass 1), the
pass-2 :class:`MeshGeometry`, the Mesh type, closest points, SDFs and regularizers.

Sign convention everywhere: ``sdf > 0`` is inside (occupied), as in nvdiffrec.
"""

from dmtrec.core.mesh import Mesh

from .dmtet import DMTetGeometry, sdf_reg_loss
from .flexicubes import FlexiCubesGeometry
from .marching_tets import marching_tetrahedra
from .mesh_geometry import MeshGeometry
from .normals import compute_normals, compute_tangents, face_normals, vertex_normals
from .ops import aabb, merge_meshes, normalize_to_unit_cube, transform_mesh
from .regularizers import cotangent_laplacian, laplacian_loss, uniform_laplacian
from .sdf import mesh_distance, mesh_sdf, sphere_sdf, torus_sdf
from .tetgrid import TetGrid, generate_tet_grid, load_tet_grid, tet_grid
from .topology import topology_cache
from .uv_unwrap import UVUnwrapResult, per_triangle_atlas, uv_unwrap

__all__ = [
    "DMTetGeometry",
    "FlexiCubesGeometry",
    "Mesh",
    "MeshGeometry",
    "TetGrid",
    "UVUnwrapResult",
    "aabb",
    "compute_normals",
    "compute_tangents",
    "cotangent_laplacian",
    "face_normals",
    "generate_tet_grid",
    "laplacian_loss",
    "load_tet_grid",
    "marching_tetrahedra",
    "merge_meshes",
    "mesh_distance",
    "mesh_sdf",
    "normalize_to_unit_cube",
    "per_triangle_atlas",
    "sdf_reg_loss",
    "sphere_sdf",
    "tet_grid",
    "topology_cache",
    "torus_sdf",
    "transform_mesh",
    "uniform_laplacian",
    "uv_unwrap",
    "vertex_normals",
]
