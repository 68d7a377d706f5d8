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


def connected_components(num_nodes: int, a: Tensor, b: Tensor) -> Tensor:
    """Component label in ``[0, C)`` of each of ``num_nodes`` nodes joined by edges ``a[i]-b[i]``.

    Parallel union-find (hook every root to the smaller root it meets, then path-compress
    by pointer jumping), a few vectorised rounds instead of a Python loop over edges.

    Args:
        a, b: ``[K]`` int64 node indices.

    Returns:
        ``[num_nodes]`` int64 labels, numbered in order of each component's smallest node.
    """
    parent = torch.arange(num_nodes, device=a.device)
    while True:
        pa, pb = parent[a], parent[b]
        hooked = parent.scatter_reduce(0, torch.maximum(pa, pb), torch.minimum(pa, pb), reduce="amin")
        while True:
            jumped = hooked[hooked]
            if torch.equal(jumped, hooked):
                break
            hooked = jumped
        if torch.equal(hooked, parent):
            break
        parent = hooked
    return torch.unique(parent, return_inverse=True)[1]


def drop_small_components(mesh: Mesh, min_fraction: float) -> Mesh:
    """``mesh`` without its vertex-connected pieces of fewer than ``min_fraction`` times the
    faces of the largest one (floaters a fit leaves around the surface), unused vertices removed.

    Only positions and faces are kept (the result is meant for unwrapping and baking); an empty
    mesh, or ``min_fraction <= 0``, comes back unchanged.
    """
    if min_fraction <= 0 or mesh.is_empty:
        return mesh
    faces = mesh.t_pos_idx
    label = connected_components(mesh.num_vertices, faces[:, [0, 1]].reshape(-1), faces[:, [1, 2]].reshape(-1))
    face_label = label[faces[:, 0]]
    sizes = torch.bincount(face_label)
    keep = sizes[face_label] >= min_fraction * sizes.max()
    if bool(keep.all()):
        return Mesh(v_pos=mesh.v_pos, t_pos_idx=faces)
    faces = faces[keep]
    used, remap = torch.unique(faces, return_inverse=True)
    return Mesh(v_pos=mesh.v_pos[used], t_pos_idx=remap.reshape(-1, 3))
