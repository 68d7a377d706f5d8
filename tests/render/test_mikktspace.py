"""compute_tangents is MikkTSpace: against the reference implementation (the ``mikktspace``
package's WebAssembly build, run with node) tangent by tangent, and in normal-mapped renders."""

import json

import torch
from common import SPOT_OBJ
from node_tools import run_node

from dmtrec.geometry import Mesh, compute_normals, compute_tangents
from dmtrec.io.mesh_files import read_mesh
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.render_mesh import render_mesh


def reference_tangents(mesh: Mesh) -> torch.Tensor:
    """``[F, 3, 4]`` MikkTSpace tangents per corner from the reference implementation."""
    data = {
        "position": mesh.v_pos[mesh.t_pos_idx].reshape(-1).tolist(),
        "normal": mesh.v_nrm[mesh.t_nrm_idx].reshape(-1).tolist(),
        "uv": mesh.v_tex[mesh.t_tex_idx].reshape(-1).tolist(),  # v up, as dmtrec (and Blender) hold UVs
    }
    return torch.tensor(json.loads(run_node("mikktspace.cjs", stdin=json.dumps(data)))).reshape(-1, 3, 4)


def mirrored_sphere(sphere: Mesh) -> Mesh:
    """The UV sphere with u mirrored at 0.5: half the faces have flipped UV orientation (w = -1)."""
    uv = sphere.v_tex.clone()
    uv[:, 0] = 1.0 - (2.0 * uv[:, 0] - 1.0).abs()
    return compute_normals(Mesh(sphere.v_pos, sphere.t_pos_idx, v_tex=uv, t_tex_idx=sphere.t_tex_idx))


def ours_per_corner(mesh: Mesh) -> torch.Tensor:
    out = compute_tangents(mesh)
    return out.v_tng[out.t_tng_idx]


def test_spot_tangents_match_the_reference():
    mesh, _ = read_mesh(SPOT_OBJ)  # xatlas-like charts, seams, a few mirrored faces
    mesh = compute_normals(mesh)
    ref, ours = reference_tangents(mesh), ours_per_corner(mesh)
    assert (ref[..., 3] < 0).any() and (ref[..., 3] > 0).any()
    assert torch.equal(ours[..., 3], ref[..., 3])
    assert (ours[..., :3] - ref[..., :3]).norm(dim=-1).max() < 1e-5


def test_mirrored_sphere_tangents_match_the_reference(sphere):
    mesh = mirrored_sphere(sphere)
    ref, ours = reference_tangents(mesh), ours_per_corner(mesh)
    assert 0.3 < (ref[..., 3] < 0).float().mean() < 0.7
    assert torch.equal(ours[..., 3], ref[..., 3])
    # The poles are degenerate in UV (MikkTSpace leaves some corners' tangents unset there).
    valid = ref[..., :3].norm(dim=-1) > 0.5
    assert valid.float().mean() > 0.95
    assert (ours[..., :3] - ref[..., :3]).norm(dim=-1)[valid].max() < 1e-5


def test_normal_mapped_render_with_our_tangents_matches_mikktspace(sphere, rasterizer, make_camera):
    """The shading normals (render mode ``normal``) of a normal-mapped sphere with mirrored UVs."""
    mesh = mirrored_sphere(sphere)
    gen = torch.Generator().manual_seed(0)
    bumps = torch.nn.functional.interpolate(torch.randn(1, 3, 8, 8, generator=gen), size=(32, 32), mode="bilinear")
    normal = bumps[0].permute(1, 2, 0) * torch.tensor([0.5, 0.5, 0.0]) + torch.tensor([0.0, 0.0, 1.0])
    normal = normal / normal.norm(dim=-1, keepdim=True)
    material = TexturedMaterial.from_tensors(torch.full((1, 1, 3), 0.7), torch.tensor([[[0.0, 0.4, 0.0]]]), normal)
    camera = make_camera((64, 64))

    def render(tangents: torch.Tensor) -> torch.Tensor:
        per_corner = torch.arange(3 * mesh.num_faces).reshape(-1, 3)
        frame = mesh.copy(v_tng=tangents.reshape(-1, tangents.shape[-1]), t_tng_idx=per_corner)
        return render_mesh(frame, material, None, camera, rasterizer, bsdf="normal")["shaded"][..., :3]

    ref = reference_tangents(mesh)
    # Where the reference leaves a tangent unset (UV-degenerate pole corners), both use ours.
    ours = ours_per_corner(mesh)
    ref = torch.where(ref[..., :3].norm(dim=-1, keepdim=True) > 0.5, ref, ours)
    from_reference, from_ours = render(ref), render(ours)
    # Baseline: the same tangents without the bitangent sign (the pre-MikkTSpace frame).
    unsigned = render(ours[..., :3])
    assert (from_ours - from_reference).abs().max() < 1e-4
    assert (unsigned - from_reference).abs().max() > 0.05
