"""``dmtrec lod``: budgets, closest-surface transfer, optimisation, outputs and bad inputs."""

from __future__ import annotations

import json
import math

import pytest
import pytorch_lightning as pl
import torch
from common import PROBE_HDR, SPOT_OBJ

pytest.importorskip("fast_simplification", reason="dmtrec lod needs the 'lod' extra (fast-simplification)")
pytest.importorskip("scipy", reason="dmtrec lod's closest-surface lookup needs scipy")

from dmtrec import cli  # noqa: E402
from dmtrec.assets import lod as lod_module  # noqa: E402
from dmtrec.assets.lod import LodSettings, decimate, level_budgets, load_lod_inputs  # noqa: E402
from dmtrec.assets.lod_transfer import transfer_textures  # noqa: E402
from dmtrec.assets.procedural import displaced_torus, procedural_textures, write_procedural_asset  # noqa: E402
from dmtrec.assets.views import render_reference, view_cameras  # noqa: E402
from dmtrec.core.mesh import Mesh  # noqa: E402
from dmtrec.datasets.reference_mesh import load_asset, load_probe  # noqa: E402
from dmtrec.geometry.uv_unwrap import uv_unwrap  # noqa: E402
from dmtrec.io.obj import write_obj  # noqa: E402
from dmtrec.metrics.image import psnr  # noqa: E402
from dmtrec.render.material import TexturedMaterial  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.systems.lod import LodSystem, heldout_loss  # noqa: E402


@pytest.fixture(scope="module")
def spot():
    mesh, material = load_asset(SPOT_OBJ)
    return mesh, material


@pytest.fixture(scope="module")
def light():
    return load_probe(PROBE_HDR, probe_res=32)


def test_decimation_meets_every_budget(spot):
    mesh, _ = spot
    for budget in level_budgets(mesh.num_faces, [0.25, 0.05, 0.01]) + [100, 37, 4]:
        out = decimate(mesh, budget)
        faces = out.t_pos_idx
        assert budget * 0.95 <= faces.shape[0] <= budget, (budget, faces.shape[0])
        # no degenerate triangles, every vertex used, indices in range
        assert bool(((faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])).all())
        assert torch.equal(torch.unique(faces), torch.arange(out.num_vertices))


def test_budget_errors_are_one_line():
    with pytest.raises(ValueError, match=r"m\.obj: budget of 5000 triangles is above the mesh's 4000"):
        level_budgets(4000, faces=[5000], path="m.obj")
    with pytest.raises(ValueError, match="below the minimum of 4"):
        level_budgets(4000, levels=[0.0005], path="m.obj")
    assert level_budgets(1000, levels=[0.05, 0.25]) == [250, 50]


@pytest.mark.slow
def test_transfer_at_full_resolution_reproduces_the_original(spot, light):
    """No decimation, a new xatlas atlas: renders with the transferred maps score within 0.5 dB
    of renders with the original maps, both against a 4x4-supersampled render of the original."""
    mesh, material = spot
    small = torch.nn.functional.avg_pool2d(material.kd.data.permute(0, 3, 1, 2), 8).permute(0, 2, 3, 1)[0]
    original = TexturedMaterial.from_tensors(kd=small, ks=material.ks.data[0])
    rasterizer = get_rasterizer("torch", "cpu")
    new = uv_unwrap(Mesh(mesh.v_pos, mesh.t_pos_idx)).mesh
    transferred = TexturedMaterial.from_tensors(**transfer_textures(mesh, original, new, 256, rasterizer))
    cams = view_cameras("sphere", 3, mesh, resolution=96, seed=5)
    reference = render_reference(mesh, original, light, cams, rasterizer, spp=4)
    base = render_reference(mesh, original, light, cams, rasterizer)
    moved = render_reference(new, transferred, light, cams, rasterizer)
    flat = TexturedMaterial.from_tensors(kd=small.mean((0, 1), keepdim=True), ks=material.ks.data[0])
    flat_render = render_reference(mesh, flat, light, cams, rasterizer)  # a trivial baseline: the mean colour
    base_db, moved_db, flat_db = (
        float(psnr(img[..., :3], reference[..., :3]).mean()) for img in (base, moved, flat_render)
    )
    assert moved_db >= base_db - 0.5, (moved_db, base_db)
    assert moved_db > flat_db + 3.0, (moved_db, flat_db)


