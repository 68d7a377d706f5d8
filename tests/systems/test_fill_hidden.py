"""Filling hidden pockets at the end of pass 1 (``model.dmtet.fill_hidden_views``): which grid
points a ring of cameras sees past a surface, and what the filled field extracts to. Expected
values come from the analytic shapes (a hollow ball, a torus), not from the code under test."""

import pytest
import torch

from dmtrec.geometry import DMTetGeometry
from dmtrec.geometry.sdf import sphere_sdf, torus_sdf
from dmtrec.metrics.topology import mesh_topology
from dmtrec.render.raster import get_rasterizer
from dmtrec.render.visibility import fibonacci_directions, filled_sdf, hidden_points
from dmtrec.systems.config import DMTetConfig

SCALE, OUTER, INNER = 2.4, 0.9, 0.45


@pytest.fixture(scope="module")
def rasterizer():
    return get_rasterizer("torch", "cpu")


def hollow_ball(resolution: int = 32) -> DMTetGeometry:
    """A ball of radius OUTER with a closed spherical cavity of radius INNER (outside values)."""
    geo = DMTetGeometry(resolution=resolution, scale=SCALE, init="sphere")
    p = geo.grid_verts
    with torch.no_grad():
        geo.sdf.copy_(torch.minimum(sphere_sdf(p, OUTER), -sphere_sdf(p, INNER)))
    return geo


def torus(resolution: int = 32) -> DMTetGeometry:
    geo = DMTetGeometry(resolution=resolution, scale=SCALE, init="sphere")
    with torch.no_grad():
        geo.sdf.copy_(torus_sdf(geo.grid_verts, 0.7, 0.25))
    return geo


def test_fibonacci_directions_are_unit_and_balanced():
    d = fibonacci_directions(64).double()
    assert torch.allclose(d.norm(dim=1), torch.ones(64, dtype=torch.float64), atol=1e-6)
    assert d.mean(0).abs().max() < 0.02  # evenly spread: no side favoured


def test_hidden_points_of_a_hollow_ball_are_the_cavity_and_the_shell(rasterizer):
    geo = hollow_ball()
    points = geo.grid_verts
    hidden = hidden_points(geo.mesh(with_uv=False), points, rasterizer, radius=0.87 * SCALE, views=16)
    r = points.norm(dim=1)
    cell = SCALE / 13  # 13 BCC cubes per side at resolution 32
    assert hidden[r < OUTER - 0.5 * cell].all(), "a point inside the ball was seen"
    assert not hidden[r > OUTER + 0.5 * cell].any(), "a point outside the ball was hidden"


def test_hidden_points_of_a_torus_leave_its_hole_visible(rasterizer):
    geo = torus()
    p = geo.grid_verts
    hidden = hidden_points(geo.mesh(with_uv=False), p, rasterizer, radius=0.87 * SCALE, views=16)
    ring = (p[:, :2].norm(dim=1) - 0.7).square() + p[:, 2].square()
    assert hidden[ring < 0.1**2].all(), "a point deep in the tube was seen"
    assert not hidden[p.norm(dim=1) < 0.3].any(), "the hole (seen along the axis) was hidden"


def test_filled_sdf_closes_the_cavity_and_keeps_the_visible_surface(rasterizer):
    geo = hollow_ball()
    before = geo.sdf.detach().clone()
    assert mesh_topology(*_faces(geo.mesh(with_uv=False)))["components"] == 2  # shell + cavity wall

    sdf = filled_sdf(geo, rasterizer, views=16)
    r = geo.grid_verts.norm(dim=1)
    assert (sdf[r < INNER] > 0).all(), "the cavity was not filled"
    outer = r > 0.5 * (OUTER + INNER)
    assert torch.equal(sdf[outer], before[outer]), "values around the visible surface changed"
    with geo.sdf_replaced(sdf):
        filled = geo.mesh(with_uv=False)
    topo = mesh_topology(*_faces(filled))
    assert topo["components"] == 1 and topo["genus"] == 0 and topo["watertight"]
    assert torch.equal(geo.sdf.detach(), before), "the learned field must come back unchanged"
    # nvdiffrec keeps everything: the option is off unless a config asks for it
    assert DMTetConfig().fill_hidden_views == 0


