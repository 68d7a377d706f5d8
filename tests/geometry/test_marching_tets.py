import math

import pytest
import torch
from geometry_checks import sample_surface, signed_volume, sphere_points, topology, torus_points

from dmtrec.geometry.marching_tets import NUM_TRIANGLES, TRIANGLE_TABLE, marching_tetrahedra
from dmtrec.geometry.sdf import mesh_distance, sphere_sdf, torus_sdf
from dmtrec.geometry.tetgrid import TET_EDGES, generate_tet_grid, load_tet_grid


def extract(grid, sdf, **kw):
    return marching_tetrahedra(
        grid.vertices.to(sdf.dtype), sdf, grid.tets, edges=grid.edges, tet_edges=grid.tet_edges, **kw
    )


@pytest.fixture(scope="module")
def grid32():
    return generate_tet_grid(32)


def test_every_case_of_the_table_winds_outward():
    gen = torch.Generator().manual_seed(0)
    for case in range(16):
        for _ in range(5):
            verts = torch.randn(4, 3, generator=gen, dtype=torch.float64)
            a, b, c, d = verts
            if torch.dot(torch.cross(b - a, c - a, dim=0), d - a) < 0:
                verts[[2, 3]] = verts[[3, 2]]
            inside = torch.tensor([case >> i & 1 for i in range(4)], dtype=torch.bool)
            mag = torch.rand(4, generator=gen, dtype=torch.float64) + 0.1
            sdf = torch.where(inside, mag, -mag)
            mesh = marching_tetrahedra(verts, sdf, torch.tensor([[0, 1, 2, 3]]))
            assert (
                mesh.num_faces
                == NUM_TRIANGLES[case]
                == (0 if inside.all() or not inside.any() else 1 if inside.sum() in (1, 3) else 2)
            )
            if mesh.is_empty:
                continue
            p = mesh.v_pos[mesh.t_pos_idx]
            normal = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=1)
            outward = verts[~inside].mean(0) - verts[inside].mean(0)
            assert (normal @ outward > 0).all(), f"case {case} winds inward"


def test_table_uses_only_crossed_edges():
    for case in range(16):
        inside = [case >> i & 1 for i in range(4)]
        for e in TRIANGLE_TABLE[case, : 3 * NUM_TRIANGLES[case]]:
            a, b = TET_EDGES[e]
            assert inside[a] != inside[b]


def test_sphere_gives_closed_outward_genus0_surface(grid32):
    mesh = extract(grid32, sphere_sdf(grid32.vertices, 0.35))
    topo = topology(mesh.t_pos_idx, mesh.num_vertices)
    assert topo["closed_manifold_edges"] and topo["consistently_oriented"]
    assert topo["euler"] == 2
    assert topo["V"] == mesh.num_vertices, "every output vertex belongs to a face"
    assert signed_volume(mesh.v_pos, mesh.t_pos_idx) == pytest.approx(4 / 3 * math.pi * 0.35**3, rel=0.03)
    p = mesh.v_pos[mesh.t_pos_idx]
    normal = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=1)
    assert ((normal * p.mean(1)).sum(1) > 0).all(), "every face normal points away from the centre"


def test_torus_gives_genus1_surface():
    grid = generate_tet_grid(64)
    mesh = extract(grid, torus_sdf(grid.vertices, 0.3, 0.12))
    topo = topology(mesh.t_pos_idx, mesh.num_vertices)
    assert topo["closed_manifold_edges"] and topo["consistently_oriented"]
    assert topo["euler"] == 0
    assert signed_volume(mesh.v_pos, mesh.t_pos_idx) > 0


def chamfer(mesh, sdf_fn, surface_points, gen):
    """Mean distances mesh -> analytic surface and back, and their maxima (float64)."""
    on_mesh = sample_surface(mesh.v_pos, mesh.t_pos_idx, 10000, gen)
    to_surface = sdf_fn(on_mesh).abs()  # exact: both SDFs are true distance functions
    to_mesh = mesh_distance(surface_points, mesh)
    return 0.5 * (to_surface.mean() + to_mesh.mean()), max(to_surface.max(), to_mesh.max())


@pytest.mark.parametrize("shape", ["sphere", "torus"])
def test_chamfer_to_analytic_surface_is_below_half_a_cell_at_64(shape):
    grid = generate_tet_grid(64)  # the unit cube: a cell of the 64 grid is 1/64
    gen = torch.Generator().manual_seed(1)
    if shape == "sphere":
        fn, points = (lambda p: sphere_sdf(p, 0.35)), sphere_points(10000, 0.35, gen)
    else:
        fn, points = (lambda p: torus_sdf(p, 0.3, 0.12)), torus_points(10000, 0.3, 0.12, gen)
    mesh = extract(grid, fn(grid.vertices.double()))
    mean, worst = chamfer(mesh, fn, points, gen)
    half_cell = 0.5 / 64
    assert mean < half_cell and worst < half_cell, (float(mean), float(worst))


def test_chamfer_on_nvdiffrec_grid_64(nvdiffrec_tets):
    grid = load_tet_grid(nvdiffrec_tets / "64_tets.npz")
    gen = torch.Generator().manual_seed(2)
    fn = lambda p: sphere_sdf(p, 0.35)  # noqa: E731
    mesh = extract(grid, fn(grid.vertices.double()))
    topo = topology(mesh.t_pos_idx, mesh.num_vertices)
    assert topo["euler"] == 2 and topo["closed_manifold_edges"] and topo["consistently_oriented"]
    mean, worst = chamfer(mesh, fn, sphere_points(10000, 0.35, gen), gen)
    assert mean < 0.5 / 64 and worst < 0.5 / 64


