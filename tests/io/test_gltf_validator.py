"""Every kind of GLB dmtrec writes passes the Khronos glTF Validator with 0 errors and 0 warnings.

The validator is npm's ``gltf-validator`` run with node (``tools/gltf``); without node the tests
skip with the reason.
"""

import pytest
import torch
from node_tools import validate_glb

from dmtrec.geometry import Mesh
from dmtrec.io.gltf import write_glb
from dmtrec.render.light import EnvironmentLight
from dmtrec.runs.outputs import write_outputs

trimesh = pytest.importorskip("trimesh")


def _uv_sphere() -> Mesh:
    """An icosphere with per-corner longitude/latitude UVs: seams and mirrored faces."""
    ico = trimesh.creation.icosphere(subdivisions=2)
    v, f = torch.tensor(ico.vertices, dtype=torch.float32), torch.tensor(ico.faces, dtype=torch.int64)
    corner = v[f]
    u = torch.atan2(corner[..., 1], corner[..., 0]) / (2 * torch.pi) + 0.5
    uv = torch.stack([1.0 - (2.0 * u - 1.0).abs(), corner[..., 2] * 0.5 + 0.5], -1)
    return Mesh(v, f, v_tex=uv.reshape(-1, 2), t_tex_idx=torch.arange(3 * len(f)).reshape(-1, 3))


def _maps(alpha: bool = False) -> dict:
    gen = torch.Generator().manual_seed(0)
    n = torch.randn(8, 8, 3, generator=gen) * 0.3 + torch.tensor([0.0, 0.0, 1.0])
    kd = torch.rand(16, 16, 4 if alpha else 3, generator=gen)
    return {"kd": kd, "ks": torch.rand(8, 8, 3, generator=gen), "normal": n / n.norm(dim=-1, keepdim=True)}


def _assert_clean(path):
    report = validate_glb(path)
    issues = report["issues"]
    messages = [(m["code"], m["severity"], m.get("pointer")) for m in issues["messages"]]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, messages
    return report


def test_run_outputs_glb_is_valid(tmp_path):
    paths = write_outputs(tmp_path, _uv_sphere(), _maps(), EnvironmentLight.constant(0.5, base_res=32))
    report = _assert_clean(paths["glb"])
    assert report["info"]["totalTriangleCount"] == _uv_sphere().num_faces
    assert report["info"]["materialCount"] == 1 and report["info"]["hasTextures"]


@pytest.mark.parametrize(
    "kind", ["untextured", "kd_only", "kd_ks", "alpha_blend", "no_occlusion"], ids=lambda kind: kind
)
def test_every_glb_kind_is_valid(tmp_path, kind):
    mesh, maps = _uv_sphere(), _maps(alpha=kind == "alpha_blend")
    if kind == "untextured":
        mesh, maps = Mesh(mesh.v_pos, mesh.t_pos_idx), {}
    elif kind == "kd_only":
        maps = {"kd": maps["kd"]}
    elif kind == "kd_ks":
        maps = {"kd": maps["kd"], "ks": maps["ks"]}
    path = write_glb(tmp_path / f"{kind}.glb", mesh, maps, occlusion=kind != "no_occlusion")
    _assert_clean(path)


def test_lod_chain_glb_is_valid(tmp_path):
    # dmtrec lod's lods.glb: every level a primitive of its own, MSFT_lod on the first node.
    from dmtrec.io.gltf_lod import write_lod_glb

    sphere = _uv_sphere()
    coarse = Mesh(sphere.v_pos * 0.98, sphere.t_pos_idx, v_tex=sphere.v_tex, t_tex_idx=sphere.t_tex_idx)
    path = write_lod_glb(tmp_path / "lods.glb", [(sphere, _maps()), (coarse, _maps())], screen_coverage=[0.5, 0.0])
    report = _assert_clean(path)
    assert report["info"]["totalTriangleCount"] == 2 * sphere.num_faces


@pytest.mark.parametrize("target", ["texture", "vertex"])
def test_unlit_bake_glbs_are_valid(tmp_path, target):
    # dmtrec bake's baked.glb: KHR_materials_unlit with a base-colour texture, or COLOR_0.
    sphere = _uv_sphere()
    if target == "texture":
        path = write_glb(tmp_path / "baked.glb", sphere, {"kd": _maps()["kd"]}, unlit=True)
    else:
        colours = torch.rand(sphere.num_vertices, 3, generator=torch.Generator().manual_seed(1))
        path = write_glb(tmp_path / "baked.glb", Mesh(sphere.v_pos, sphere.t_pos_idx), unlit=True, vertex_color=colours)
    _assert_clean(path)