def test_filled_sdf_keeps_a_visible_handle(rasterizer):
    geo = torus()
    sdf = filled_sdf(geo, rasterizer, views=16)
    with geo.sdf_replaced(sdf):
        topo = mesh_topology(*_faces(geo.mesh(with_uv=False)))
    assert topo["components"] == 1 and topo["genus"] == 1


def _faces(mesh):
    return mesh.v_pos, mesh.t_pos_idx


def test_filled_sdf_leaves_a_mostly_inside_grid_alone(rasterizer):
    # nvdiffrec's random start (~90 % inside): the object is carved out of solid and its outside is
    # a thin air layer that every camera sees only through gaps; filling it would erase the surface.
    geo = DMTetGeometry(resolution=32, scale=SCALE, init="random", seed=0)
    assert torch.equal(filled_sdf(geo, rasterizer, views=16), geo.sdf.detach())


@pytest.mark.parametrize("views, components_expected", [(0, 2), (16, 1)])
def test_the_pipeline_bakes_and_scores_the_filled_surface(views, components_expected):
    from dmtrec.geometry import Mesh
    from dmtrec.systems.pipeline import ReconstructionSystem

    system = ReconstructionSystem(
        iters_dmtet=1,
        iters_mesh=1,
        rasterizer="torch",
        metric_samples=2000,
        dmtet={"resolution": 32, "scale": SCALE, "init": "sphere", "fill_hidden_views": views},
        light={"init": "constant", "base_res": 32},
        material={"volumetric": {"n_levels": 2, "log2_table_size": 8}, "texture_res": 4},
    )
    ball = hollow_ball()
    with torch.no_grad():
        system.geometry.sdf.copy_(ball.sdf)
    surface = system.pass_one_surface()
    assert mesh_topology(surface.v_pos, surface.t_pos_idx)["components"] == components_expected
    outer = Mesh(v_pos=surface.v_pos, t_pos_idx=surface.t_pos_idx)
    assert system.reference_metrics(outer)["pred_components"] == components_expected  # scored as baked
    assert torch.equal(system.geometry.sdf.detach(), ball.sdf.detach())


def drilled_ball(system, radius: float) -> torch.Tensor:
    """Set ``system``'s pass-1 SDF to a ball of radius OUTER drilled along z by a tunnel of the grid
    vertices within ``radius`` of the axis (0: the one line of vertices nearest it). Returns the SDF."""
    p = system.geometry.grid_verts
    axis = p[:, :2].norm(dim=1)
    tunnel = axis <= (axis.min() + 1e-6 if radius == 0 else radius)
    with torch.no_grad():
        system.geometry.sdf.copy_(torch.where(tunnel, torch.full_like(axis, -0.05), sphere_sdf(p, OUTER)))
    return system.geometry.sdf.detach().clone()


@pytest.mark.parametrize(
    "radius, close, genus_expected",
    [(0.0, 0, 1), (0.0, 1, 0), (0.3, 1, 1)],  # a one-vertex tunnel closes; one 0.3 wide (~3 cells) stays
)
def test_close_filled_closes_a_narrow_tunnel_and_keeps_a_wide_one(radius, close, genus_expected):
    from dmtrec.systems.pipeline import ReconstructionSystem

    system = ReconstructionSystem(
        iters_dmtet=1,
        iters_mesh=1,
        rasterizer="torch",
        dmtet={"resolution": 32, "scale": SCALE, "init": "sphere", "close_filled": close},
        light={"init": "constant", "base_res": 32},
        material={"volumetric": {"n_levels": 2, "log2_table_size": 8}, "texture_res": 4},
    )
    before = drilled_ball(system, radius)
    surface = system.pass_one_surface()
    topology = mesh_topology(surface.v_pos, surface.t_pos_idx)
    assert (topology["components"], topology["genus"]) == (1, genus_expected)
    assert torch.equal(system.geometry.sdf.detach(), before)  # the learned field is left alone


def test_close_filled_must_be_a_count():
    with pytest.raises(ValueError, match="model.dmtet.close_filled"):
        DMTetConfig(close_filled=-1)
