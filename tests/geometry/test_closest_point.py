"""Closest points on a triangle mesh against hand cases and a float64 brute-force reference.

The reference is Ericson's region test (Real-Time Collision Detection, 5.1.5), written per
point-triangle pair in plain Python floats over every triangle, so it shares neither the
formulation nor the candidate search with :mod:`dmtrec.geometry.closest_point`.
"""

from __future__ import annotations

import math

import pytest
import torch

from dmtrec.geometry.closest_point import closest_on_triangles, closest_points


def _sub(u, v):
    return [u[0] - v[0], u[1] - v[1], u[2] - v[2]]


def _dot(u, v):
    return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]


def _along(origin, direction, t):
    return [origin[i] + t * direction[i] for i in range(3)]


def _ericson(p, a, b, c):
    """Closest point of triangle ``abc`` to ``p`` by Voronoi regions (vertex, edge, face); the
    regions are disjoint, so the order of the tests does not matter."""
    ab, ac = _sub(b, a), _sub(c, a)
    d1, d2 = _dot(ab, _sub(p, a)), _dot(ac, _sub(p, a))
    d3, d4 = _dot(ab, _sub(p, b)), _dot(ac, _sub(p, b))
    d5, d6 = _dot(ab, _sub(p, c)), _dot(ac, _sub(p, c))
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    if d1 <= 0 and d2 <= 0:
        return a
    if d3 >= 0 and d4 <= d3:
        return b
    if d6 >= 0 and d5 <= d6:
        return c
    if vc <= 0 and d1 >= 0 and d3 <= 0:
        return _along(a, ab, d1 / (d1 - d3))
    if vb <= 0 and d2 >= 0 and d6 <= 0:
        return _along(a, ac, d2 / (d2 - d6))
    if va <= 0 and (d4 - d3) >= 0 and (d5 - d6) >= 0:
        return _along(b, _sub(c, b), (d4 - d3) / ((d4 - d3) + (d5 - d6)))
    denom = 1.0 / (va + vb + vc)
    return _along(_along(a, ab, vb * denom), ac, vc * denom)


def _brute_force(query: torch.Tensor, v_pos: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``[N]`` float64 distance from each query point to its closest triangle, over all of them."""
    tris = v_pos.double()[faces].tolist()
    out = []
    for p in query.double().tolist():
        out.append(min(math.dist(p, _ericson(p, *t)) for t in tris))
    return torch.tensor(out, dtype=torch.float64)


def _bumpy_sphere(n_lat: int = 7, n_lon: int = 10, seed: int = 0):
    """A closed UV sphere with random radial bumps: triangles of many shapes and sizes."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.linspace(0, math.pi, n_lat + 2, dtype=torch.float64)[1:-1]
    phi = torch.arange(n_lon, dtype=torch.float64) * 2 * math.pi / n_lon
    t, f = torch.meshgrid(theta, phi, indexing="ij")
    ring = torch.stack([t.sin() * f.cos(), t.sin() * f.sin(), t.cos()], -1).reshape(-1, 3)
    v = torch.cat([ring, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], dtype=torch.float64)])
    v = v * (1 + 0.3 * torch.rand(v.shape[0], 1, generator=gen, dtype=torch.float64))
    top, bottom = n_lat * n_lon, n_lat * n_lon + 1
    faces = []
    for j in range(n_lon):
        k = (j + 1) % n_lon
        faces.append([top, j, k])
        faces.append([bottom, (n_lat - 1) * n_lon + k, (n_lat - 1) * n_lon + j])
        for i in range(n_lat - 1):
            a, b, c, d = i * n_lon + j, i * n_lon + k, (i + 1) * n_lon + j, (i + 1) * n_lon + k
            faces += [[a, c, b], [b, c, d]]
    return v.float(), torch.tensor(faces)


def test_hand_cases_on_one_triangle():
    v_pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    faces = torch.tensor([[0, 1, 2]])
    # above the face, beyond a corner, beside an edge, beyond the hypotenuse
    query = torch.tensor([[0.25, 0.25, 2.0], [2.0, -1.0, 0.0], [-1.0, 0.5, 0.0], [1.0, 1.0, 0.0]])
    points, dist = closest_points(query, v_pos, faces)
    expected = torch.tensor([[0.25, 0.25, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.5, 0.5, 0.0]])
    torch.testing.assert_close(points.interpolate(v_pos, faces), expected)
    torch.testing.assert_close(dist, torch.tensor([2.0, math.sqrt(2.0), 1.0, math.sqrt(0.5)]))


@pytest.mark.parametrize("use_kdtree", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_a_float64_brute_force_search(use_kdtree, dtype):
    v_pos, faces = _bumpy_sphere()
    gen = torch.Generator().manual_seed(1)
    # near the surface (where the bakes look) and far from it (where centroids mislead most)
    near = v_pos[torch.randint(0, v_pos.shape[0], (150,), generator=gen)]
    query = torch.cat([near + 0.05 * torch.randn(near.shape, generator=gen), 3 * torch.randn(50, 3, generator=gen)])
    points, dist = closest_points(query.to(dtype), v_pos, faces, use_kdtree=use_kdtree)
    brute = _brute_force(query, v_pos, faces)
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(dist.double(), brute, atol=tol, rtol=0)
    # The barycentric point lies on the chosen triangle, at the reported distance.
    assert (points.bary >= -1e-6).all() and torch.allclose(
        points.bary.sum(1).double(), torch.ones(200, dtype=torch.float64)
    )
    on_surface = points.interpolate(v_pos.to(dtype), faces).double()
    torch.testing.assert_close((on_surface - query.double()).norm(dim=-1), brute, atol=tol, rtol=0)


def test_kdtree_and_brute_force_candidates_agree():
    v_pos, faces = _bumpy_sphere(12, 20)
    query = 1.5 * torch.randn(2000, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, brute = closest_points(query, v_pos, faces, use_kdtree=False)
    _, tree = closest_points(query, v_pos, faces, use_kdtree=True)
    torch.testing.assert_close(tree, brute, atol=1e-12, rtol=0)


def test_a_sliver_uses_its_edges():
    # Nearly collinear corners: the plane normal is noise, the distance comes from the edges.
    tri = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 1e-9, 0.0]]], dtype=torch.float64)
    p = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)
    bary, dist = closest_on_triangles(p, tri)
    expected = _brute_force(p, tri[0], torch.tensor([[0, 1, 2]]))
    torch.testing.assert_close(dist, expected, atol=1e-9, rtol=0)
    assert torch.isfinite(bary).all()
