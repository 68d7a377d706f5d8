"""Closing and opening of a grid SDF's inside set (spurious handles before the bake)."""

import pytest
import torch

from dmtrec.geometry.dmtet import DMTetGeometry
from dmtrec.geometry.sdf import torus_sdf
from dmtrec.geometry.sdf_morphology import inside_morphology, sdf_morphology
from dmtrec.metrics.topology import mesh_topology


def chain(n):
    """Edges of the path graph 0 - 1 - ... - n-1."""
    return torch.stack([torch.arange(n - 1), torch.arange(1, n)], 1)


def test_on_a_chain_closing_fills_one_vertex_gaps_and_opening_cuts_runs_of_two():
    # inside pattern along a chain, closed / opened by hand with the one-ring structuring element:
    # closing fills the single outside vertices 2 and 11, not the gap 5-7; opening removes the
    # runs 3-4 and 12 (every vertex has an outside neighbour) and keeps 0-1 (vertex 0 has none)
    inside = torch.tensor([1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0], dtype=torch.bool)
    closed = torch.tensor([1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    opened = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    edges = chain(len(inside))
    assert torch.equal(inside_morphology(inside, edges, "close"), closed)
    assert torch.equal(inside_morphology(inside, edges, "open"), opened)
    assert torch.equal(inside_morphology(inside, edges, "none"), inside)
    with pytest.raises(ValueError, match="mode"):
        inside_morphology(inside, edges, "dilate")


def test_sdf_keeps_unchanged_vertices_and_puts_flipped_ones_next_to_the_surface():
    sdf = torch.tensor([0.5, 0.2, -0.1, 0.3, -0.4, -0.6])
    out = sdf_morphology(sdf, chain(6), "close", eps=1e-3)
    assert torch.equal(out, torch.tensor([0.5, 0.2, 1e-3, 0.3, -0.4, -0.6]))


def test_closing_removes_a_thin_torus_hole_and_keeps_a_sphere():
    # a torus whose hole is narrower than two grid edges: genus 1 before, 0 after closing; a ball
    # far from any thin feature is unchanged
    geo = DMTetGeometry(resolution=32, scale=2.0)
    points = geo.grid_verts
    edge = float((points[geo.edges[:, 0]] - points[geo.edges[:, 1]]).norm(dim=1).mean())
    with torch.no_grad():
        geo.sdf.copy_(torus_sdf(points, major_radius=0.35 + 0.5 * edge, minor_radius=0.35))
    before = geo.mesh(with_uv=False)
    assert mesh_topology(before.v_pos.detach(), before.t_pos_idx)["genus"] == 1
    with torch.no_grad():
        geo.sdf.copy_(sdf_morphology(geo.sdf, geo.edges, "close"))
    after = geo.mesh(with_uv=False)
    assert mesh_topology(after.v_pos.detach(), after.t_pos_idx)["genus"] == 0
    ball = 0.5 - points.norm(dim=1)
    assert torch.equal(sdf_morphology(ball, geo.edges, "close"), ball)
