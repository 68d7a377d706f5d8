"""Whole-mesh operations: bounding box, unit-cube normalisation, rigid transforms, merging."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from dmtrec.core.mesh import ATTRIBUTE_PAIRS, Mesh


def aabb(mesh: Mesh) -> tuple[Tensor, Tensor]:
    """``([3], [3])`` min and max corner of the positions (detached); raises for an empty mesh."""
    if mesh.num_vertices == 0:
        raise ValueError("aabb: the mesh has no vertices")
    v = mesh.v_pos.detach()
    return v.min(0).values, v.max(0).values


def normalize_to_unit_cube(mesh: Mesh, side: float = 1.0) -> tuple[Mesh, Tensor, float]:
    """Centre the mesh's AABB on the origin and scale its longest side to ``side``.

    ``side = 1`` fits the mesh into [-0.5, 0.5]^3 (the tet grid's cube); nvdiffrec's
    ``unit_size`` is ``side = 2``. Normals and tangents are unchanged by a uniform scale.

    Returns:
        The moved mesh (other fields shared), the ``[3]`` centre that was subtracted and the
        scale factor applied: ``new = (old - centre) * scale``.
    """
    lo, hi = aabb(mesh)
    centre = (lo + hi) * 0.5
    extent = float((hi - lo).max())
    scale = side / extent if extent > 0 else 1.0
    return mesh.copy(v_pos=(mesh.v_pos - centre) * scale), centre, scale


def transform_mesh(mesh: Mesh, matrix: Tensor) -> Mesh:
    """Apply a ``[4, 4]`` affine ``matrix`` to the positions (``p' = M [p; 1]``); normals and
    tangents are rotated by its linear part (exact for rotations and uniform scales). UVs,
    indices and the material are shared."""
    matrix = matrix.to(mesh.v_pos)
    linear, shift = matrix[:3, :3], matrix[:3, 3]
    moved = {"v_pos": mesh.v_pos @ linear.T + shift}
    for name in ("v_nrm", "v_tng"):
        value = getattr(mesh, name)
        if value is not None:  # tangents may carry MikkTSpace's bitangent sign as a 4th column
            moved[name] = torch.cat([torch.nn.functional.normalize(value[:, :3] @ linear.T, dim=-1), value[:, 3:]], -1)
    return mesh.copy(**moved)


def merge_meshes(meshes: Sequence[Mesh]) -> Mesh:
    """Concatenate meshes into one, offsetting indices.

    An attribute (normals, UVs, tangents) is kept only when every input has it. The material
    of the first mesh is kept. Inputs must share a device.
    """
    if not meshes:
        raise ValueError("merge_meshes: no meshes given")
    if len({m.device for m in meshes}) > 1:
        raise ValueError("merge_meshes: meshes are on different devices")
    merged = {}
    for values, indices in (("v_pos", "t_pos_idx"),) + ATTRIBUTE_PAIRS:
        if any(getattr(m, values) is None or getattr(m, indices) is None for m in meshes):
            continue
        offset, parts = 0, []
        for m in meshes:
            parts.append(getattr(m, indices) + offset)
            offset += getattr(m, values).shape[0]
        merged[values] = torch.cat([getattr(m, values) for m in meshes])
        merged[indices] = torch.cat(parts)
    return Mesh(**merged, material=meshes[0].material)
