import pytest
import torch

from dmtrec.geometry import Mesh, aabb, merge_meshes, normalize_to_unit_cube


def tetrahedron(offset=0.0) -> Mesh:
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 4]], dtype=torch.float32) + offset
    f = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return Mesh(v, f)


def test_empty_mesh_shapes():
    mesh = Mesh.empty()
    assert mesh.v_pos.shape == (0, 3) and mesh.t_pos_idx.shape == (0, 3)
    assert mesh.t_pos_idx.dtype == torch.int64 and mesh.is_empty and mesh.num_vertices == 0
    assert Mesh.empty(dtype=torch.float64).v_pos.dtype == torch.float64
    mesh.validate()


def test_validate_names_the_broken_field():
    mesh = tetrahedron()
    assert mesh.validate() is mesh
    with pytest.raises(ValueError, match="thing: t_pos_idx holds indices outside"):
        mesh.copy(t_pos_idx=mesh.t_pos_idx + 1).validate("thing")
    with pytest.raises(ValueError, match="v_tex must be float \\[N, 2\\]"):
        mesh.copy(v_tex=torch.zeros(4, 3), t_tex_idx=mesh.t_pos_idx).validate()
    with pytest.raises(ValueError, match="v_nrm and t_nrm_idx must be given together"):
        mesh.copy(v_nrm=torch.zeros(4, 3)).validate()
    with pytest.raises(ValueError, match="t_tex_idx has 1 faces"):
        mesh.copy(v_tex=torch.zeros(4, 2), t_tex_idx=mesh.t_pos_idx[:1]).validate()
    with pytest.raises(ValueError, match="non-finite"):
        mesh.copy(v_pos=torch.full((4, 3), float("nan"))).validate()


def test_normalize_to_unit_cube():
    mesh = tetrahedron(offset=3.0)
    out, centre, scale = normalize_to_unit_cube(mesh)
    lo, hi = aabb(out)
    assert torch.allclose(hi - lo, torch.tensor([0.25, 0.5, 1.0]))
    assert torch.allclose(lo + hi, torch.zeros(3), atol=1e-6)
    assert torch.allclose(out.v_pos / scale + centre, mesh.v_pos, atol=1e-6)
    assert torch.equal(out.t_pos_idx, mesh.t_pos_idx)
    out2, _, _ = normalize_to_unit_cube(mesh, side=2.0)  # nvdiffrec's unit_size
    assert torch.allclose(aabb(out2)[1], torch.tensor([0.25, 0.5, 1.0]), atol=1e-6)  # [-1, 1] on the long axis
    with pytest.raises(ValueError, match="no vertices"):
        aabb(Mesh.empty())


def test_merge_offsets_indices_and_keeps_common_attributes():
    a = tetrahedron()
    a.v_tex, a.t_tex_idx = torch.rand(5, 2), torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 3, 4]])
    b = tetrahedron(offset=10.0)
    b.v_tex, b.t_tex_idx = torch.rand(4, 2), b.t_pos_idx.clone()
    b.v_nrm, b.t_nrm_idx = torch.rand(4, 3), b.t_pos_idx.clone()
    b.material = "unused"
    a.material = "first"
    merged = merge_meshes([a, b])
    assert merged.num_vertices == 8 and merged.num_faces == 8
    assert torch.equal(merged.v_pos[merged.t_pos_idx[4:]], b.v_pos[b.t_pos_idx])
    assert torch.equal(merged.v_tex[merged.t_tex_idx[4:]], b.v_tex[b.t_tex_idx])
    assert torch.equal(merged.t_tex_idx[4:], b.t_tex_idx + 5)
    assert merged.v_nrm is None and merged.t_nrm_idx is None, "only one input had normals"
    assert merged.material == "first"
    merged.validate()
    with pytest.raises(ValueError, match="no meshes"):
        merge_meshes([])


def test_copy_and_to_keep_every_field():
    mesh = tetrahedron()
    mesh.v_tex, mesh.t_tex_idx = torch.rand(4, 2), mesh.t_pos_idx
    copied = mesh.copy(material="m")
    assert copied.v_tex is mesh.v_tex and copied.material == "m" and mesh.material is None
    moved = mesh.to("cpu")
    assert torch.equal(moved.v_tex, mesh.v_tex) and torch.equal(moved.t_tex_idx, mesh.t_tex_idx)


def test_drop_small_components_removes_floaters_only():
    from dmtrec.geometry.ops import drop_small_components

    # A big piece (an octahedron, 8 faces) and a floater (one triangle far away).
    octa = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    faces = [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    floater = torch.tensor([[5.0, 5, 5], [5.1, 5, 5], [5, 5.1, 5]])
    mesh = Mesh(torch.cat([floater, octa]), torch.tensor([[0, 1, 2]] + [[i + 3 for i in f] for f in faces]))
    cleaned = drop_small_components(mesh, 0.2)  # 1 face < 0.2 * 8
    assert cleaned.num_faces == 8 and cleaned.num_vertices == 6
    assert torch.equal(cleaned.v_pos[cleaned.t_pos_idx], octa[torch.tensor(faces)])
    assert drop_small_components(mesh, 0.1).num_faces == 9  # 1 face >= 0.1 * 8: kept
    assert drop_small_components(mesh, 0.0) is mesh  # nvdiffrec: keep everything
