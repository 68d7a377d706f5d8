import math

import pytest
import torch
import torch.nn.functional as F

from dmtrec.geometry import Mesh, compute_normals, compute_tangents, face_normals, marching_tetrahedra, vertex_normals
from dmtrec.geometry.sdf import sphere_sdf
from dmtrec.geometry.tetgrid import generate_tet_grid


def sphere_mesh(radius=0.4) -> Mesh:
    grid = generate_tet_grid(16)
    return marching_tetrahedra(grid.vertices.double(), sphere_sdf(grid.vertices.double(), radius), grid.tets)


def fan_mesh() -> Mesh:
    """Vertex 0 at the origin with two faces: a big one in the z=0 plane, a small one tilted."""
    v = torch.tensor([[0, 0, 0], [4, 0, 0], [0, 4, 0], [0, -1, 0], [0, 0, 1]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 3, 1]])  # both in z = 0, normals +z
    return Mesh(v, f)


@pytest.mark.parametrize("weighting", ["area", "angle"])
def test_sphere_vertex_normals_are_radial(weighting):
    mesh = sphere_mesh()
    n = vertex_normals(mesh.v_pos, mesh.t_pos_idx, weighting)
    assert torch.allclose(n.norm(dim=1), torch.ones(len(n), dtype=n.dtype))
    assert F.cosine_similarity(n, mesh.v_pos, dim=1).min() > 0.97


def test_area_and_angle_weighting_differ_as_defined():
    # Vertex 0 sees a right angle in a face of area 8 (normal +z) and a 45 degree corner in a face
    # of area 0.5 whose normal is +x; the weighted sums differ and match hand computation.
    v = torch.tensor([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.float64)
    v[1:3] *= 2
    f = torch.tensor([[0, 1, 2], [0, 4, 3]])  # z=0 plane (+z), x=0 plane: (0,1,1)x(0,0,1) = (1,0,0)
    area = vertex_normals(v, f, "area")[0]
    angle = vertex_normals(v, f, "angle")[0]
    expect_area = F.normalize(torch.tensor([0.5, 0, 8.0], dtype=torch.float64), dim=0)
    expect_angle = F.normalize(torch.tensor([math.pi / 4, 0, math.pi / 2], dtype=torch.float64), dim=0)
    assert torch.allclose(area, expect_area) and torch.allclose(angle, expect_angle)


def test_face_normals_follow_winding():
    mesh = fan_mesh()
    n = face_normals(mesh.v_pos, mesh.t_pos_idx)
    assert torch.allclose(n, torch.tensor([[0, 0, 1.0], [0, 0, 1.0]], dtype=torch.float64))
    raw = face_normals(mesh.v_pos, mesh.t_pos_idx, unit=False)
    assert torch.allclose(raw.norm(dim=1) / 2, torch.tensor([8.0, 2.0], dtype=torch.float64))


def test_isolated_and_degenerate_vertices_get_a_finite_default():
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [2, 0, 0], [5, 5, 5]], dtype=torch.float64, requires_grad=True)
    f = torch.tensor([[0, 1, 2]])  # zero area; vertex 3 unused
    for weighting in ("area", "angle"):
        n = vertex_normals(v, f, weighting)
        assert torch.allclose(n, torch.tensor([0, 0, 1.0], dtype=torch.float64).expand(4, 3))
        n.sum().backward()
        assert torch.isfinite(v.grad).all()
        v.grad = None


def test_normals_gradcheck():
    gen = torch.Generator().manual_seed(0)
    mesh = sphere_mesh(0.35)
    faces = mesh.t_pos_idx[:60]
    used = torch.unique(faces)
    remap = torch.full((mesh.num_vertices,), -1, dtype=torch.int64)
    remap[used] = torch.arange(len(used))
    faces = remap[faces]
    v = (mesh.v_pos[used] + 0.01 * torch.randn(len(used), 3, generator=gen, dtype=torch.float64)).requires_grad_()
    for weighting in ("area", "angle"):
        assert torch.autograd.gradcheck(
            lambda x: vertex_normals(x, faces, weighting), (v,), eps=1e-6, atol=1e-5, fast_mode=True
        )


