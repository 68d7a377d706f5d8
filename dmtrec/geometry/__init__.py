"""Geometry: tet grids, marching tetrahedra, the DMTet module, the Mesh type and its regularizers."""

from .mesh import Mesh

__all__ = ["Mesh"]
