"""Binary PLY meshes with per-vertex colours (the common format for vertex-coloured meshes).

Colours are linear in memory and stored as 8-bit sRGB ``red green blue`` vertex properties,
as viewers (MeshLab, Blender, trimesh) display them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
from torch import Tensor

from dmtrec.core.atomic import write_bytes_atomic
from dmtrec.core.mesh import Mesh

from .image import linear_to_srgb


def write_ply(path: Union[str, os.PathLike], mesh: Mesh, vertex_color: Optional[Tensor] = None) -> Path:
    """Write ``mesh`` (positions, triangles) and optional ``[V, 3]`` linear vertex colours as a
    binary little-endian ``.ply`` file (atomically). Returns ``path``."""
    mesh.validate("write_ply")
    count = mesh.num_vertices
    props = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if vertex_color is not None:
        if tuple(vertex_color.shape) != (count, 3):
            raise ValueError(f"write_ply: vertex_color must be [{count}, 3], got {tuple(vertex_color.shape)}")
        props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(count, dtype=props)
    pos = mesh.v_pos.detach().cpu().float().numpy()
    for axis, name in enumerate("xyz"):
        vertices[name] = pos[:, axis]
    if vertex_color is not None:
        srgb = linear_to_srgb(vertex_color.detach().cpu().float().clamp(0, 1)).numpy()
        rgb = np.round(srgb * 255.0).astype(np.uint8)
        for channel, name in enumerate(("red", "green", "blue")):
            vertices[name] = rgb[:, channel]
    faces = np.empty(mesh.num_faces, dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    faces["n"] = 3
    faces["idx"] = mesh.t_pos_idx.cpu().numpy().astype(np.int32)
    types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment written by dmtrec", f"element vertex {count}"]
    header += [f"property {types[kind]} {name}" for name, kind in props]
    header += [f"element face {mesh.num_faces}", "property list uchar int vertex_indices", "end_header", ""]
    path = Path(path)
    write_bytes_atomic(path, "\n".join(header).encode("ascii") + vertices.tobytes() + faces.tobytes())
    return path