def plane_mesh(uv_from_xy) -> Mesh:
    xs = torch.linspace(0, 1, 4, dtype=torch.float64)
    x, y = torch.meshgrid(xs, xs, indexing="xy")
    v = torch.stack([x.reshape(-1), y.reshape(-1), torch.zeros(16, dtype=torch.float64)], 1)
    quads = [(r * 4 + c, r * 4 + c + 1, r * 4 + c + 5, r * 4 + c + 4) for r in range(3) for c in range(3)]
    f = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return compute_normals(Mesh(v, f, v_tex=uv_from_xy(v[:, :2]), t_tex_idx=f))


def test_tangents_follow_increasing_u():
    # (uv from xy, tangent = dp/du, bitangent sign: -1 where the UVs are mirrored)
    for uv_fn, expected, sign in (
        (lambda xy: xy * 0.5, (1.0, 0, 0), 1.0),
        (lambda xy: xy.flip(1), (0, 1.0, 0), -1.0),
        (lambda xy: torch.stack([-xy[:, 0], xy[:, 1]], 1), (-1.0, 0, 0), -1.0),
    ):
        mesh = compute_tangents(plane_mesh(uv_fn))
        assert torch.allclose(mesh.v_nrm, torch.tensor([0, 0, 1.0], dtype=torch.float64).expand(16, 3))
        corner = mesh.v_tng[mesh.t_tng_idx].reshape(-1, 4)
        assert torch.allclose(corner, torch.tensor(expected + (sign,), dtype=torch.float64).expand(len(corner), 4))
        # One connected fan per vertex: as many tangent groups as vertices.
        assert len(mesh.v_tng) == 16


def test_tangents_are_unit_and_orthogonal_on_a_sphere_and_differentiable():
    mesh = sphere_mesh()
    mesh = compute_normals(mesh.copy(v_tex=mesh.v_pos[:, :2] * 0.5 + 0.5, t_tex_idx=mesh.t_pos_idx))
    out = compute_tangents(mesh)
    tangent, normal = out.v_tng[out.t_tng_idx][..., :3], out.v_nrm[out.t_nrm_idx]
    assert torch.allclose(tangent.norm(dim=-1), torch.ones(mesh.t_pos_idx.shape, dtype=torch.float64))
    assert (tangent * normal).sum(-1).abs().max() < 1e-9
    # Gradients on the upper cap, where the planar UVs are well conditioned.
    cap = (mesh.v_pos[mesh.t_pos_idx][..., 2] > 0.2).all(1)
    faces, used = mesh.t_pos_idx[cap], torch.unique(mesh.t_pos_idx[cap])
    remap = torch.full((mesh.num_vertices,), -1, dtype=torch.int64)
    remap[used] = torch.arange(len(used))
    faces, pos = remap[faces], mesh.v_pos[used].clone().requires_grad_()
    uv = pos.detach()[:, :2] * 0.5 + 0.5  # fixed: only positions vary

    def tangents(p):
        return compute_tangents(compute_normals(Mesh(p, faces, v_tex=uv, t_tex_idx=faces))).v_tng

    assert len(faces) > 10
    assert torch.autograd.gradcheck(tangents, (pos,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_tangents_need_uvs_and_normals():
    mesh = fan_mesh()
    with pytest.raises(ValueError, match="no UVs"):
        compute_tangents(mesh)
    with pytest.raises(ValueError, match="compute_normals"):
        compute_tangents(mesh.copy(v_tex=torch.zeros(5, 2), t_tex_idx=mesh.t_pos_idx))
    with pytest.raises(ValueError, match="weighting"):
        vertex_normals(mesh.v_pos, mesh.t_pos_idx, "uniform")


def test_empty_mesh_normals_and_tangents():
    mesh = Mesh.empty().copy(v_tex=torch.zeros(0, 2), t_tex_idx=torch.zeros(0, 3, dtype=torch.int64))
    out = compute_tangents(compute_normals(mesh))
    assert out.v_nrm.shape == (0, 3) and out.v_tng.shape == (0, 4) and out.t_tng_idx.shape == (0, 3)