@pytest.mark.slow
def test_short_optimisation_improves_the_heldout_loss(spot, light):
    """LodSystem on one level under a bare Trainer: the held-out loss (views never optimised on)
    falls below the QEM-only start's."""
    mesh, material = spot
    settings = LodSettings(train_views=8, heldout_views=3, texture_res=128, batch=2, spp=1, iterations=25)
    settings.level_res, settings.flip = [48], False
    system = LodSystem(mesh, material, light, [60], settings, get_rasterizer("torch", "cpu"))
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(system)
    (result,) = system.results
    qem = uv_unwrap(decimate(mesh, 60)).mesh  # the start, rebuilt: the same decimation and atlas
    start = TexturedMaterial.from_tensors(**transfer_textures(mesh, material, qem, 128, system.scene.rasterizer))
    before = heldout_loss(system.scene, qem, start, 48)
    after = heldout_loss(system.scene, system.levels()[0].mesh, system.levels()[0].material, 48)
    assert after < before * 0.97, (before, after)
    assert result["report"]["qem_only"]["heldout_loss"] == pytest.approx(before, rel=1e-5)
    assert system.iteration == 25 and result["report"]["triangles"] == qem.num_faces


def test_procedural_asset_is_a_closed_textured_high_poly_torus(tmp_path):
    from dmtrec.metrics.topology import mesh_topology

    mesh = displaced_torus()  # the benchmark's asset
    assert mesh.num_faces >= 200_000
    topo = mesh_topology(mesh.v_pos, mesh.t_pos_idx)
    assert topo["watertight"] and topo["genus"] == 1
    maps = procedural_textures(64)
    assert set(maps) == {"kd", "ks", "normal"} and torch.allclose(maps["normal"].norm(dim=-1), torch.ones(64, 64))
    path = write_procedural_asset(tmp_path, nu=20, nv=12, texture_res=32)
    loaded, material = load_asset(path)
    assert loaded.num_faces == 480 and material.normal is not None


def _run(argv, capsys):
    code = cli.main(["lod", *[str(a) for a in argv]])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.slow
