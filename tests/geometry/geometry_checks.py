"""Helpers shared by the geometry tests: mesh topology, volume and surface sampling."""

import math

import torch


def topology(faces: torch.Tensor, num_vertices: int) -> dict:
    """Euler characteristic and manifold/orientation facts of a triangle mesh."""
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    lo, hi = directed.min(1).values, directed.max(1).values
    _, per_edge = torch.unique(lo * num_vertices + hi, return_counts=True)
    _, per_directed = torch.unique(directed[:, 0] * num_vertices + directed[:, 1], return_counts=True)
    used = torch.unique(faces).numel()
    return {
        "V": used,
        "E": per_edge.numel(),
        "F": faces.shape[0],
        "euler": used - per_edge.numel() + faces.shape[0],
        "closed_manifold_edges": bool((per_edge == 2).all()),  # every edge has exactly two faces
        "consistently_oriented": bool((per_directed == 1).all()),  # neighbours traverse edges oppositely
    }


def signed_volume(v: torch.Tensor, f: torch.Tensor) -> float:
    v = v.detach().double()
    return float((v[f[:, 0]] * torch.cross(v[f[:, 1]], v[f[:, 2]], dim=1)).sum() / 6)


def sample_surface(v: torch.Tensor, f: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``[n, 3]`` float64 points uniformly distributed by area on a triangle mesh."""
    tri = v[f].double()
    area = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1).norm(dim=1)
    idx = torch.multinomial(area, n, replacement=True, generator=gen)
    r1 = torch.rand(n, 1, generator=gen, dtype=torch.float64).sqrt()
    r2 = torch.rand(n, 1, generator=gen, dtype=torch.float64)
    t = tri[idx]
    return (1 - r1) * t[:, 0] + r1 * (1 - r2) * t[:, 1] + r1 * r2 * t[:, 2]


def sphere_points(n: int, radius: float, gen: torch.Generator) -> torch.Tensor:
    u = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return radius * u / u.norm(dim=1, keepdim=True)


def torus_points(n: int, major: float, minor: float, gen: torch.Generator) -> torch.Tensor:
    a = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    b = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    ring = major + minor * b.cos()
    return torch.stack([ring * a.cos(), ring * a.sin(), minor * b.sin()], 1)
