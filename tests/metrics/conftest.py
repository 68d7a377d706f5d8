"""Test meshes for the metrics suite: trimesh's primitives as dmtrec tensors, and the shared OBJs."""

from pathlib import Path
from typing import Callable, Tuple

import pytest
import torch

MeshTensors = Tuple[torch.Tensor, torch.Tensor]


def _to_tensors(mesh) -> MeshTensors:
    return torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces, dtype=torch.long)


@pytest.fixture
def icosphere() -> Callable[..., MeshTensors]:
    """``icosphere(subdivisions, radius) -> (v_pos [V, 3], faces [F, 3])``, vertices on the sphere."""
    trimesh = pytest.importorskip("trimesh")
    return lambda subdivisions=4, radius=1.0: _to_tensors(trimesh.creation.icosphere(subdivisions, radius))


@pytest.fixture
def torus() -> MeshTensors:
    trimesh = pytest.importorskip("trimesh")
    return _to_tensors(trimesh.creation.torus(major_radius=1.0, minor_radius=0.3))


def read_obj_geometry(path: Path) -> MeshTensors:
    """Positions and triangles of an OBJ file (first index of each ``f`` corner)."""
    verts, faces = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            faces.append([int(c.split("/")[0]) - 1 for c in line.split()[1:4]])
    return torch.tensor(verts, dtype=torch.float32), torch.tensor(faces, dtype=torch.long)


@pytest.fixture
def shared_obj(shared_data) -> Callable[[str], MeshTensors]:
    """``shared_obj("spot/spot.obj")`` reads a mesh under ``shared_data/meshes``."""
    return lambda relative: read_obj_geometry(shared_data / "meshes" / relative)