def test_lod_command_writes_levels_glbs_report_and_contact_sheet(tmp_path, capsys):
    pygltflib = pytest.importorskip("pygltflib")
    trimesh = pytest.importorskip("trimesh")
    asset = write_procedural_asset(tmp_path / "asset", nu=40, nv=24, texture_res=64)
    out = tmp_path / "lods"
    argv = ["--mesh", asset, "--probe", PROBE_HDR, "--faces", "400", "100", "--out", out, "--iterations", "3"]
    argv += ["--level-res", "48", "32", "--texture-res", "64", "--train-views", "4", "--heldout-views", "2"]
    argv += ["--probe-res", "32", "--batch", "2", "--spp", "1"]
    code, err = _run(argv, capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert [level["triangles"] for level in report["levels"]] == [
        min(400, t) for t in (level["triangles"] for level in report["levels"])
    ]
    counts = [level["triangles"] for level in report["levels"]]
    assert 380 <= counts[0] <= 400 and 95 <= counts[1] <= 100
    for level in report["levels"]:
        for kind in ("qem_only", "optimised"):
            assert math.isfinite(level[kind]["psnr"]) and 0 < level[kind]["ssim"] <= 1
    assert (out / "contact_sheet.png").stat().st_size > 0
    for index, count in enumerate(counts):
        assert (out / f"lod{index}" / "mesh.obj").is_file()
        scene = trimesh.load(out / f"lod{index}.glb")
        geometry = list(scene.geometry.values())
        assert len(geometry) == 1 and len(geometry[0].faces) == count
        assert geometry[0].visual.material.baseColorTexture is not None
        assert geometry[0].visual.material.normalTexture is not None
    gltf = pygltflib.GLTF2().load(str(out / "lods.glb"))
    assert "MSFT_lod" in gltf.extensionsUsed and gltf.scenes[0].nodes == [0]
    assert gltf.nodes[0].extensions["MSFT_lod"]["ids"] == [1]
    assert gltf.nodes[0].extras["MSFT_screencoverage"] == report["screen_coverage"]
    for index, node in enumerate(gltf.nodes):
        primitive = gltf.meshes[node.mesh].primitives[0]
        assert gltf.accessors[primitive.indices].count == 3 * counts[index]
        material = gltf.materials[primitive.material]
        assert material.pbrMetallicRoughness.baseColorTexture is not None and material.normalTexture is not None
    assert len({gltf.nodes[i].mesh for i in range(2)}) == 2 and len(gltf.materials) == 2
    # a written level is itself a valid lod input (GLB path of read_mesh): closed, with UVs and maps
    mesh, material, _, topology, _ = load_lod_inputs(out / "lod1.glb", PROBE_HDR, LodSettings(probe_res=32))
    assert mesh.num_faces == counts[1] and topology["genus"] == 1 and material.normal is not None


def _write(tmp_path, name, mesh, textures=None):
    return write_obj(tmp_path, mesh, textures, name=name)


@pytest.mark.parametrize("case", ["open", "nonmanifold", "budget_high", "budget_low", "probe"])
def test_bad_inputs_fail_with_one_line_and_write_nothing(case, tmp_path, capsys):
    mesh = displaced_torus(12, 8)
    probe = PROBE_HDR
    faces = ["100"]
    if case == "open":
        mesh = Mesh(mesh.v_pos, mesh.t_pos_idx[1:])
        problem = "mesh is open"
    elif case == "nonmanifold":
        extra = torch.tensor([[mesh.t_pos_idx[0, 0], mesh.t_pos_idx[0, 1], 5]])
        mesh = Mesh(mesh.v_pos, torch.cat([mesh.t_pos_idx, extra]))
        problem = "not edge-manifold"
    elif case == "budget_high":
        faces = ["1000"]
        problem = "above the mesh's 192"
    elif case == "budget_low":
        faces = ["3"]
        problem = "below the minimum of 4"
    else:
        probe = tmp_path / "broken.hdr"
        probe.write_bytes(b"not an hdr")
        problem = "unreadable probe"
    path = _write(tmp_path, "asset", Mesh(mesh.v_pos, mesh.t_pos_idx))
    out = tmp_path / "out"
    code, err = _run(["--mesh", path, "--probe", probe, "--faces", *faces, "--out", out], capsys)
    errors = [line for line in err if "error" in line]
    assert code == 1 and len(errors) == 1 and problem in errors[0], err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_mesh_without_uvs_or_textures_is_unwrapped_and_uses_factors(tmp_path, monkeypatch):
    mesh = displaced_torus(12, 8)
    path = _write(tmp_path, "plain", Mesh(mesh.v_pos, mesh.t_pos_idx))  # no UVs, no maps: Kd/Ks factors
    seen = []

    def spy(mesh, **kw):  # the settings' texture size reaches the unwrap (its fallback's margins)
        seen.append(kw.get("texture_res"))
        return uv_unwrap(mesh, **kw)

    monkeypatch.setattr(lod_module, "uv_unwrap", spy)
    loaded, material, _, topology, notes = load_lod_inputs(path, PROBE_HDR, LodSettings(probe_res=32, texture_res=64))
    assert seen == [64]
    assert loaded.v_tex is not None and loaded.t_tex_idx.shape == loaded.t_pos_idx.shape
    assert material.kd.data.shape[1:3] == (1, 1) and notes and topology["genus"] == 1