def test_vertices_are_welded_one_per_crossing_edge(grid32):
    noise = torch.randn(grid32.num_vertices, generator=torch.Generator().manual_seed(0))
    sdf = sphere_sdf(grid32.vertices, 0.3) + 0.01 * noise
    mesh = extract(grid32, sdf)
    inside = sdf > 0
    crossing = (inside[grid32.edges[:, 0]] != inside[grid32.edges[:, 1]]).sum()
    assert mesh.num_vertices == crossing
    assert torch.unique(mesh.v_pos, dim=0).shape[0] == mesh.num_vertices, "no duplicated vertex positions"
    # Each vertex lies on its edge at the linear zero crossing of the SDF.
    assert mesh.v_pos.norm(dim=1).sub(0.3).abs().max() < 0.05


def test_zero_crossing_is_exact_for_linear_sdf(grid32):
    normal = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    normal = normal / normal.norm()
    sdf = 0.1 - grid32.vertices.double() @ normal
    mesh = extract(grid32, sdf)
    assert (mesh.v_pos @ normal - 0.1).abs().max() < 1e-12


def test_gradients_match_finite_differences():
    grid = generate_tet_grid(4)  # 2 cubes per side: 59 vertices
    gen = torch.Generator().manual_seed(3)
    verts = grid.vertices.double() + 0.02 * torch.randn(grid.num_vertices, 3, generator=gen, dtype=torch.float64)
    sdf = sphere_sdf(verts, 0.3) + 0.05 * torch.randn(grid.num_vertices, generator=gen, dtype=torch.float64)
    sdf = torch.where(sdf.abs() < 1e-2, sdf.sign() * 1e-2 + (sdf == 0) * 1e-2, sdf)  # no sign flip within eps
    verts.requires_grad_(True)
    sdf.requires_grad_(True)

    def positions(v, s):
        return marching_tetrahedra(v, s, grid.tets, edges=grid.edges, tet_edges=grid.tet_edges).v_pos

    assert positions(verts, sdf).shape[0] > 10
    assert torch.autograd.gradcheck(positions, (verts, sdf), eps=1e-6, atol=1e-6)


def test_empty_surface_is_an_empty_mesh_on_the_graph(grid32):
    for value in (1.0, -1.0):
        sdf = torch.full((grid32.num_vertices,), value, requires_grad=True)
        verts = grid32.vertices.clone().requires_grad_(True)
        mesh = marching_tetrahedra(verts, sdf, grid32.tets, with_uv=True)
        assert mesh.is_empty and mesh.v_pos.shape == (0, 3) and mesh.t_pos_idx.shape == (0, 3)
        assert mesh.t_pos_idx.dtype == torch.int64 and mesh.v_pos.dtype == torch.float32
        assert mesh.v_tex.shape == (0, 2) and mesh.t_tex_idx.shape == (0, 3)
        mesh.v_pos.sum().backward()
        assert sdf.grad is not None and (sdf.grad == 0).all() and (verts.grad == 0).all()


def test_per_triangle_uvs_for_the_volumetric_pass(grid32):
    mesh = extract(grid32, sphere_sdf(grid32.vertices, 0.35), with_uv=True)
    assert mesh.t_tex_idx.shape == mesh.t_pos_idx.shape
    uv = mesh.v_tex[mesh.t_tex_idx]  # [F, 3, 2]
    assert uv.min() >= 0 and uv.max() <= 1
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    assert (area.abs() > 0).all()
    # Each crossed tet owns one square cell of a ceil(sqrt(T)) grid: faces of one tet share it,
    # faces of different tets never do.
    n = math.ceil(math.sqrt(grid32.num_tets))
    cell = (uv.mean(1) * n).floor().long()
    cell = cell[:, 1] * n + cell[:, 0]
    tet = mesh.t_tex_idx[:, 0] // 4
    pairs = torch.unique(tet * n * n + cell).numel()
    assert pairs == torch.unique(tet).numel() == torch.unique(cell).numel()


def test_bad_inputs_are_clear_errors(grid32):
    with pytest.raises(ValueError, match="verts must be float"):
        marching_tetrahedra(grid32.vertices[:, :2], torch.zeros(grid32.num_vertices), grid32.tets)
    with pytest.raises(ValueError, match="sdf must be float"):
        marching_tetrahedra(grid32.vertices, torch.zeros(3), grid32.tets)
    with pytest.raises(ValueError, match="tets must be integer"):
        marching_tetrahedra(grid32.vertices, torch.zeros(grid32.num_vertices), grid32.tets.float())


@pytest.mark.gpu
def test_cuda_extraction_matches_cpu():
    from dmtrec.geometry import DMTetGeometry

    grid = generate_tet_grid(32)
    sdf = torus_sdf(grid.vertices, 0.3, 0.12)
    cpu = extract(grid, sdf, with_uv=True)
    gpu = extract(grid.to("cuda"), sdf.cuda(), with_uv=True)
    assert torch.equal(gpu.t_pos_idx.cpu(), cpu.t_pos_idx) and torch.equal(gpu.t_tex_idx.cpu(), cpu.t_tex_idx)
    assert torch.allclose(gpu.v_pos.cpu(), cpu.v_pos, atol=1e-6)
    geo = DMTetGeometry(resolution=32, init="sphere").cuda()
    mesh = geo.mesh()
    (mesh.v_pos.square().sum() + geo.sdf_reg_loss()).backward()
    assert mesh.v_pos.is_cuda and geo.sdf.grad.is_cuda and torch.isfinite(geo.deform.grad).all()
    assert geo.deform.grad.abs().sum() > 0
