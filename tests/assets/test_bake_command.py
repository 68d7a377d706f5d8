"""``dmtrec bake``: outputs that viewers load, and one-line errors with nothing written."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from common import PROBE_HDR, REPO, SPOT_OBJ, subprocess_env
from pytorch_lightning.cli import LightningArgumentParser

from dmtrec.commands import bake
from dmtrec.io.gltf import read_glb
from dmtrec.render.camera_distributions import orbit_cameras

FAST = [
    *("--views", "4", "--held-out", "2", "--val-views", "2", "--res", "32", "--steps", "3"),
    *("--probe-res", "32", "--texture-res", "32", "--run.wandb", "disabled"),
]


def _parser():
    parser = LightningArgumentParser()
    bake.add_arguments(parser)
    return parser


def _run(tmp_path, *extra, mesh=SPOT_OBJ, probe=PROBE_HDR, target="texture", out="out", callbacks=()):
    argv = ["--mesh", str(mesh), "--probe", str(probe), "--target", target, "--out", str(tmp_path / out)]
    torch.set_num_threads(1)
    return bake.run_bake(_parser().parse_args(argv + FAST + list(extra)), callbacks)


def test_loss_option_takes_log1p_l1_and_its_old_name():
    parser = _parser()
    required = ["--mesh", "m", "--probe", "p", "--target", "texture", "--out", "o"]
    assert parser.parse_args(required + ["--loss", "logl1"]).loss == "log1p_l1"
    assert parser.parse_args(required + ["--loss", "log1p_l1"]).loss == "log1p_l1"
    assert parser.parse_args(required).loss == "l2"
    with pytest.raises(SystemExit):
        parser.parse_args(required + ["--loss", "smape"])


def test_texture_bake_writes_an_unlit_glb_obj_and_report(tmp_path):
    pygltflib = pytest.importorskip("pygltflib")
    trimesh = pytest.importorskip("trimesh")
    report = _run(tmp_path, "--check-optimum")
    out = tmp_path / "out"
    assert {"baked.glb", "baked.obj", "baked.mtl", "baked_kd.png", "report.json", "contact_sheet.png"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / "report.json").read_text())["target"] == "texture"
    assert set(report["scores_held_out"]) == {"point_sampled", "optimised", "closed_form", "least_squares"}
    gltf = pygltflib.GLTF2().load(str(out / "baked.glb"))
    assert "KHR_materials_unlit" in gltf.extensionsUsed
    assert "KHR_materials_unlit" in gltf.materials[0].extensions
    assert gltf.materials[0].pbrMetallicRoughness.baseColorTexture is not None
    scene = trimesh.load(out / "baked.glb")
    geometry = next(iter(scene.geometry.values()))
    assert geometry.visual.material.baseColorTexture.size == (32, 32)
    assert len(geometry.faces) == 5856
    mesh, textures = read_glb(out / "baked.glb")
    assert textures["kd"].shape == (32, 32, 3)


def test_vertex_bake_writes_color_0_and_a_coloured_ply(tmp_path):
    pygltflib = pytest.importorskip("pygltflib")
    trimesh = pytest.importorskip("trimesh")
    _run(tmp_path, target="vertex")
    out = tmp_path / "out"
    assert (out / "baked.ply").is_file() and not (out / "baked.obj").exists()
    gltf = pygltflib.GLTF2().load(str(out / "baked.glb"))
    primitive = gltf.meshes[0].primitives[0]
    assert primitive.attributes.COLOR_0 is not None
    assert "KHR_materials_unlit" in gltf.materials[0].extensions
    geometry = next(iter(trimesh.load(out / "baked.glb").geometry.values()))
    glb_colour = {
        tuple(p): c for p, c in zip(np.asarray(geometry.vertices).round(5), geometry.visual.vertex_attributes["color"])
    }
    ply = trimesh.load(out / "baked.ply", process=False)
    assert len(ply.vertices) == 2930 and len(ply.faces) == 5856
    # The PLY stores 8-bit sRGB, the GLB linear floats (split at UV seams): compare per position.
    srgb = np.asarray(ply.visual.vertex_colors[:, :3], np.float64) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    expected = np.stack([glb_colour[tuple(p)] for p in np.asarray(ply.vertices).round(5)])
    assert np.abs(linear - expected).max() < 0.01


def test_texture_target_without_uvs_is_unwrapped(tmp_path):
    # Geometry only (no vt, no material): the texture target unwraps it with the safe xatlas path.
    lines = [line for line in SPOT_OBJ.read_text().splitlines() if line.startswith(("v ", "f "))]
    faces = [" ".join(c.split("/")[0] for c in line.split()[1:]) for line in lines if line.startswith("f ")]
    bare = tmp_path / "bare.obj"
    bare.write_text("\n".join([line for line in lines if line.startswith("v ")] + [f"f {f}" for f in faces]) + "\n")
    report = _run(tmp_path, mesh=bare)
    assert report["uvs"] in ("xatlas", "per_triangle")
    assert (tmp_path / "out" / "baked.glb").is_file()


def test_camera_list_distribution_holds_out_every_kth_camera(tmp_path):
    cameras = orbit_cameras(6, radius=3.5)
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps({"fovy": 45.0, "frames": [{"transform_matrix": m.tolist()} for m in cameras.c2w]}))
    report = _run(tmp_path, "--distribution", str(path), target="vertex")
    # 6 cameras: every 3rd held out (2), then a quarter of the other 4 kept for validation (1).
    assert (report["views"], report["held_out_views"], report["validation_views"]) == (3, 2, 1)


def _expect_one_line_error(tmp_path, match, **kwargs):
    with pytest.raises((ValueError, FileNotFoundError), match=match) as info:
        _run(tmp_path, *kwargs.pop("extra", ()), **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folder left


def test_empty_mesh_is_one_line_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing\n")
    _expect_one_line_error(tmp_path, "empty.obj", mesh=empty)


def test_unreadable_probe_is_one_line_and_writes_nothing(tmp_path):
    probe = tmp_path / "broken.hdr"
    probe.write_bytes(b"#?RADIANCE\nnot really\n")
    _expect_one_line_error(tmp_path, "broken.hdr: unreadable probe", probe=probe)


def test_onto_a_far_mesh_is_one_line_and_writes_nothing(tmp_path):
    far = tmp_path / "far.obj"
    far.write_text("v 100 0 0\nv 101 0 0\nv 100 1 0\nv 100 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    _expect_one_line_error(tmp_path, "far.obj: mesh does not overlap", extra=("--onto", str(far)), target="vertex")


@pytest.mark.slow
def test_cli_prints_the_error_line_without_a_traceback(tmp_path):
    command = [sys.executable, "-m", "dmtrec.cli", "bake", "--mesh", str(SPOT_OBJ), "--probe", str(tmp_path / "x.hdr")]
    proc = subprocess.run(
        command + ["--target", "vertex", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=subprocess_env(PYTHONPATH=str(REPO)),
        timeout=120,
    )
    assert proc.returncode != 0
    assert "x.hdr: probe file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_the_optimum_check_is_opt_in(tmp_path):
    # Issue 30: the least-squares optimum (CG, every view rendered per iteration) was computed on
    # every bake; it is a check of the optimiser, now asked for with --check-optimum.
    report = _run(tmp_path, target="vertex")
    assert set(report["scores_held_out"]) == {"point_sampled", "optimised"}
    assert report["cg_residuals"] is None and "closed_form" not in report["seconds"]
