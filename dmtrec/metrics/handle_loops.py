"""Where a surface's handles are: short non-contractible loops, a basis of its first homology.

A closed orientable surface of genus ``g`` has ``2 g`` independent non-contractible loops (over
Z/2: the first homology group has rank ``2 g``). On a torus they are a *meridian* (around the
tube) and a *longitude* (around the hole); a stray handle that a reconstruction grew shows as a
short meridian around its thin tube plus a loop through its tunnel. :func:`handle_loops` returns,
for every closed edge-manifold component, ``2 g`` loops along mesh edges that are independent in
homology and short: a greedy shortest basis (Erickson & Whittlesey, SODA 2005) over the loops
through a set of basepoints, with these steps:

1. *homology coordinates* of every edge, by tree-cotree (Eppstein, SODA 2003): a spanning tree
   ``T`` of the vertices, a spanning tree ``C`` of the faces across edges not in ``T``; the
   ``2 g`` edges in neither are the generators (edge ``i`` gets the unit vector ``e_i``), edges
   of ``T`` get 0, and each edge of ``C`` the sum of its face's other edges, from the leaves of
   ``C`` to its root (every face boundary sums to 0). A cycle's homology class is then the sum
   (XOR) of its edges' coordinates: zero exactly when it is contractible (over Z/2).
2. *candidate loops*: from each basepoint ``x``, the shortest-path tree; each non-tree edge
   ``(u, v)`` closes the loop ``x -> u, v -> x`` of length ``d(u) + |uv| + d(v)`` and of class
   ``p(u) + p(v) + h(uv)`` (``p``: sum of coordinates along the tree path).
3. *greedy basis*: candidates by length, each kept when independent of the kept ones (Gaussian
   elimination over Z/2), until ``2 g`` are kept.

Basepoints: ``basepoints`` vertices by farthest-point sampling (graph distance), then a second
round from each kept loop's farthest vertex, which puts a basepoint on every handle found so that
its loop is found without the detour to the first basepoint. With every vertex a basepoint this
is the shortest homology basis; with a sample it is short but not guaranteed shortest.

Loops are reported per component as vertex positions (a closed polyline, first vertex not
repeated), their length, centroid and bounding box. Components that are not closed edge-manifold
surfaces, or whose genus exceeds ``max_genus``, get no loops (``skipped`` says why).
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch
from torch import Tensor

from dmtrec.geometry.ops import connected_components

_WORD = 64


def handle_loops(v_pos: Tensor, faces: Tensor, basepoints: int = 16, max_genus: int = 20) -> List[Dict[str, Any]]:
    """Non-contractible loops of every component of a triangle mesh (module docstring).

    Args:
        v_pos: ``[V, 3]`` positions; vertices with bitwise-identical positions are welded first.
        faces: ``[F, 3]`` integer vertex indices (degenerate triangles are ignored).
        basepoints: first-round basepoints per component (farthest-point sampling).
        max_genus: components of a larger genus get no loops (the cost grows with ``g``).

    Returns:
        One dict per component (largest first): ``component`` (index), ``triangles``, ``genus``
        (``None`` where undefined), ``loops`` (list of ``{"length", "centroid", "bbox_min",
        "bbox_max", "points" [K, 3] list, "vertices" [K] indices into v_pos}``, ``2 genus`` of
        them, a closed polyline along mesh edges) and ``skipped`` (``None`` or the reason no
        loops were computed).
    """
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.is_floating_point():
        raise ValueError(
            f"handle_loops: faces must be an integer [F, 3] tensor, got {faces.dtype} {tuple(faces.shape)}"
        )
    pos = v_pos.detach().cpu().double()
    _, inverse = torch.unique(v_pos.detach().cpu(), dim=0, return_inverse=True)
    faces = inverse[faces.detach().cpu().long()]
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])]
    # one input vertex (and its position) for each welded vertex
    welded = int(inverse.max()) + 1 if inverse.numel() else 0
    source = torch.zeros(welded, dtype=torch.long).scatter_(0, inverse, torch.arange(inverse.numel()))
    welded_pos = pos[source]
    if faces.shape[0] == 0:
        return []
    edges, face_edges, edge_count = _edges(faces)
    face_of_corner = torch.arange(faces.shape[0]).repeat_interleave(3)
    first = torch.full((edges.shape[0],), faces.shape[0], dtype=torch.long)
    first = first.scatter_reduce(0, face_edges.reshape(-1), face_of_corner, reduce="amin")
    face_comp = connected_components(faces.shape[0], face_of_corner, first[face_edges.reshape(-1)])
    sizes = torch.bincount(face_comp)
    results = []
    for comp in torch.argsort(sizes, descending=True, stable=True).tolist():
        sub = faces[face_comp == comp]
        results.append(_component_loops(welded_pos, source, sub, comp, basepoints, max_genus))
    return results


def _edges(faces: Tensor):
    """``(edges [E, 2] sorted, face_edges [F, 3], count [E])``: face ``f``'s edge ``k`` joins
    corners ``k`` and ``k + 1``."""
    start, end = faces.reshape(-1), faces[:, [1, 2, 0]].reshape(-1)
    pairs = torch.stack([torch.minimum(start, end), torch.maximum(start, end)], 1)
    edges, inverse, count = torch.unique(pairs, dim=0, return_inverse=True, return_counts=True)
    return edges, inverse.reshape(-1, 3), count


def _component_loops(
    pos: Tensor, source: Tensor, faces: Tensor, comp: int, basepoints: int, max_genus: int
) -> Dict[str, Any]:
    used, local = torch.unique(faces, return_inverse=True)
    edges, face_edges, count = _edges(local)
    nv, ne, nf = int(used.numel()), int(edges.shape[0]), int(local.shape[0])
    result: Dict[str, Any] = {"component": comp, "triangles": nf, "genus": None, "loops": [], "skipped": None}
    if bool((count != 2).any()):
        result["skipped"] = "not a closed edge-manifold surface"
        return result
    twice_genus = 2 - (nv - ne + nf)
    if twice_genus < 0 or twice_genus % 2:
        result["skipped"] = "Euler characteristic of no orientable closed surface"
        return result
    genus = twice_genus // 2
    result["genus"] = genus
    if genus == 0:
        return result
    if genus > max_genus:
        result["skipped"] = f"genus {genus} > max_genus {max_genus}"
        return result
    e = edges.numpy()
    xyz = pos[used].numpy()
    length = np.linalg.norm(xyz[e[:, 0]] - xyz[e[:, 1]], axis=1)
    coords = _edge_homology(e, face_edges.numpy(), nv, twice_genus)
    loops = _greedy_basis(xyz, e, length, coords, twice_genus, basepoints)
    vertex = source[used].numpy()
    result["loops"] = [dict(_describe(xyz[loop]), vertices=vertex[loop].tolist()) for loop in loops]
    return result


def _graph(e: np.ndarray, weights: np.ndarray, nv: int):
    from scipy.sparse import coo_matrix

    rows, cols = np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]])
    return coo_matrix((np.concatenate([weights, weights]), (rows, cols)), shape=(nv, nv)).tocsr()


def _edge_homology(e: np.ndarray, face_edges: np.ndarray, nv: int, rank: int) -> np.ndarray:
    """``[E, W]`` uint64 Z/2 homology coordinates of the edges (bit ``i`` of word ``i // 64``)."""
    from scipy.sparse.csgraph import breadth_first_order

    ne, nf = e.shape[0], face_edges.shape[0]
    edge_id = _graph(e, np.arange(1, ne + 1, dtype=np.float64), nv)
    _, pred = breadth_first_order(edge_id, 0, directed=False, return_predecessors=True)
    in_tree = np.zeros(ne, bool)
    child = np.flatnonzero(pred >= 0)
    in_tree[np.asarray(edge_id[pred[child], child]).ravel().astype(np.int64) - 1] = True
    # dual graph: faces joined across edges not in the tree
    faces_of_edge = np.full((ne, 2), -1, np.int64)
    order = np.argsort(face_edges.ravel(), kind="stable")
    faces_of_edge[:] = (order // 3).reshape(ne, 2)
    dual = np.flatnonzero(~in_tree)
    # two faces sharing two edges (a pinched sliver) would add their ids up: keep one edge per pair
    _, once = np.unique(np.sort(faces_of_edge[dual], axis=1), axis=0, return_index=True)
    dual = dual[np.sort(once)]
    dual_id = _graph(faces_of_edge[dual], dual.astype(np.float64) + 1, nf)
    face_order, face_pred = breadth_first_order(dual_id, 0, directed=False, return_predecessors=True)
    in_cotree = np.zeros(ne, bool)
    parent_edge = np.full(nf, -1, np.int64)
    fchild = np.flatnonzero(face_pred >= 0)
    parent_edge[fchild] = np.asarray(dual_id[face_pred[fchild], fchild]).ravel().astype(np.int64) - 1
    in_cotree[parent_edge[fchild]] = True
    generators = np.flatnonzero(~in_tree & ~in_cotree)
    if generators.size != rank:
        raise RuntimeError(f"handle_loops: tree-cotree left {generators.size} edges, expected 2 g = {rank}")
    words = (rank + _WORD - 1) // _WORD
    coords = np.zeros((ne, words), np.uint64)
    for i, edge in enumerate(generators):
        coords[edge, i // _WORD] = np.uint64(1) << np.uint64(i % _WORD)
    # leaves first: a face's parent edge gets the sum of its other edges (its boundary sums to 0)
    for face in face_order[::-1][:-1]:
        edge = parent_edge[face]
        others = face_edges[face][face_edges[face] != edge]
        coords[edge] = np.bitwise_xor.reduce(coords[others], axis=0)
    return coords


def _greedy_basis(xyz, e, length, coords, rank, basepoints):
    """``rank`` short independent loops as vertex cycles (module docstring, steps 2-3)."""
    from scipy.sparse.csgraph import dijkstra

    nv = xyz.shape[0]
    weights = _graph(e, length, nv)
    edge_id = _graph(e, np.arange(1, e.shape[0] + 1, dtype=np.float64), nv)
    candidates: List[tuple] = []
    nearest = np.full(nv, np.inf)
    sources = [0]
    chosen: List[tuple] = []
    for round_ in range(2):
        for _ in range(basepoints if round_ == 0 else 0):
            source = sources[-1]
            dist, pred = dijkstra(weights, indices=source, return_predecessors=True)
            candidates += _candidates(source, dist, pred, e, length, coords, edge_id)
            nearest = np.minimum(nearest, dist)
            sources.append(int(np.argmax(nearest)))
        if round_ == 1:
            for _, _, source in chosen:
                dist, pred = dijkstra(weights, indices=source, return_predecessors=True)
                candidates += _candidates(source, dist, pred, e, length, coords, edge_id)
        chosen = _select(candidates, rank)
    return [cycle for _, cycle, _ in chosen]


def _candidates(source, dist, pred, e, length, coords, edge_id):
    """Loops through ``source`` closed by each non-tree edge, one (the shortest) per class."""
    nv = dist.shape[0]
    # p(v): XOR of coordinates along the tree path, by pointer doubling over the predecessors
    parent = np.where(pred >= 0, pred, np.arange(nv))
    acc = np.zeros((nv,) + coords.shape[1:], np.uint64)
    has = pred >= 0
    acc[has] = coords[np.asarray(edge_id[pred[has], np.flatnonzero(has)]).ravel().astype(np.int64) - 1]
    while True:
        jump = parent[parent]
        if np.array_equal(jump, parent):
            break
        acc ^= acc[parent]  # the root's accumulator stays 0
        parent = jump
    u, v = e[:, 0], e[:, 1]
    tree = (pred[v] == u) | (pred[u] == v)
    cls = acc[u] ^ acc[v] ^ coords
    total = dist[u] + length + dist[v]
    keep = ~tree & cls.any(axis=1) & np.isfinite(total)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(total[idx], kind="stable")]
    _, first = np.unique(cls[idx], axis=0, return_index=True)
    out = []
    for i in idx[np.sort(first)]:
        out.append((float(total[i]), _as_int(cls[i]), source, int(u[i]), int(v[i]), pred))
    return out


def _as_int(words: np.ndarray) -> int:
    return sum(int(w) << (_WORD * k) for k, w in enumerate(words))


def _select(candidates, rank):
    """Greedy Z/2-independent shortest candidates; returns ``[(length, cycle, far vertex)]``."""
    basis: Dict[int, int] = {}  # pivot bit -> reduced vector
    chosen = []
    for total, cls, source, u, v, pred in sorted(candidates, key=lambda c: c[0]):
        x = cls
        while x:
            top = x.bit_length() - 1
            if top not in basis:
                break
            x ^= basis[top]
        if not x:
            continue
        basis[x.bit_length() - 1] = x
        cycle = _cycle(source, u, v, pred)
        chosen.append((total, cycle, u))
        if len(chosen) == rank:
            break
    return chosen


def _cycle(source: int, u: int, v: int, pred: np.ndarray) -> List[int]:
    """The vertex cycle ``u -> ... -> branch -> ... -> v`` (tree paths to ``source`` with their
    common part dropped; the closing edge is ``v -> u``)."""

    def path(x: int) -> List[int]:
        out = [x]
        while out[-1] != source:
            out.append(int(pred[out[-1]]))
        return out[::-1]

    a, b = path(u), path(v)
    k = 0
    while k + 1 < min(len(a), len(b)) and a[k + 1] == b[k + 1]:
        k += 1
    return a[k:][::-1] + b[k + 1 :]


def _describe(points: np.ndarray) -> Dict[str, Any]:
    total = float(np.linalg.norm(points - np.roll(points, 1, axis=0), axis=1).sum())
    return {
        "length": round(total, 6),
        "centroid": [round(float(x), 6) for x in points.mean(0)],
        "bbox_min": [round(float(x), 6) for x in points.min(0)],
        "bbox_max": [round(float(x), 6) for x in points.max(0)],
        "points": [[round(float(x), 6) for x in p] for p in points],
    }
