import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from geometry_checks import signed_volume, topology

from dmtrec.geometry import FlexiCubesGeometry, Mesh, sdf_reg_loss, sphere_sdf, torus_sdf
from dmtrec.geometry.flexicubes import (
    EDGE_PATCH,
    EDGES,
    NUM_PATCHES,
    flexicubes,
    grid_edges,
    normalize_weights,
    voxel_grid,
)

flexicubes_module = importlib.import_module("dmtrec.geometry.flexicubes")


def corner_bits(c: int) -> tuple[int, int, int]:
    return c & 1, c >> 1 & 1, c >> 2 & 1


def edge_counts(faces: torch.Tensor, num_vertices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces per undirected edge and uses per directed edge."""
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    lo, hi = directed.min(1).values, directed.max(1).values
    _, undirected = torch.unique(lo * num_vertices + hi, return_counts=True)
    _, per_directed = torch.unique(directed[:, 0] * num_vertices + directed[:, 1], return_counts=True)
    return undirected, per_directed


# ------------------------------------------------------------------------------------ tables
def test_patch_counts_of_hand_picked_cases():
    # One corner in: one patch over its 3 edges; two corners on a face diagonal: cut off apart
    # (the resolution every cube shares); four mutually non-adjacent corners: four patches;
    # a whole face in: one patch over the 4 edges leaving it.
    single = 1 << 0
    assert NUM_PATCHES[single] == 1 and (EDGE_PATCH[single] >= 0).sum() == 3
    diagonal = 1 << 0 | 1 << 3  # (0,0,0) and (1,1,0)
    assert NUM_PATCHES[diagonal] == 2 and (EDGE_PATCH[diagonal] >= 0).sum() == 6
    tetra = 1 << 0 | 1 << 3 | 1 << 5 | 1 << 6
    assert NUM_PATCHES[tetra] == 4 and (EDGE_PATCH[tetra] >= 0).sum() == 12
    face = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 3
    assert NUM_PATCHES[face] == 1 and (EDGE_PATCH[face] >= 0).sum() == 4
    assert NUM_PATCHES[0] == NUM_PATCHES[255] == 0


def test_every_case_crosses_exactly_the_sign_changing_edges():
    for case in range(256):
        inside = [case >> c & 1 for c in range(8)]
        crossing = {
            (a, b)
            for a in range(8)
            for b in range(a + 1, 8)
            if sum(x != y for x, y in zip(corner_bits(a), corner_bits(b))) == 1 and inside[a] != inside[b]
        }
        assert (EDGE_PATCH[case] >= 0).sum() == len(crossing), case
        # every patch is a loop of at least 3 crossed edges
        sizes = [(EDGE_PATCH[case] == p).sum() for p in range(NUM_PATCHES[case])]
        assert all(s >= 3 for s in sizes), case


# ------------------------------------------------------------------------------------ topology
@pytest.mark.parametrize("training", [False, True])
def test_sphere_at_32_is_watertight_with_euler_2(training):
    verts, cubes = voxel_grid(32)
    verts = verts * 2.0
    radius = 0.7
    result = flexicubes(verts, sphere_sdf(verts, radius), 32, training=training, cubes=cubes)
    mesh = result.mesh
    topo = topology(mesh.t_pos_idx, mesh.num_vertices)
    assert topo["euler"] == 2 and topo["closed_manifold_edges"] and topo["consistently_oriented"]
    assert topo["V"] == mesh.num_vertices, "no unused vertices"
    # Outward winding (positive volume) close to the sphere's; vertices near the sphere.
    assert signed_volume(mesh.v_pos, mesh.t_pos_idx) == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.02)
    assert mesh.v_pos.norm(dim=1).sub(radius).abs().max() < 0.02
    quads = mesh.num_faces // (4 if training else 2)
    # Euler: V_dual - 2 Q + Q = 2 for a closed quad mesh (every quad edge shared by two quads).
    assert result.num_dual - quads == 2


@pytest.mark.parametrize("training", [False, True])
def test_torus_has_euler_0(training):
    verts, cubes = voxel_grid(32)
    verts = verts * 2.0
    mesh = flexicubes(verts, torus_sdf(verts, 0.55, 0.22), 32, training=training, cubes=cubes).mesh
    topo = topology(mesh.t_pos_idx, mesh.num_vertices)
    assert topo["euler"] == 0 and topo["closed_manifold_edges"] and topo["consistently_oriented"]


def random_blocks(blocks_per_side: int, seed: int) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``blocks_per_side^3`` independent random SDF grids in one lattice: blocks of 5^3 cells whose
    4^3 inner vertices are uniform in [-1, 1] and whose border vertices (shared with the next
    block) are outside, so that no quad joins two blocks. Returns the resolution, the (randomly
    deformed) vertices, the SDF and the block of every vertex."""
    gen = torch.Generator().manual_seed(seed)
    res = 5 * blocks_per_side
    verts, _ = voxel_grid(res)
    ijk = torch.round((verts + 0.5) * res).long()
    sdf = torch.rand(verts.shape[0], generator=gen) * 2 - 1
    sdf[(ijk % 5 == 0).any(1)] = -1.0
    block = ((ijk // 5).clamp(max=blocks_per_side - 1) * torch.tensor([blocks_per_side**2, blocks_per_side, 1])).sum(1)
    moved = verts + (torch.rand(verts.shape, generator=gen) - 0.5) / res
    return res, moved, sdf, block


def non_manifold_blocks(mesh: Mesh, face_block: torch.Tensor) -> tuple[set, set]:
    """Blocks holding an edge with more than two faces, and blocks with an inconsistently oriented edge."""
    f, nv = mesh.t_pos_idx, mesh.num_vertices
    directed = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    owner = face_block.repeat(3)
    lo, hi = directed.min(1).values, directed.max(1).values
    _, inv, counts = torch.unique(lo * nv + hi, return_inverse=True, return_counts=True)
    _, dinv, dcounts = torch.unique(directed[:, 0] * nv + directed[:, 1], return_inverse=True, return_counts=True)
    return set(owner[counts[inv] > 2].tolist()), set(owner[dcounts[dinv] > 1].tolist())


@pytest.mark.parametrize("training", [False, True])
def test_1000_random_grids_give_closed_manifold_consistently_oriented_output(training):
    """1000 random SDF grids (many ambiguous faces and C16/C19 pairs) with random α, β, γ and
    deformations, extracted at once: every edge has exactly two faces, neighbours are oriented
    consistently and no triangle repeats a vertex, in every grid."""
    res, verts, sdf, block = random_blocks(10, seed=0)
    weights = torch.randn(res**3, 21, generator=torch.Generator().manual_seed(1)) * 2
    mesh = flexicubes(verts, sdf, res, weights[:, :12], weights[:, 12:20], weights[:, 20], training=training).mesh
    f = mesh.t_pos_idx
    # A face's block: that of the grid vertex nearest its first dual vertex's cube (dual vertices
    # stay inside their cube's deformed hull, which overlaps no other block's cubes).
    cell = torch.floor((mesh.v_pos[f[:, 0]] + 0.5) * res).long().clamp(0, res - 1) // 5
    face_block = (cell * torch.tensor([100, 10, 1])).sum(1)
    assert torch.unique(face_block).numel() == 1000, "every grid has a surface"
    over, misoriented = non_manifold_blocks(mesh, face_block)
    assert not over, f"non-manifold edges in grids {sorted(over)[:10]}"
    assert not misoriented, f"inconsistent orientation in grids {sorted(misoriented)[:10]}"
    undirected, _ = edge_counts(f, mesh.num_vertices)
    assert bool((undirected == 2).all()), "closed: every grid's border is outside"
    assert not bool(((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])).any())
    assert bool(torch.isfinite(mesh.v_pos).all())


def test_random_grids_cut_by_the_lattice_border_stay_edge_manifold():
    """Unpadded 4^3 random grids: surfaces cut open by the border (its quads are dropped)."""
    gen = torch.Generator().manual_seed(2)
    res = 4
    verts, cubes = voxel_grid(res)
    for i in range(100):
        sdf = torch.rand(verts.shape[0], generator=gen) * 2 - 1
        weights = torch.randn(res**3, 21, generator=gen) * 2
        mesh = flexicubes(
            verts, sdf, res, weights[:, :12], weights[:, 12:20], weights[:, 20], training=i % 2 == 1, cubes=cubes
        ).mesh
        if mesh.num_faces:
            undirected, directed = edge_counts(mesh.t_pos_idx, mesh.num_vertices)
            assert int(undirected.max()) <= 2 and int(directed.max()) == 1, f"grid {i}"


def test_without_the_ambiguity_resolution_random_grids_are_not_manifold(monkeypatch):
    """The resolution is what makes the random tests pass (they can fail)."""
    monkeypatch.setattr(flexicubes_module, "_resolve_ambiguity", lambda case, surf, res: case)
    res, verts, sdf, block = random_blocks(10, seed=0)
    mesh = flexicubes(verts, sdf, res).mesh
    cell = torch.floor((mesh.v_pos[mesh.t_pos_idx[:, 0]] + 0.5) * res).long().clamp(0, res - 1) // 5
    over, _ = non_manifold_blocks(mesh, (cell * torch.tensor([100, 10, 1])).sum(1))
    assert len(over) > 100


def test_no_sign_change_gives_an_empty_mesh_on_the_graph():
    verts, cubes = voxel_grid(3)
    sdf = torch.ones(verts.shape[0], requires_grad=True)
    result = flexicubes(verts, sdf, 3, cubes=cubes)
    assert result.mesh.is_empty and result.mesh.v_pos.shape == (0, 3)
    (result.mesh.v_pos.sum() + result.l_dev.sum()).backward()
    assert torch.equal(sdf.grad, torch.zeros_like(sdf))


def test_training_split_adds_one_centre_per_quad_and_keeps_the_dual_vertices():
    verts, cubes = voxel_grid(8)
    sdf = sphere_sdf(verts, 0.3)
    gamma = torch.randn(8**3, generator=torch.Generator().manual_seed(1))
    infer = flexicubes(verts, sdf, 8, gamma=gamma, cubes=cubes).mesh
    train = flexicubes(verts, sdf, 8, gamma=gamma, training=True, cubes=cubes).mesh
    quads = infer.num_faces // 2
    assert train.num_faces == 4 * quads and train.num_vertices == infer.num_vertices + quads
    assert torch.equal(train.v_pos[: infer.num_vertices], infer.v_pos)
    # Both triangulate the same quads: nearly the same area on a smooth surface.
    assert area(train) == pytest.approx(area(infer), rel=0.02)


def area(mesh: Mesh) -> float:
    tri = mesh.v_pos[mesh.t_pos_idx]
    return float(torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1).norm(dim=1).sum() / 2)


def test_inference_split_follows_the_larger_gamma_product():
    # The plane x = 0.1 cuts the row of cubes at x index 2 (x in [0, 0.25]). Around each crossed
    # edge, the two cubes of one diagonal have equal parity of y + z; favouring one parity with
    # a large γ makes its diagonal the larger product in every quad, so each quad's split edge
    # must join two favoured cubes' dual vertices.
    res = 4
    verts, cubes = voxel_grid(res)
    sdf = 0.1 - verts[:, 0]  # inside for x < 0.1
    ijk = torch.stack(torch.meshgrid(*(torch.arange(res),) * 3, indexing="ij"), -1).reshape(-1, 3)
    even = (ijk[:, 1] + ijk[:, 2]) % 2 == 0
    for favoured in (even, ~even):
        gamma = torch.where(favoured, 3.0, -3.0)
        mesh = flexicubes(verts, sdf, res, gamma=gamma, cubes=cubes).mesh
        # Dual vertices sit at the patch centroid (uniform β, α): their (y, z) give their cube.
        yz = torch.floor((mesh.v_pos[:, 1:] + 0.5) * res).long()
        fav_vertex = favoured.reshape(res, res, res)[2, yz[:, 0], yz[:, 1]]
        f = mesh.t_pos_idx
        assert f.shape[0] == 2 * 9  # 3 x 3 interior crossed edges
        for a, b in ((0, 1), (1, 2), (2, 0)):
            diagonal = (yz[f[:, a]] - yz[f[:, b]]).abs().sum(1) == 2
            assert bool((fav_vertex[f[diagonal, a]] & fav_vertex[f[diagonal, b]]).all())


# ------------------------------------------------------------------------------------ L_dev
def test_l_dev_is_zero_for_an_axis_plane_and_positive_for_a_tilted_one():
    verts, cubes = voxel_grid(4)
    flat = flexicubes(verts, 0.1 - verts[:, 0], 4, cubes=cubes)
    assert flat.l_dev.abs().max() < 1e-6  # square patches, dual vertex at their centre
    tilted = flexicubes(verts, 0.1 - verts[:, 0] - 0.6 * verts[:, 1] + 0.3 * verts[:, 2], 4, cubes=cubes)
    assert tilted.l_dev.max() > 1e-3


def reference_l_dev(verts, cubes, sdf, beta, alpha, cases, alpha_shifted_distances=False) -> dict:
    """L_dev per (cube, crossed edge) in float64, one patch at a time, as the reference
    implementations define it (nv-tlabs/FlexiCubes and kaolin: ``_compute_reg_loss`` is given the
    zero crossings interpolated with the plain SDF, the dual vertex the β-weighted mean of the
    α-weighted crossings). ``cases``: the patch table row of every cube (the topology, which this
    does not check). ``alpha_shifted_distances`` measures to the α-weighted crossings instead
    (dmtrec's former definition), to show that the test tells the two apart."""
    b_n, a_n, _ = normalize_weights(beta.double(), alpha.double(), torch.zeros(cubes.shape[0]))
    v, f = verts.double().tolist(), sdf.double().tolist()

    def crossing(va, vb, wa, wb):
        t = wa / (wa - wb)
        return [pa + t * (pb - pa) for pa, pb in zip(v[va], v[vb])]

    out = {}
    for cube in range(cubes.shape[0]):
        corner = cubes[cube].tolist()
        case = cases[cube]
        for p in range(NUM_PATCHES[case]):
            edges = [e for e in range(12) if EDGE_PATCH[case][e] == p]
            shifted, plain, ws = [], [], []
            for e in edges:
                ca, cb = (int(c) for c in EDGES[e])
                va, vb = corner[ca], corner[cb]
                shifted.append(crossing(va, vb, f[va] * float(a_n[cube, ca]), f[vb] * float(a_n[cube, cb])))
                plain.append(crossing(va, vb, f[va], f[vb]))
                ws.append(float(b_n[cube, e]))
            centre = [sum(w * q[k] for w, q in zip(ws, shifted)) / sum(ws) for k in range(3)]
            targets = shifted if alpha_shifted_distances else plain
            d = [math.dist(q, centre) for q in targets]
            mean = sum(d) / len(d)
            for e, x in zip(edges, d):
                out[cube, e] = abs(x - mean)
    return out


def test_l_dev_matches_the_reference_formula_on_random_weights():
    # A random field on a 4^3 grid: single- and multi-patch cubes, ambiguous faces; random α, β, γ
    # (γ must not matter) and a deformed grid.
    res = 4
    verts, cubes = voxel_grid(res)
    gen = torch.Generator().manual_seed(3)
    verts = verts.double() + (torch.rand(verts.shape, generator=gen, dtype=torch.float64) - 0.5) / (2 * res)
    sdf = torch.rand(verts.shape[0], generator=gen, dtype=torch.float64) * 2 - 1
    w = torch.randn(res**3, 21, generator=gen, dtype=torch.float64) * 2
    beta, alpha, gamma = w[:, :12], w[:, 12:20], w[:, 20]
    result = flexicubes(verts, sdf, res, beta, alpha, gamma, training=True, cubes=cubes)
    # The patches as dmtrec resolves ambiguous face pairs (the reference flips the same C16/C19
    # pairs to the complementary case); some cubes here are flipped.
    occupancy = ((sdf[cubes] > 0).long() << torch.arange(8)).sum(1)
    all_cubes = torch.arange(res**3)
    cases = flexicubes_module._resolve_ambiguity(occupancy, all_cubes, res).tolist()
    assert cases != occupancy.tolist()
    # dmtrec orders the terms by (surface cube, edge).
    expected = reference_l_dev(verts, cubes, sdf, beta, alpha, cases)
    assert len(expected) == result.l_dev.numel() > 100
    assert result.l_dev.tolist() == pytest.approx([expected[k] for k in sorted(expected)], abs=1e-12)
    # The α-shifted definition differs by far more than the tolerance: the test discriminates.
    shifted = reference_l_dev(verts, cubes, sdf, beta, alpha, cases, alpha_shifted_distances=True)
    assert max(abs(shifted[k] - expected[k]) for k in expected) > 1e-3
    # Uniform α: both definitions agree (the crossings are the plain ones).
    uniform = flexicubes(verts, sdf, res, beta, None, gamma, cubes=cubes).l_dev
    same = reference_l_dev(verts, cubes, sdf, beta, torch.zeros_like(alpha), cases, alpha_shifted_distances=True)
    assert uniform.tolist() == pytest.approx([same[k] for k in sorted(same)], abs=1e-12)


# ------------------------------------------------------------------------------------ gradients
def _smooth_inputs():
    res = 3
    verts, cubes = voxel_grid(res)
    verts = verts.double()
    gen = torch.Generator().manual_seed(5)
    sdf = (
        sphere_sdf(verts, 0.33, center=(0.04, -0.03, 0.02)) + 0.01 * torch.randn(verts.shape[0], generator=gen).double()
    )
    assert sdf.abs().min() > 1e-3  # FD steps never flip a sign
    weights = torch.randn(res**3, 21, generator=gen, dtype=torch.float64)
    return res, cubes, verts, sdf, weights


@pytest.mark.parametrize("wrt", ["sdf", "deformation", "alpha", "beta", "gamma"])
def test_finite_differences_float64(wrt):
    res, cubes, verts, sdf, weights = _smooth_inputs()
    inputs = {
        "sdf": sdf,
        "deformation": torch.zeros_like(verts),
        "alpha": weights[:, 12:20],
        "beta": weights[:, :12],
        "gamma": weights[:, 20],
    }
    x = inputs[wrt].clone().requires_grad_(True)

    def run(value):
        args = {**inputs, wrt: value}
        result = flexicubes(
            verts + 0.1 / res * torch.tanh(args["deformation"]),
            args["sdf"],
            res,
            args["beta"],
            args["alpha"],
            args["gamma"],
            training=True,
            cubes=cubes,
        )
        return result.mesh.v_pos, result.l_dev

    assert torch.autograd.gradcheck(run, (x,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)
    if wrt == "gamma":  # γ only moves the training split's centres
        v_pos, _ = run(x)
        (grad,) = torch.autograd.grad(v_pos.sum(), x)
        assert grad.abs().max() > 1e-6


# ------------------------------------------------------------------------------------ module
def test_geometry_bounds_offsets_by_half_a_cell_and_checkpoints_parameters_only():
    geo = FlexiCubesGeometry(resolution=8, scale=2.0, init="sphere")
    assert geo.offset_bound == pytest.approx(0.5 * 2.0 / 8)
    with torch.no_grad():
        geo.deform.copy_(torch.randn_like(geo.deform) * 1e3)
    moved = (geo.deformed_vertices() - geo.grid_verts).abs()
    assert moved.max() <= geo.offset_bound * (1 + 1e-6) and moved.max() > 0.99 * geo.offset_bound
    assert set(geo.state_dict()) == {"sdf", "deform", "weights"}
    assert geo.weights.shape == (8**3, 21) and geo.sdf.shape == (9**3,)
    lo, hi = geo.grid_aabb()
    assert torch.allclose(lo, torch.full((3,), -1.0)) and torch.allclose(hi, torch.full((3,), 1.0))


def test_geometry_random_init_is_seeded_like_dmtet():
    a, b = FlexiCubesGeometry(resolution=8, seed=3), FlexiCubesGeometry(resolution=8, seed=3)
    assert torch.equal(a.sdf, b.sdf) and a.sdf.min() >= -0.1 and a.sdf.max() < 0.9


def test_geometry_mesh_has_render_attributes_and_the_split_follows_the_mode():
    geo = FlexiCubesGeometry(resolution=16, scale=2.0, init="sphere", sphere_radius=0.6)
    mesh = geo.mesh()  # train mode, grad on: 4 triangles per quad
    assert (F.cosine_similarity(mesh.v_nrm, mesh.v_pos, dim=1) > 0.95).all()
    assert mesh.v_tex is not None and mesh.v_tng.shape[-1] == 4 and mesh.t_tng_idx.shape == mesh.t_pos_idx.shape
    assert mesh.v_tex.min() >= 0 and mesh.v_tex.max() <= 1
    mesh.validate("flexicubes")
    loss = mesh.v_pos.sum() + geo.dev_loss() + geo.sdf_reg_loss()
    loss.backward()
    assert geo.sdf.grad.abs().sum() > 0 and geo.deform.grad.abs().sum() > 0 and geo.weights.grad.abs().sum() > 0
    with torch.no_grad():
        inference = geo.mesh()
    assert mesh.num_faces == 2 * inference.num_faces
    geo.eval()
    assert geo.mesh().num_faces == inference.num_faces
    # Frozen weights (model.dmtet.weight_lr 0): no γ to learn, training renders the inference split
    # (the same triangles as the graph-free extraction) and the positions keep their gradient.
    geo.train()
    geo.weights.requires_grad_(False)
    geo.zero_grad(set_to_none=True)
    frozen = geo.mesh()
    assert torch.equal(frozen.t_pos_idx, inference.t_pos_idx) and torch.equal(frozen.v_pos, inference.v_pos)
    frozen.v_pos.sum().backward()
    assert geo.sdf.grad.abs().sum() > 0 and geo.weights.grad is None
    geo.weights.requires_grad_(True)
    lo, hi = geo.aabb()
    assert torch.allclose(lo, torch.full((3,), -0.6), atol=0.02) and torch.allclose(
        hi, torch.full((3,), 0.6), atol=0.02
    )


def test_geometry_mesh_init_reproduces_the_mesh(icosphere):
    sphere = icosphere(radius=0.5)
    geo = FlexiCubesGeometry(resolution=16, scale=2.0, init="mesh", init_mesh=Mesh(*sphere))
    with torch.no_grad():
        v = geo.mesh().v_pos
    assert v.norm(dim=1).sub(0.5).abs().max() < 0.03


def test_grid_edges_are_the_lattice_edges():
    edges = grid_edges(3)
    assert edges.shape == (3 * 3 * 16, 2)
    verts, _ = voxel_grid(3)
    lengths = (verts[edges[:, 0]] - verts[edges[:, 1]]).norm(dim=1)
    assert torch.allclose(lengths, torch.full_like(lengths, 1 / 3))
    assert torch.unique(edges, dim=0).shape[0] == edges.shape[0]
    geo = FlexiCubesGeometry(resolution=3, init="sphere")
    assert torch.equal(geo.sdf_reg_loss(), sdf_reg_loss(geo.sdf, edges))


# ------------------------------------------------------------------------------------ cost warning
def test_slow_grids_warn_once_with_the_expected_time_per_step(caplog):
    from dmtrec.geometry.flexicubes import expected_step_seconds, warn_if_slow

    clean, messy = expected_step_seconds(48)
    assert clean == pytest.approx(1.06e-6 * 48**3) and messy == pytest.approx(7.9e-6 * 48**3)
    assert expected_step_seconds(38, learned_weights=False) == pytest.approx((5.6e-7 * 38**3, 4.3e-6 * 38**3))
    with caplog.at_level("WARNING", logger="dmtrec.geometry.flexicubes"):
        # the largest quiet grids: 39^3 * 7.9e-6 = 0.47 s learned, 48^3 * 4.3e-6 = 0.48 s frozen
        assert not warn_if_slow(39) and not warn_if_slow(48, learned_weights=False)
        assert not warn_if_slow(38, learned_weights=False)  # the quick start's grid
        assert not caplog.records
        assert warn_if_slow(40)
        assert "grid 40" in caplog.text and f"{7.9e-6 * 40**3:.2f} s per step" in caplog.text
        assert warn_if_slow(49, learned_weights=False) and "frozen weights" in caplog.text
        caplog.clear()
        geo = FlexiCubesGeometry(resolution=44, init="sphere")
        with torch.no_grad():
            geo.mesh(with_uv=False)
            geo.mesh(with_uv=False)
        assert len(caplog.records) == 1 and "grid 44" in caplog.text and "0.67 s per step" in caplog.text
        caplog.clear()
        frozen = FlexiCubesGeometry(resolution=44, init="sphere")
        frozen.weights.requires_grad_(False)
        with torch.no_grad():
            frozen.mesh(with_uv=False)
    assert not caplog.records  # 44^3 * 4.3e-6 = 0.37 s
