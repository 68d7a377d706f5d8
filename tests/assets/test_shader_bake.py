"""``dmtrec bake --shader``: a shading model's textures and constants fitted to the PBR look."""

import argparse
import json

import numpy as np
import pytest
import torch
from common import PROBE_HDR, REPO, SPOT_OBJ
from PIL import Image

from dmtrec.assets.shader_bake import initial_values
from dmtrec.cli import main
from dmtrec.commands import bake
from dmtrec.datasets.reference_mesh import load_asset, load_probe
from dmtrec.io.image import linear_to_srgb
from dmtrec.render.raster import get_rasterizer
from dmtrec.render.shaders import BUILTINS

EXAMPLE = REPO / "experiments" / "shaders" / "half_lambert.py"
TINY = ["--views", "6", "--held-out", "2", "--res", "32", "--probe-res", "32", "--texture-res", "16", "--batch", "3"]


def _run(tmp_path, shader, *extra):
    parser = argparse.ArgumentParser()
    bake.add_arguments(parser)
    argv = ["--mesh", str(SPOT_OBJ), "--probe", str(PROBE_HDR), "--shader", shader, "--out", str(tmp_path / "out")]
    torch.set_num_threads(1)
    return bake.run_bake(parser.parse_args(argv + TINY + list(extra)))


def test_a_user_model_from_a_file_fits_end_to_end(tmp_path):
    report = _run(tmp_path, f"{EXAMPLE}:HalfLambert", "--steps", "12", "--lr", "0.05")
    out = tmp_path / "out"
    assert {"albedo.png", "material.json", "report.json", "contact_sheet.png", "mesh.obj"} <= {
        p.name for p in out.iterdir()
    }
    first, last = report["loss_first_last"]
    assert last < first  # the fit moved towards the references
    assert set(report["scores_held_out"]) == {"initial", "fitted"}
    assert report["scores_held_out"]["fitted"]["flip"] is None or report["flip"] == "flip_evaluator"
    material = json.loads((out / "material.json").read_text())
    assert material["model"] == "half_lambert" and material["glsl"] is None
    assert 0.0 <= material["constants"]["ambient"][0] <= 4.0 and 1.0 <= material["constants"]["exponent"][0] <= 4.0
    # The constants moved from their declared starts (1 and 2).
    assert material["constants"]["ambient"] != [1.0] or material["constants"]["exponent"] != [2.0]
    assert Image.open(out / "albedo.png").size == (16, 16)
    assert material["light"]["main_dir"] and len(material["light"]["ambient_sh"]) == 9


def test_a_builtin_model_exports_its_glsl_and_srgb_textures(tmp_path):
    report = _run(tmp_path, "toon", "--steps", "0")
    out = tmp_path / "out"
    glsl = (out / "toon.glsl").read_text()
    assert "vec3 ambientSH(vec3 n)" in glsl and "vec3 shade()" in glsl
    material = json.loads((out / "material.json").read_text())
    assert set(material["constants"]) == {"thresholds", "levels", "ambient", "rim", "rim_cut"}
    # With no steps the fit is the start, and the albedo PNG is the start's kd in sRGB.
    assert report["scores_held_out"]["fitted"]["psnr"] == pytest.approx(report["scores_held_out"]["initial"]["psnr"])
    mesh, source_material = load_asset(SPOT_OBJ)
    start = initial_values(
        BUILTINS["toon"](), mesh, source_material, load_probe(PROBE_HDR, 32), 16, get_rasterizer("torch")
    )
    expected = np.rint(linear_to_srgb(start["albedo"]).numpy() * 255)
    assert np.abs(np.asarray(Image.open(out / "albedo.png"), dtype=np.float64) - expected).max() <= 1


def test_initial_kd_is_the_source_base_colour_at_its_own_resolution():
    mesh, material = load_asset(SPOT_OBJ)
    size = material.kd.resolution[0]
    start = initial_values(BUILTINS["simple_lit"](), mesh, material, None, size, None)
    assert set(start) == {"albedo"}
    assert torch.allclose(start["albedo"], material.kd.data[0, ..., :3], atol=1e-6)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shader", "toon", "--target", "vertex"], "--onto and --target vertex do not apply"),
        (["--shader", "no_such_model"], "no_such_model: not a shading model"),
        ([], "--target texture|vertex is required"),
    ],
)
def test_shader_option_errors_are_one_line(tmp_path, capsys, extra, message):
    argv = ["bake", "--mesh", str(SPOT_OBJ), "--probe", str(PROBE_HDR), "--out", str(tmp_path / "out")] + extra
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()
