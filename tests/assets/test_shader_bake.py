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
    hlsl = (out / "toon.hlsl").read_text()
    assert "float3 shade(DmtrecFragment f)" in hlsl
    material = json.loads((out / "material.json").read_text())
    assert material["glsl"] == "toon.glsl" and material["hlsl"] == "toon.hlsl"
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
        (["--shader", "toon", "--target", "vertex"], "--target vertex does not apply"),
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


def _mirrored_spot(path):
    """Spot's surface with its UV layout mirrored (u -> 1 - u), as an OBJ without a material."""
    from dmtrec.io.obj import write_obj

    mesh, _ = load_asset(SPOT_OBJ)
    mirrored = mesh.copy(v_tex=mesh.v_tex * torch.tensor([-1.0, 1.0]) + torch.tensor([1.0, 0.0]))
    write_obj(path, mirrored, None, name="mirrored")
    return mirrored, path / "mirrored.obj"


def test_onto_starts_each_texel_from_the_closest_source_point(tmp_path):
    # On the same surface with mirrored UVs, texel column c of the onto layout is the surface point
    # of column T - 1 - c of the source's own layout: the starts must be each other's mirror.
    from dmtrec.assets.unlit_bake import uv_layout, with_render_frame

    mesh, material = load_asset(SPOT_OBJ)
    mesh = with_render_frame(mesh, material)
    mirrored, _ = _mirrored_spot(tmp_path)
    light, rasterizer = load_probe(PROBE_HDR, 32), get_rasterizer("torch")
    own = initial_values(BUILTINS["unlit"](), mesh, material, light, 32, rasterizer)["kd"]
    onto = initial_values(BUILTINS["unlit"](), mesh, material, light, 32, rasterizer, with_render_frame(mirrored))
    # Compared where both layouts put a texel on the same triangle: texels outside the layout are
    # dilated in an order that does not mirror, and where Spot's UV charts overlap the rasterizer
    # picks either triangle.
    faces = []
    for layout in (mesh, mirrored):
        points, covered = uv_layout(layout, 32, rasterizer)
        face = torch.full((32, 32), -1, dtype=torch.long)
        face[covered] = points.face
        faces.append(face)
    covered = (faces[0].flip(1) == faces[1]) & (faces[1] >= 0)
    assert covered.sum() > 400
    close = (onto["kd"] - own.flip(1)).abs().amax(-1)[covered] < 1e-3
    assert close.float().mean() > 0.99, float(close.float().mean())
    # The kd start on the mirrored layout is the base colour at the same surface points.
    kd = initial_values(BUILTINS["lambert_vc"](), mesh, material, light, 32, rasterizer, with_render_frame(mirrored))
    points = material.kd.sample(
        torch.stack(torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")[::-1], -1)[None]
        .flip(1)
        .add(0.5)
        .div(32)
        .mul(torch.tensor([-1.0, 1.0]))
        .add(torch.tensor([1.0, 0.0]))
        .contiguous(),
        None,
        rasterizer,
    )[0, ..., :3]
    close = (kd["albedo"] - points).abs().amax(-1)[covered] < 1e-3
    assert close.float().mean() > 0.99, float(close.float().mean())


def test_shader_bake_onto_another_mesh_fits_its_own_uvs(tmp_path):
    _, onto = _mirrored_spot(tmp_path)
    report = _run(tmp_path, "lambert_vc", "--onto", str(onto), "--steps", "8", "--lr", "0.05")
    assert report["onto"] == str(onto) and report["faces"] == 5856
    first, last = report["loss_first_last"]
    assert last < first
    out = tmp_path / "out"
    assert (out / "albedo.png").is_file() and (out / "mesh.obj").is_file()
    # The written mesh carries the onto mesh's (mirrored) UVs.
    uvs = [line for line in (out / "mesh.obj").read_text().splitlines() if line.startswith("vt ")]
    first_u = float(uvs[0].split()[1])
    assert first_u == pytest.approx(1.0 - float(SPOT_OBJ.read_text().split("\nvt ")[1].split()[0]), abs=1e-5)


def test_shader_bake_reads_a_fit_output_glb_with_its_normal_map(tmp_path):
    # A fit writes mesh.glb with kd, ORM and a tangent-space normal map (dmtrec.io.gltf.write_glb).
    from dmtrec.io.gltf import write_glb

    mesh, material = load_asset(SPOT_OBJ)
    bumps = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)) * 0.4 - 0.2
    normal = torch.nn.functional.normalize(bumps + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    kd = material.kd.data[0, ..., :3]
    ks = torch.tensor([0.0, 0.4, 0.0]).expand(8, 8, 3)
    glb = tmp_path / "run" / "mesh.glb"
    glb.parent.mkdir()
    write_glb(glb, mesh, {"kd": kd, "ks": ks, "normal": normal})
    parser = argparse.ArgumentParser()
    bake.add_arguments(parser)
    argv = ["--mesh", str(glb), "--probe", str(PROBE_HDR), "--shader", "simple_lit", "--out", str(tmp_path / "out")]
    torch.set_num_threads(1)
    report = bake.run_bake(parser.parse_args(argv + TINY + ["--steps", "6", "--lr", "0.05"]))
    assert report["faces"] == 5856
    first, last = report["loss_first_last"]
    assert last < first
    assert (tmp_path / "out" / "simple_lit.glsl").is_file()


def test_fixed_values_keep_their_start_while_the_others_fit():
    from dmtrec.assets.shader_bake import fit_shader
    from dmtrec.assets.unlit_bake import with_render_frame
    from dmtrec.assets.views import render_reference, view_cameras
    from dmtrec.render.shaders import ShaderMaterial

    mesh, material = load_asset(SPOT_OBJ)
    mesh = with_render_frame(mesh, material)
    light, rasterizer = load_probe(PROBE_HDR, 32), get_rasterizer("torch")
    cameras = view_cameras("sphere", 2, mesh, resolution=32, seed=0)
    references = render_reference(mesh, material, light, cameras, rasterizer)
    model = BUILTINS["toon"]()
    values = ShaderMaterial(model, initial_values(model, mesh, material, light, 16, rasterizer), 16)
    albedo = values.to_tensors()["albedo"].clone()
    torch.set_num_threads(1)
    fit_shader(mesh, values, light, cameras, references, rasterizer, ("albedo",), steps=3, lr=0.05, batch=2)
    fitted = values.to_tensors()
    assert torch.equal(fitted["albedo"], albedo)
    assert not torch.allclose(fitted["levels"], torch.tensor([0.15, 0.575, 1.0]))
    with pytest.raises(ValueError, match="fixed names no parameters \\['kd'\\]"):
        fit_shader(mesh, values, light, cameras, references, rasterizer, ("kd",), steps=1)
