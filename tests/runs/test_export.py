"""Run outputs: file names, MTL references, a GLB a mainstream reader loads, the probe, atomicity."""

from __future__ import annotations

import json

import pytest
import torch

from dmtrec.geometry import Mesh
from dmtrec.io.image import read_hdr
from dmtrec.render.light import EnvironmentLight
from dmtrec.runs.outputs import write_outputs


def quad_with_uvs() -> Mesh:
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return Mesh(v_pos=v, t_pos_idx=f, v_tex=v[:, :2].clone(), t_tex_idx=f.clone())


def textures():
    return {
        "kd": torch.full((8, 8, 3), 0.25),
        "ks": torch.tensor([0.0, 0.5, 0.0]).expand(8, 8, 3).clone(),
        "normal": torch.tensor([0.0, 0.0, 1.0]).expand(8, 8, 3).clone(),
    }


def test_outputs_have_nvdiffrec_names_and_load(tmp_path):
    light = EnvironmentLight.constant(0.75, base_res=32)
    paths = write_outputs(tmp_path, quad_with_uvs(), textures(), light, {"test_psnr": 30.5})
    mesh_dir = tmp_path / "mesh"
    assert sorted(p.name for p in mesh_dir.iterdir()) == [
        "mesh.mtl",
        "mesh.obj",
        "texture_kd.png",
        "texture_ks.png",
        "texture_metallic.png",
        "texture_n.png",
        "texture_roughness.png",
    ]
    mtl = (mesh_dir / "mesh.mtl").read_text()
    for name in ("texture_kd.png", "texture_ks.png", "texture_n.png"):
        assert f" {name}" in mtl
    assert "mtllib mesh.mtl" in (mesh_dir / "mesh.obj").read_text()
    assert json.loads(paths["metrics"].read_text()) == {"test_psnr": 30.5}
    probe = read_hdr(paths["probe"])
    assert probe.shape[-1] == 3 and probe.mean() == pytest.approx(0.75, rel=0.02)

    trimesh = pytest.importorskip("trimesh")
    scene = trimesh.load(str(paths["glb"]))
    loaded = list(scene.geometry.values())[0] if hasattr(scene, "geometry") else scene
    assert loaded.faces.shape == (2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh", "mesh.glb", "metrics.json", "probe.hdr"]


def test_failed_export_keeps_the_previous_outputs(tmp_path):
    light = EnvironmentLight.constant(0.5, base_res=32)
    write_outputs(tmp_path, quad_with_uvs(), textures(), light)
    before = (tmp_path / "mesh" / "mesh.obj").read_text()
    broken = quad_with_uvs().copy(v_tex=None, t_tex_idx=None)  # textures without UVs: the writer refuses
    with pytest.raises(ValueError):
        write_outputs(tmp_path, broken, textures(), light)
    assert (tmp_path / "mesh" / "mesh.obj").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh", "mesh.glb", "probe.hdr"]
