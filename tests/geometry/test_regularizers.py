import pytest
import torch

from dmtrec.geometry import Mesh, cotangent_laplacian, laplacian_loss, marching_tetrahedra, uniform_laplacian
from dmtrec.geometry.sdf import sphere_sdf
from dmtrec.geometry.tetgrid import generate_tet_grid


def irregular_plane(seed=0):
    """A 5x5 vertex grid in z = 0 with jittered interior vertices; returns (v, f, interior mask)."""
    gen = torch.Generator().manual_seed(seed)
    xs = torch.linspace(0, 1, 5, dtype=torch.float64)
    x, y = torch.meshgrid(xs, xs, indexing="xy")
    v = torch.stack([x.reshape(-1), y.reshape(-1), torch.zeros(25, dtype=torch.float64)], 1)
    interior = (v[:, 0] > 0) & (v[:, 0] < 1) & (v[:, 1] > 0) & (v[:, 1] < 1)
    v[interior, :2] += 0.06 * (torch.rand(int(interior.sum()), 2, generator=gen, dtype=torch.float64) - 0.5)
    quads = [(r * 5 + c, r * 5 + c + 1, r * 5 + c + 6, r * 5 + c + 5) for r in range(4) for c in range(4)]
    f = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return v, f, interior


def test_uniform_laplacian_is_neighbour_mean_minus_vertex():
    v, f, interior = irregular_plane()
    lap = uniform_laplacian(v, f)
    # Vertex 6 (interior) has neighbours 1, 5, 7, 11 (grid) and 0, 12 (diagonals of its quads).
    neighbours = [0, 1, 5, 7, 11, 12]
    assert torch.allclose(lap[6], v[neighbours].mean(0) - v[6])
    assert lap[interior].norm(dim=1).max() > 1e-3, "jittered interior is not uniform-Laplacian flat"


def test_cotangent_laplacian_has_linear_precision():
    v, f, interior = irregular_plane()
    assert cotangent_laplacian(v, f)[interior].abs().max() < 1e-12
    # Any linear field is harmonic too.
    field = v @ torch.tensor([[1.0, 2.0], [-3.0, 0.5], [0.0, 0.0]], dtype=torch.float64) + 4.0
    assert cotangent_laplacian(v, f, field)[interior].abs().max() < 1e-10


def test_cotangent_laplacian_is_mean_curvature_normal_on_a_sphere():
    grid = generate_tet_grid(24)
    mesh = marching_tetrahedra(grid.vertices.double(), sphere_sdf(grid.vertices.double(), 0.4), grid.tets)
    v = mesh.v_pos / mesh.v_pos.norm(dim=1, keepdim=True) * 0.5  # exactly on a sphere of radius 0.5
    lap = cotangent_laplacian(v, mesh.t_pos_idx)
    radial = (lap * v / 0.5).sum(1)  # -2H = -2/R = -4 along the outward normal
    assert radial.median() == pytest.approx(-4.0, rel=0.05)
    assert (lap.norm(dim=1) / radial.abs()).median() < 1.1


def test_relative_mode_penalizes_only_the_change():
    v, f, _ = irregular_plane()
    for kind in ("uniform", "cotangent"):
        assert laplacian_loss(v, f, kind, reference=v.clone()) == 0
        assert laplacian_loss(v + 0.3, f, kind, reference=v) < 1e-20  # a translation has no Laplacian
        bumped = v.clone()
        bumped[12, 2] += 0.1
        assert laplacian_loss(bumped, f, kind, reference=v) > 1e-4


def test_loss_values_and_gradients():
    v, f, _ = irregular_plane()
    v = v.clone()
    v[:, 2] = 0.1 * torch.sin(5 * v[:, 0]) * torch.cos(3 * v[:, 1])
    assert laplacian_loss(v, f, "uniform").item() == pytest.approx((uniform_laplacian(v, f) ** 2).mean().item())
    for kind in ("uniform", "cotangent"):
        x = v.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda p: laplacian_loss(p, f, kind), (x,), eps=1e-6, atol=1e-6)


def test_empty_mesh_gives_zero_on_the_graph_and_bad_kind_is_an_error():
    mesh = Mesh.empty()
    v = mesh.v_pos.clone().requires_grad_()
    loss = laplacian_loss(v, mesh.t_pos_idx, "cotangent")
    loss.backward()
    assert loss.item() == 0 and v.grad.shape == (0, 3)
    with pytest.raises(ValueError, match="kind"):
        laplacian_loss(v, mesh.t_pos_idx, "graph")
