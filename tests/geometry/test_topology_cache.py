"""The per-index-tensor topology cache (issue 28): pass 2's tangents, normals and Laplacian are
the same with and without it, and it rebuilds when the topology (or the UV orientation the
tangent groups depend on) changes."""

import torch
from common import SPOT_OBJ

import dmtrec.geometry.normals as normals
from dmtrec.geometry import Mesh, MeshGeometry, compute_normals, compute_tangents, laplacian_loss, topology_cache
from dmtrec.io.mesh_files import read_mesh


def hard_spot() -> Mesh:
    """Spot (UV seams, mirrored charts) with zero-UV-area faces (all corners on one UV vertex)
    and a face that repeats a position index."""
    mesh, _ = read_mesh(SPOT_OBJ)
    t_tex = mesh.t_tex_idx.clone()
    t_tex[10:40] = t_tex[10:40, :1]  # UV-degenerate: these faces take a neighbour's orientation
    t_pos = mesh.t_pos_idx.clone()
    t_pos[100, 2] = t_pos[100, 0]
    return Mesh(v_pos=mesh.v_pos.clone(), t_pos_idx=t_pos, v_tex=mesh.v_tex.clone(), t_tex_idx=t_tex)


def frame_and_grad(mesh: Mesh):
    """Normals, tangents, tangent indices and the gradient of a fixed functional of them."""
    v_pos = mesh.v_pos.detach().clone().requires_grad_(True)
    out = compute_tangents(compute_normals(mesh.copy(v_pos=v_pos)))
    gen = torch.Generator().manual_seed(1)
    w_t, w_n = torch.randn(out.v_tng.shape, generator=gen), torch.randn(out.v_nrm.shape, generator=gen)
    ((out.v_tng * w_t).sum() + (out.v_nrm * w_n).sum()).backward()
    return out.v_nrm.detach(), out.v_tng.detach(), out.t_tng_idx, v_pos.grad


def assert_same(a, b):
    """Values bit-identical; the gradient (last) to float32 rounding: with two threads the
    backward's scatter-adds sum in a varying order, cache or not."""
    for x, y in zip(a[:-1], b[:-1]):
        assert torch.equal(x, y)
    assert (a[-1] - b[-1]).abs().max() <= 1e-6 * b[-1].abs().max()


def test_cached_tangents_equal_the_uncached_ones_in_value_and_gradient(monkeypatch):
    mesh = hard_spot()
    with topology_cache(False):
        fresh = frame_and_grad(mesh)
    assert (fresh[1][:, 3] < 0).any() and (fresh[1][:, 3] > 0).any()  # both orientations occur
    builds = []
    original = normals._corner_groups
    monkeypatch.setattr(normals, "_corner_groups", lambda *a: builds.append(1) or original(*a))
    with topology_cache(True):
        first, second = frame_and_grad(mesh), frame_and_grad(mesh.copy(v_pos=mesh.v_pos * 1.5 + 0.1))
        again = frame_and_grad(mesh)
    assert len(builds) == 1  # the moved mesh reused the groups of the first call
    assert_same(first, fresh)
    assert_same(again, fresh)
    with topology_cache(False):
        assert_same(second, frame_and_grad(mesh.copy(v_pos=mesh.v_pos * 1.5 + 0.1)))


def test_tangent_groups_rebuild_when_faces_or_orientation_change():
    mesh = hard_spot()
    with topology_cache(True):
        before = frame_and_grad(mesh)
        # In place, as load_state_dict writes buffers: weld all UV seams (one UV per position).
        mesh.t_tex_idx.copy_(mesh.t_pos_idx)
        mesh.v_tex.data = mesh.v_tex[:1].expand(mesh.num_vertices, 2).clone() + torch.rand(mesh.num_vertices, 2)
        welded = frame_and_grad(mesh)
        welded_tex = mesh.v_tex.clone()
        # Same index tensors, the UVs of the upper half mirrored: the orientation (an input of
        # the groups) flips on some faces, and mirrored faces never share a group.
        upper = mesh.v_pos[:, 1] > mesh.v_pos[:, 1].median()
        mesh.v_tex[upper, 0] = 1.0 - mesh.v_tex[upper, 0]
        mirrored = frame_and_grad(mesh)
    with topology_cache(False):
        welded_fresh = frame_and_grad(mesh.copy(v_tex=welded_tex))
        mirrored_fresh = frame_and_grad(mesh)
    assert before[2].shape == welded[2].shape and not torch.equal(before[2], welded[2])
    assert_same(welded, welded_fresh)
    assert not torch.equal(mirrored[2], welded[2])
    assert_same(mirrored, mirrored_fresh)


def test_mesh_geometry_follows_loaded_topology():
    """A MeshGeometry whose faces are replaced by load_state_dict (a resumed run) gives the
    frame of the loaded mesh, not of the cached one."""
    mesh = hard_spot()
    other, _ = read_mesh(SPOT_OBJ)
    with topology_cache(True):
        geometry = MeshGeometry.from_mesh(mesh)
        geometry.mesh()
        geometry.load_state_dict(MeshGeometry.from_mesh(other).state_dict())
        loaded = geometry.mesh()
    with topology_cache(False):
        expected = MeshGeometry.from_mesh(other).mesh()
    for key in ("v_nrm", "v_tng", "t_tng_idx"):
        assert torch.equal(getattr(loaded, key), getattr(expected, key))


def test_cached_laplacian_equals_the_uncached_one_and_follows_face_edits():
    mesh = hard_spot()
    reference = mesh.v_pos + 0.01 * torch.randn(mesh.v_pos.shape, generator=torch.Generator().manual_seed(2))

    def loss_and_grad():
        v_pos = mesh.v_pos.clone().requires_grad_(True)
        loss = laplacian_loss(v_pos, mesh.t_pos_idx, reference=reference)
        loss.backward()
        return loss.detach(), v_pos.grad

    with topology_cache(False):
        fresh = loss_and_grad()
    with topology_cache(True):
        assert_same(loss_and_grad(), fresh)
        assert_same(loss_and_grad(), fresh)
        mesh.t_pos_idx[:, [1, 2]] = mesh.t_pos_idx[:, [2, 1]].clone()  # same edges: same loss
        assert_same(loss_and_grad(), fresh)
        mesh.t_pos_idx[: mesh.num_faces // 2] = mesh.t_pos_idx[:1]  # fewer edges
        edited = loss_and_grad()
    with topology_cache(False):
        assert_same(edited, loss_and_grad())
    assert not torch.equal(edited[0], fresh[0])


def test_inference_tensors_are_built_afresh():
    # Lightning's test loop renders under torch.inference_mode: its tensors keep no version counter.
    import torch

    from dmtrec.geometry.topology import cached

    with torch.inference_mode():
        faces = torch.tensor([[0, 1, 2]], dtype=torch.int64)
    builds = []
    for _ in range(2):
        assert cached("inference_probe", [faces], lambda: builds.append(1) or len(builds)) == len(builds)
    assert len(builds) == 2
    assert cached("inference_probe_kept", [faces], lambda: "once", always=True) == "once"
    assert cached("inference_probe_kept", [faces], lambda: "again", always=True) == "once"
