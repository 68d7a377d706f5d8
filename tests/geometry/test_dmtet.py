import math

import pytest
import torch
import torch.nn.functional as F
from geometry_checks import signed_volume, topology

from dmtrec.geometry import DMTetGeometry, Mesh, marching_tetrahedra, sdf_reg_loss, sphere_sdf
from dmtrec.geometry.normals import vertex_normals
from dmtrec.geometry.regularizers import laplacian_loss
from dmtrec.io.mesh_files import read_mesh
from dmtrec.io.obj import write_obj


def test_offsets_are_bounded_by_one_over_resolution_as_in_nvdiffrec():
    geo = DMTetGeometry(resolution=32, scale=2.0, init="sphere")
    assert geo.offset_bound == pytest.approx(1 / 32)  # nvdiffrec: 2 / (2 * grid_res) for scale 2
    with torch.no_grad():
        geo.deform.copy_(torch.randn_like(geo.deform) * 1e3)
    moved = (geo.deformed_vertices() - geo.grid_verts).abs()
    assert moved.max() <= geo.offset_bound * (1 + 1e-6)
    assert moved.max() > 0.99 * geo.offset_bound
    # nvdiffrec's bound is 1 / grid_res in world units whatever mesh_scale is (not half a cell)
    wide = DMTetGeometry(resolution=32, scale=3.0, init="sphere")
    with torch.no_grad():
        wide.deform.fill_(1e3)
    assert (wide.deformed_vertices() - wide.grid_verts).abs().max().item() == pytest.approx(1 / 32, rel=1e-6)
    # ... unless configured
    assert DMTetGeometry(resolution=32, scale=3.0, init="sphere", offset_bound=0.05).offset_bound == 0.05


def test_random_init_matches_nvdiffrec_and_is_seeded():
    a = DMTetGeometry(resolution=32, init="random", seed=7)
    b = DMTetGeometry(resolution=32, init="random", seed=7)
    assert torch.equal(a.sdf, b.sdf)
    assert a.sdf.min() >= -0.1 and a.sdf.max() < 0.9
    assert (a.sdf > 0).float().mean() == pytest.approx(0.9, abs=0.02)  # U(0, 1) - 0.1
    assert (a.deform == 0).all()
    assert set(a.state_dict()) == {"sdf", "deform"}, "grid buffers are rebuilt, not checkpointed"


def test_sphere_init_extracts_a_closed_sphere():
    geo = DMTetGeometry(resolution=32, scale=2.0, init="sphere", sphere_radius=0.6)
    mesh = geo.mesh()
    topo = topology(mesh.t_pos_idx, mesh.num_vertices)
    assert topo["euler"] == 2 and topo["closed_manifold_edges"] and topo["consistently_oriented"]
    assert mesh.v_pos.norm(dim=1).sub(0.6).abs().max() < 0.01
    lo, hi = geo.aabb()
    assert torch.allclose(lo, torch.full((3,), -0.6), atol=0.02)
    assert torch.allclose(hi, torch.full((3,), 0.6), atol=0.02)
    # mesh() gives what the renderer needs: smooth outward normals, UVs and tangents.
    assert (F.cosine_similarity(mesh.v_nrm, mesh.v_pos, dim=1) > 0.95).all()
    assert mesh.v_tex is not None and mesh.v_tng.shape[1] == 4  # MikkTSpace: tangent and sign
    assert (mesh.v_tng[mesh.t_tng_idx][..., :3] * mesh.v_nrm[mesh.t_nrm_idx]).sum(-1).abs().max() < 1e-4


def icosphere_like(radius: float) -> Mesh:
    """A closed sphere mesh, made independently of DMTetGeometry."""
    from dmtrec.geometry.tetgrid import generate_tet_grid

    grid = generate_tet_grid(16)
    mesh = marching_tetrahedra(grid.vertices, sphere_sdf(grid.vertices, 0.4), grid.tets)
    return Mesh(mesh.v_pos / mesh.v_pos.norm(dim=1, keepdim=True) * radius, mesh.t_pos_idx)


@pytest.mark.parametrize("from_file", [False, True])
def test_mesh_init_reproduces_the_mesh(tmp_path, from_file):
    source = icosphere_like(0.5)
    init = read_mesh(write_obj(tmp_path, source))[0] if from_file else source
    geo = DMTetGeometry(resolution=24, scale=1.5, init="mesh", init_mesh=init)
    cell = 1.5 / 24
    mesh = geo.mesh(with_uv=False)
    assert topology(mesh.t_pos_idx, mesh.num_vertices)["euler"] == 2
    assert mesh.v_pos.norm(dim=1).sub(0.5).abs().max() < 0.25 * cell
    # The SDF is signed and metric: positive inside, ~ the distance to the sphere.
    assert torch.allclose(geo.sdf, sphere_sdf(geo.grid_verts, 0.5), atol=0.1 * cell + 0.02)


