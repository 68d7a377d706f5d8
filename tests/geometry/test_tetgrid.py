import numpy as np
import pytest
import torch

from dmtrec.geometry.tetgrid import (
    TET_EDGES,
    TetGridError,
    cubes_per_side,
    generate_bcc,
    generate_tet_grid,
    load_tet_grid,
    tet_grid,
)

# nvdiffrec's quartet grids (../shared/data/tets): vertices / tets.
NVDIFFREC_COUNTS = {32: (6641, 30136), 64: (36562, 192492)}


def tet_volumes(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    a, b, c, d = (v[t[:, i]] for i in range(4))
    return np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a) / 6


def face_incidence(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique triangular faces of a tet mesh and how many tets hold each."""
    faces = np.sort(t[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3), axis=1)
    return np.unique(faces, axis=0, return_counts=True)


def check_conforming_cube_tetrahedralization(v: np.ndarray, t: np.ndarray) -> None:
    vol = tet_volumes(v, t)
    assert vol.min() > 0, "every tet must have positive volume"
    assert vol.sum() == pytest.approx(1.0, abs=1e-5), "tets must fill the unit cube exactly once"
    faces, counts = face_incidence(t)
    assert counts.max() == 2, "no face may be shared by more than two tets"
    # Faces held by one tet must lie on the cube's surface; all others are interior and shared by two.
    boundary = faces[counts == 1]
    on_side = np.zeros(len(boundary), dtype=bool)
    for axis in range(3):
        for side in (-0.5, 0.5):
            on_side |= (np.abs(v[boundary][..., axis] - side) < 1e-6).all(1)
    assert on_side.all(), "a face held by a single tet lies inside the cube: the grid is not conforming"
    # The boundary faces tile the cube surface (area 6), so nothing is missing there either.
    tri = v[boundary].astype(np.float64)
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum() / 2
    assert area == pytest.approx(6.0, abs=1e-5)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_small_bcc_grids_are_conforming_cube_tetrahedralizations(n):
    v, t = generate_bcc(n)
    assert len(v) == (n + 1) ** 3 + n**3 + 6 * n * n and len(t) == 12 * n**3 + 12 * n * n
    assert np.abs(v).max() <= 0.5 + 1e-7
    check_conforming_cube_tetrahedralization(v, t)


def test_resolution_32_grid_is_conforming_and_sized_like_nvdiffrec():
    grid = generate_tet_grid(32, cache=False)
    check_conforming_cube_tetrahedralization(grid.vertices.numpy(), grid.tets.numpy())
    nv, nt = NVDIFFREC_COUNTS[32]
    assert 0.85 < grid.num_vertices / nv < 1.15 and 0.85 < grid.num_tets / nt < 1.15


def test_resolution_names_match_nvdiffrec_density():
    for res, (nv, nt) in NVDIFFREC_COUNTS.items():
        n = cubes_per_side(res)
        verts, tets = (n + 1) ** 3 + n**3 + 6 * n * n, 12 * n**3 + 12 * n * n
        assert 0.85 < verts / nv < 1.15 and 0.85 < tets / nt < 1.15, (res, verts, tets)
    with pytest.raises(ValueError, match="resolution"):
        cubes_per_side(0)


def test_grid_is_isotropic():
    grid = generate_tet_grid(32, cache=False)
    v, e = grid.vertices.double(), grid.edges
    length = (v[e[:, 0]] - v[e[:, 1]]).norm(dim=1)
    h = 1.0 / cubes_per_side(32)
    # Interior BCC edges are h and sqrt(3)/2 h; boundary tets add h/2 and h/sqrt(2).
    assert length.max() == pytest.approx(h, rel=1e-5)
    assert length.min() == pytest.approx(h / 2, rel=1e-5)
    assert ((length - h).abs() < 1e-5).sum() + ((length - h * 3**0.5 / 2).abs() < 1e-5).sum() > 0.8 * len(length)


def test_edge_topology_matches_tets():
    grid = generate_tet_grid(4, cache=False)
    e, te, t = grid.edges, grid.tet_edges, grid.tets
    assert (e[:, 0] < e[:, 1]).all()
    assert torch.unique(e[:, 0] * grid.num_vertices + e[:, 1]).numel() == len(e)
    for k, (a, b) in enumerate(TET_EDGES):
        expected = torch.stack([torch.minimum(t[:, a], t[:, b]), torch.maximum(t[:, a], t[:, b])], 1)
        assert torch.equal(e[te[:, k]], expected)


def test_generated_grid_is_cached_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("DMTREC_CACHE", str(tmp_path))
    first = generate_tet_grid(16)
    files = list((tmp_path / "tets").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz" and not files[0].name.startswith(".")
    again = generate_tet_grid(16)
    assert torch.equal(first.vertices, again.vertices) and torch.equal(first.tets, again.tets)
    assert torch.equal(first.tet_edges, again.tet_edges) and again.tets.dtype == torch.int64
    files[0].write_bytes(b"not an npz")  # a corrupt cache is regenerated, not fatal
    assert torch.equal(generate_tet_grid(16).tets, first.tets)
    assert torch.equal(tet_grid(16).tets, first.tets)


def test_nvdiffrec_grid_loads_with_positive_orientation(nvdiffrec_tets):
    grid = load_tet_grid(nvdiffrec_tets / "32_tets.npz")
    assert grid.resolution == 32
    assert (grid.num_vertices, grid.num_tets) == NVDIFFREC_COUNTS[32]
    assert tet_volumes(grid.vertices.numpy(), grid.tets.numpy()).min() > 0


def test_loaded_grid_is_reoriented(tmp_path):
    v, t = generate_bcc(2)
    flipped = t.copy()
    flipped[::2, [0, 1]] = flipped[::2, [1, 0]]
    np.savez(tmp_path / "8_tets.npz", vertices=v, indices=flipped.astype(np.int32))
    grid = load_tet_grid(tmp_path / "8_tets.npz")
    assert grid.resolution == 8 and tet_volumes(v, grid.tets.numpy()).min() > 0


def test_bad_grid_files_name_the_file(tmp_path):
    with pytest.raises(TetGridError, match="missing_tets.npz.*not found"):
        load_tet_grid(tmp_path / "missing_tets.npz", resolution=8)
    np.savez(tmp_path / "8_tets.npz", vertices=np.zeros((4, 3), np.float32))
    with pytest.raises(TetGridError, match="8_tets.npz.*indices"):
        load_tet_grid(tmp_path / "8_tets.npz")
    np.savez(tmp_path / "9_tets.npz", vertices=np.zeros((4, 3), np.float32), indices=np.array([[0, 1, 2, 7]]))
    with pytest.raises(TetGridError, match="9_tets.npz.*indices must be"):
        load_tet_grid(tmp_path / "9_tets.npz")
    with pytest.raises(TetGridError, match="resolution"):
        load_tet_grid(tmp_path / "grid.npz")
