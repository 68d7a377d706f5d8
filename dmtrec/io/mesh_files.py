"""Mesh files by extension: ``.obj`` (with its MTL and textures) or ``.glb``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from torch import Tensor

from dmtrec.core.mesh import Mesh

from .gltf import read_glb
from .obj import read_obj

MESH_SUFFIXES = (".obj", ".glb")


def read_mesh(path: Union[str, os.PathLike]) -> tuple[Mesh, dict[str, Tensor]]:
    """``(mesh, textures)`` from an OBJ or GLB file (see :func:`.obj.read_obj`, :func:`.gltf.read_glb`)."""
    suffix = Path(path).suffix.lower()
    if suffix in MESH_SUFFIXES and not Path(path).is_file():
        raise FileNotFoundError(f"{path}: mesh file not found")
    if suffix == ".obj":
        return read_obj(path)
    if suffix == ".glb":
        return read_glb(path)
    raise ValueError(f"{path}: unsupported mesh file type {suffix!r} (expected one of {MESH_SUFFIXES})")
