"""A run's exported GLB and OBJ (runs.outputs) render the same image through dmtrec's renderer."""

import torch
from common import PROBE_HDR

from dmtrec.geometry import Mesh
from dmtrec.io.mesh_files import read_mesh
from dmtrec.io.textures import decode_texture, encode_texture
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.render_mesh import render_mesh
from dmtrec.runs.outputs import write_outputs


def _textures(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(16, 32, 3, generator=gen) * 0.3 + torch.tensor([0.0, 0.0, 1.0])
    ks = torch.rand(16, 32, 3, generator=gen)
    ks[..., 0] = 0.1 + 0.8 * ks[..., 0]  # a real occlusion amount everywhere
    ks[..., 1] = 0.2 + 0.8 * ks[..., 1]
    return {"kd": torch.rand(32, 64, 3, generator=gen), "ks": ks, "normal": normal / normal.norm(dim=-1, keepdim=True)}


def _render(mesh, textures, light, camera, rasterizer):
    material = TexturedMaterial.from_tensors(textures["kd"], textures["ks"], textures.get("normal"))
    return render_mesh(mesh, material, light, camera, rasterizer)["shaded"]


def test_glb_and_obj_of_a_run_render_the_same(tmp_path, sphere, rasterizer, make_camera):
    mesh = Mesh(sphere.v_pos, sphere.t_pos_idx, v_tex=sphere.v_tex, t_tex_idx=sphere.t_tex_idx)
    light = EnvironmentLight.from_hdr(PROBE_HDR, base_res=32)
    paths = write_outputs(tmp_path, mesh, _textures(), light)
    camera = make_camera((64, 64))
    obj_mesh, obj_tex = read_mesh(paths["obj"])
    glb_mesh, glb_tex = read_mesh(paths["glb"])
    # The ORM maps agree in memory: the GLB's occlusion (1 - R on disk) reads back as the amount R.
    assert torch.abs(glb_tex["ks"] - obj_tex["ks"]).max() < 1e-6
    from_obj = _render(obj_mesh, obj_tex, light, camera, rasterizer)
    from_glb = _render(glb_mesh, glb_tex, light, camera, rasterizer)
    covered = from_obj[..., 3] > 0
    assert covered.sum() > 1000
    # Not trivially equal: occlusion darkens the object (a grey shaded sphere is ~0.1-1 here).
    assert from_obj[..., :3][covered].mean() > 0.05
    assert torch.abs(from_glb - from_obj).max() < 1e-3


def _on_8bit_grid(textures: dict) -> dict:
    """The maps as their 8-bit PNG files hold them, so that export adds (almost) no rounding."""
    out = {k: decode_texture(k, torch.round(encode_texture(k, v) * 255) / 255) for k, v in textures.items()}
    out["normal"] = torch.round(out["normal"] * 127.5) / 127.5  # symmetric under negation
    return out


def test_inside_out_mesh_is_exported_outward_and_renders_as_trained(tmp_path, sphere, rasterizer, make_camera):
    # Marching tetrahedra's winding: faces clockwise seen from outside (dmtrec renders two-sided).
    inward = Mesh(
        sphere.v_pos, sphere.t_pos_idx[:, [0, 2, 1]], v_tex=sphere.v_tex, t_tex_idx=sphere.t_tex_idx[:, [0, 2, 1]]
    )
    textures = _on_8bit_grid(_textures(1))
    light = EnvironmentLight.from_hdr(PROBE_HDR, base_res=32)
    camera = make_camera((64, 64))
    trained = _render(inward, textures, light, camera, rasterizer)
    paths = write_outputs(tmp_path, inward, textures, light)
    for kind in ("obj", "glb"):
        mesh, maps = read_mesh(paths[kind])
        corners = mesh.v_pos[mesh.t_pos_idx].double()
        volume = (torch.linalg.cross(corners[:, 0], corners[:, 1], dim=-1) * corners[:, 2]).sum() / 6
        assert volume > 4.0  # outward now: + 4/3 pi for the unit sphere
        diff = torch.abs(_render(mesh, maps, light, camera, rasterizer) - trained).amax(-1)
        # Equal but for a few pixels (silhouette antialiasing sees the winding; normal-map rounding).
        assert (diff > 1e-3).float().mean() < 0.01 and diff.max() < 5e-3, kind
    # Reversing the winding without negating the normal map's x and y would shade differently.
    mesh, maps = read_mesh(paths["obj"])
    maps["normal"] = maps["normal"] * torch.tensor([-1.0, -1.0, 1.0])
    assert torch.abs(_render(mesh, maps, light, camera, rasterizer) - trained).max() > 0.02
