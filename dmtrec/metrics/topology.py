"""Combinatorial topology of a triangle mesh: components, watertightness, genus.

Definitions used by :func:`mesh_topology`:

- connected components join triangles that share an edge (two closed surfaces touching at
  a single vertex count as two components, each with its own genus);
- an edge is *manifold* when at most two triangles use it, a *boundary* edge when one does;
- *consistently oriented*: no directed edge appears twice (neighbouring triangles traverse
  their shared edge in opposite directions);
- *watertight*: non-empty, every edge shared by exactly two triangles, consistently oriented;
- genus per component from its Euler characteristic ``chi = V - E + F`` and its number of
  boundary loops ``b``: ``g = (2 - chi - b) / 2`` (orientable surfaces); ``None`` for a
  component with non-manifold edges, or where the formula gives no non-negative integer.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

from dmtrec.geometry.ops import connected_components


def mesh_topology(v_pos: Tensor, faces: Tensor, weld: bool = True) -> Dict[str, Any]:
    """Triangle count, components, watertightness and genus (definitions in the module docstring).

    Args:
        v_pos: ``[V, 3]`` vertex positions (used only to weld duplicates).
        faces: ``[F, 3]`` integer vertex indices.
        weld: merge vertices with bitwise-identical positions first, so that vertices split
            for UV seams or hard normals do not open the surface.

    Returns:
        A JSON-ready dict: ``triangles`` (all of ``faces``), ``degenerate_triangles`` (with a
        repeated vertex; left out of everything below), ``vertices`` (used), ``edges``,
        ``components``, ``boundary_edges``, ``boundary_loops``, ``edge_manifold``,
        ``consistently_oriented``, ``watertight``, ``euler_characteristic``, ``genus`` (sum
        over components, ``None`` if any is undefined) and ``component_genus`` (list).
    """
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.is_floating_point():
        raise ValueError(
            f"mesh_topology: faces must be an integer [F, 3] tensor, got {faces.dtype} {tuple(faces.shape)}"
        )
    faces = faces.detach().cpu().long()
    num_triangles = int(faces.shape[0])
    if weld:
        _, inverse = torch.unique(v_pos.detach().cpu(), dim=0, return_inverse=True)
        faces = inverse[faces]
    proper = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
    faces = faces[proper]
    result: Dict[str, Any] = {"triangles": num_triangles, "degenerate_triangles": num_triangles - int(faces.shape[0])}
    # compact vertex ids so that keys below stay small
    used, faces = torch.unique(faces, return_inverse=True)
    nv, nf = int(used.numel()), int(faces.shape[0])

    start = faces.reshape(-1)
    end = faces[:, [1, 2, 0]].reshape(-1)
    directed_counts = torch.unique(start * nv + end, return_counts=True)[1]
    edge_key = torch.minimum(start, end) * nv + torch.maximum(start, end)
    edge_keys, edge_of_corner, edge_counts = torch.unique(edge_key, return_inverse=True, return_counts=True)
    face_of_corner = torch.arange(nf).repeat_interleave(3)
    first_face = torch.full((edge_keys.numel(),), nf, dtype=torch.long).scatter_reduce(
        0, edge_of_corner, face_of_corner, reduce="amin"
    )
    face_comp = connected_components(nf, face_of_corner, first_face[edge_of_corner])
    num_comp = int(face_comp.max()) + 1 if nf else 0

    edge_comp = face_comp[first_face] if nf else first_face
    faces_per = torch.bincount(face_comp, minlength=num_comp)
    edges_per = torch.bincount(edge_comp, minlength=num_comp)
    comp_vertex = torch.unique(face_comp.repeat_interleave(3) * nv + faces.reshape(-1))
    vertices_per = torch.bincount(comp_vertex // nv, minlength=num_comp)
    nonmanifold_per = torch.bincount(edge_comp[edge_counts > 2], minlength=num_comp)

    boundary = edge_counts == 1
    boundary_comp = edge_comp[boundary]
    # boundary loops: components of the boundary-edge graph, kept apart per surface component
    loop_nodes, loop_ends = torch.unique(
        torch.stack([boundary_comp * nv + edge_keys[boundary] // nv, boundary_comp * nv + edge_keys[boundary] % nv]),
        return_inverse=True,
    )
    loop_label = connected_components(loop_nodes.numel(), loop_ends[0], loop_ends[1])
    loop_comp = torch.zeros(int(loop_label.max()) + 1 if loop_label.numel() else 0, dtype=torch.long)
    loop_comp[loop_label] = loop_nodes // nv
    loops_per = torch.bincount(loop_comp, minlength=num_comp)

    euler_per = vertices_per - edges_per + faces_per
    component_genus: List[Optional[int]] = []
    for chi, loops, nonmanifold in zip(euler_per.tolist(), loops_per.tolist(), nonmanifold_per.tolist()):
        twice_genus = 2 - chi - loops
        ok = nonmanifold == 0 and twice_genus >= 0 and twice_genus % 2 == 0
        component_genus.append(twice_genus // 2 if ok else None)

    edge_manifold = bool((edge_counts <= 2).all())
    oriented = bool((directed_counts == 1).all())
    result.update(
        vertices=nv,
        edges=int(edge_keys.numel()),
        components=num_comp,
        boundary_edges=int(boundary.sum()),
        boundary_loops=int(loop_comp.numel()),
        edge_manifold=edge_manifold,
        consistently_oriented=oriented,
        watertight=nf > 0 and bool((edge_counts == 2).all()) and oriented,
        euler_characteristic=int(euler_per.sum()),
        genus=None if not component_genus or None in component_genus else sum(component_genus),
        component_genus=component_genus,
    )
    return result