def test_gradients_wrt_sdf_and_offsets_match_finite_differences():
    geo = DMTetGeometry(resolution=4, scale=1.0, init="sphere", sphere_radius=0.3).double()
    gen = torch.Generator().manual_seed(0)
    sdf = geo.sdf.detach() + 0.05 * torch.randn(geo.sdf.shape, generator=gen, dtype=torch.float64)
    sdf = torch.where(sdf.abs() < 0.01, torch.full_like(sdf, 0.01), sdf)
    deform = 0.5 * torch.randn(geo.deform.shape, generator=gen, dtype=torch.float64)

    def surface(s, d):
        mesh = torch.func.functional_call(geo, {"sdf": s, "deform": d}, (), {"with_uv": False})
        return mesh.v_pos, mesh.v_nrm

    assert surface(sdf, deform)[0].shape[0] > 10
    assert torch.autograd.gradcheck(
        surface, (sdf.requires_grad_(), deform.requires_grad_()), eps=1e-6, atol=1e-5, fast_mode=True
    )


def test_sdf_reg_loss_is_bce_on_sign_changing_edges():
    sdf = torch.tensor([2.0, -1.0, 0.5, 3.0], requires_grad=True)
    edges = torch.tensor([[0, 1], [0, 2], [1, 2], [2, 3], [1, 3]])
    loss = sdf_reg_loss(sdf, edges)
    # Crossing edges: (0,1), (1,2), (1,3). Each end is pushed towards the other end's sign.
    a, b = torch.tensor([2.0, -1.0, -1.0]), torch.tensor([-1.0, 0.5, 3.0])
    bce = lambda x, y: -(y * F.logsigmoid(x) + (1 - y) * F.logsigmoid(-x)).mean()  # noqa: E731
    expected = bce(a, (b > 0).float()) + bce(b, (a > 0).float())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    # Vertex 0 (inside) only meets the crossing edge (0, 1): d/ds0 BCE(s0, 0) / 3 = sigmoid(2) / 3,
    # a push towards its outside neighbour's sign.
    assert sdf.grad[0].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item() / 3, rel=1e-5)
    assert sdf_reg_loss(torch.ones(4), edges) == 0


def test_module_sdf_reg_loss_uses_grid_edges():
    geo = DMTetGeometry(resolution=16, init="sphere")
    assert geo.sdf_reg_loss().item() == pytest.approx(sdf_reg_loss(geo.sdf, geo.edges).item())
    assert geo.sdf_reg_loss() > 0


def test_surfaceless_state_is_an_empty_mesh_everything_accepts():
    geo = DMTetGeometry(resolution=16, init="sphere")
    with torch.no_grad():
        geo.sdf.fill_(-0.5)
    mesh = geo.mesh()
    assert mesh.is_empty and mesh.v_pos.shape == (0, 3) and mesh.t_pos_idx.dtype == torch.int64
    assert mesh.v_nrm.shape == (0, 3) and mesh.v_tex.shape == (0, 2) and mesh.v_tng.shape == (0, 4)
    assert vertex_normals(mesh.v_pos, mesh.t_pos_idx).shape == (0, 3)
    loss = geo.sdf_reg_loss() + laplacian_loss(mesh.v_pos, mesh.t_pos_idx) + mesh.v_pos.sum()
    assert loss.item() == 0
    loss.backward()
    assert (geo.sdf.grad == 0).all() and (geo.deform.grad == 0).all()
    lo, hi = geo.aabb()  # falls back to the grid box
    assert torch.allclose(hi, torch.full((3,), geo.scale / 2)) and torch.allclose(lo, -hi)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="init must be one of"):
        DMTetGeometry(resolution=8, init="noise")
    with pytest.raises(ValueError, match="init_mesh"):
        DMTetGeometry(resolution=8, init="mesh")
    with pytest.raises(ValueError, match="sphere_radius"):
        DMTetGeometry(resolution=8, init="sphere", scale=1.0, sphere_radius=0.7)
    with pytest.raises(ValueError, match="scale"):
        DMTetGeometry(resolution=8, scale=0.0)


def test_nvdiffrec_grid_file(nvdiffrec_tets):
    geo = DMTetGeometry(resolution=32, scale=2.1, grid_file=str(nvdiffrec_tets / "32_tets.npz"), init="sphere")
    assert geo.grid_verts.shape == (6641, 3) and geo.tets.shape == (30136, 4)
    mesh = geo.mesh(with_uv=False)
    assert signed_volume(mesh.v_pos, mesh.t_pos_idx) == pytest.approx(4 / 3 * math.pi * (0.25 * 2.1) ** 3, rel=0.03)
