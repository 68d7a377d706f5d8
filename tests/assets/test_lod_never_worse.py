"""``dmtrec lod`` never worse: each level keeps the better of its start (QEM + transferred
textures) and its optimised result on validation views; positions frozen below a pixel."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from common import PROBE_HDR, SPOT_OBJ

pytest.importorskip("fast_simplification", reason="dmtrec lod needs the 'lod' extra (fast-simplification)")
pytest.importorskip("scipy", reason="dmtrec lod's closest-surface lookup needs scipy")

from dmtrec.assets.lod import LodSettings, decimate, error_in_pixels, geometric_error  # noqa: E402
from dmtrec.assets.lod_transfer import transfer_textures  # noqa: E402
from dmtrec.assets.views import view_cameras  # noqa: E402
from dmtrec.commands.lod import run_lod  # noqa: E402
from dmtrec.core.mesh import Mesh  # noqa: E402
from dmtrec.datasets.reference_mesh import load_asset, load_probe  # noqa: E402
from dmtrec.geometry.uv_unwrap import uv_unwrap  # noqa: E402
from dmtrec.io.obj import read_obj  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.runs.folder import RunConfig  # noqa: E402
from dmtrec.systems.lod import LodSystem  # noqa: E402

BUDGET, RES = 60, 48


def _settings(**changes) -> LodSettings:
    small = dict(train_views=8, heldout_views=3, validation_views=3, texture_res=64, batch=2, spp=1, flip=False)
    return LodSettings(**{**small, "level_res": [RES], **changes})


@pytest.fixture(scope="module")
def spot():
    return load_asset(SPOT_OBJ)


def _fit(spot, settings) -> LodSystem:
    mesh, material = spot
    light = load_probe(PROBE_HDR, probe_res=32)
    system = LodSystem(mesh, material, light, [BUDGET], settings, get_rasterizer("torch", "cpu"))
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(system)
    return system


def test_exploding_optimisation_keeps_the_start_and_writes_its_files(spot, tmp_path):
    """lr 5 bounding radii per step throws the vertices about: the report says "start" and
    ``lod0`` holds the start's mesh and textures, rebuilt here (decimation, atlas, transfer)."""
    mesh, material = spot
    settings = _settings(iterations=3, lr=5.0, freeze_below_px=0.0, train_views=2, heldout_views=2, validation_views=2)
    report = run_lod(SPOT_OBJ, PROBE_HDR, tmp_path / "run", settings, faces=[BUDGET], run=RunConfig(wandb="disabled"))
    (level,) = report["levels"]
    assert level["positions"] == "trained" and level["kept"] == "start"
    assert level["validation"]["optimised"]["psnr"] < level["validation"]["start"]["psnr"] - 3.0, level["validation"]
    assert level["final"] == level["qem_only"]
    assert json.loads((tmp_path / "run" / "report.json").read_text())["levels"][0]["kept"] == "start"
    start = uv_unwrap(decimate(mesh, BUDGET), texture_res=64).mesh
    kd = transfer_textures(mesh, material, start, 64, get_rasterizer("torch", "cpu"))["kd"]
    written, textures = read_obj(tmp_path / "run" / "lod0" / "mesh.obj")
    assert torch.allclose(written.v_pos, start.v_pos, atol=1e-5)
    assert torch.allclose(written.v_tex[written.t_tex_idx], start.v_tex[start.t_tex_idx], atol=1e-5)
    # 8-bit sRGB PNG: a step is at most ~0.009 in linear units.
    assert textures["kd"].shape == kd.shape and torch.allclose(textures["kd"], kd, atol=0.01)


@pytest.mark.slow
def test_better_optimisation_is_kept(spot):
    """25 ordinary steps on Spot at 1 %: the optimised level scores higher on the validation
    views, is kept, and the level is the optimised mesh (moved positions, trained textures)."""
    system = _fit(spot, _settings(iterations=25, freeze_below_px=0.0))
    (level,) = system.levels()
    report = level.report
    assert report["validation"]["optimised"]["psnr"] > report["validation"]["start"]["psnr"]
    assert report["kept"] == "optimised" and report["final"] == report["optimised"]
    start = system.current["qem"]["v_pos"]
    assert not torch.allclose(level.mesh.v_pos, start)
    assert torch.equal(level.mesh.v_pos, system.current_mesh().v_pos)
    assert torch.equal(level.material.kd.data, system.material.kd.data)


def test_positions_freeze_below_the_pixel_threshold(spot):
    """With a threshold above the start's error, the offsets never move (textures still train)."""
    system = _fit(spot, _settings(iterations=2, freeze_below_px=1e6))
    report = system.levels()[0].report
    assert report["positions"] == "frozen"
    assert report["geometric_error"]["max_px"] < 1e6
    assert torch.equal(system.offset.detach(), torch.zeros_like(system.offset))
    assert not torch.equal(system.material.kd.data, system.current["qem_textures"]["kd"])


def test_geometric_error_of_a_lifted_square_projects_to_its_pixel_offset():
    """A square lifted by 0.1 off the original square: every sample is 0.1 away (one-sided
    distance 0.1 / the bounding radius sqrt(2)); in pixels, the offset a camera of the level's
    views projects a 0.1 sideways step at the centre to."""
    square = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    original, lifted = Mesh(square, faces), Mesh(square + torch.tensor([0.0, 0.0, 0.1]), faces)
    error = geometric_error(original, lifted)
    assert error["mean"] == pytest.approx(0.1 / 2**0.5, rel=1e-5) and error["max"] == pytest.approx(0.1 / 2**0.5)
    resolution = 100
    cams = view_cameras("sphere", 1, original, 45.0, resolution, seed=3)
    right = cams.c2w[0, :3, 0]
    clip = cams.project(torch.stack([torch.zeros(3), 0.1 * right]))[0]
    pixels = float((clip[1, 0] / clip[1, 3] - clip[0, 0] / clip[0, 3]).abs()) * resolution / 2
    assert error_in_pixels(original, error["max"], resolution, 45.0) == pytest.approx(pixels, rel=1e-4)


def _retry_settings(**changes) -> LodSettings:
    """Positions thrown about (lr 5 bounding radii per step), textures at an ordinary rate: the
    optimised level loses to its start and the level is trained again with frozen positions."""
    return _settings(
        iterations=3, lr=5.0, texture_lr=0.003, train_views=4, heldout_views=2, validation_views=2, **changes
    )


def test_lost_optimisation_is_retried_with_frozen_positions(spot):
    """The retry's candidate has the start's positions and trained textures; the level written is
    the best of start, optimised and retry on the validation views (ties keep the earlier one)."""
    system = _fit(spot, _retry_settings())
    (level,) = system.levels()
    report = level.report
    validation = report["validation"]
    assert set(validation) == {"start", "optimised", "optimised_frozen"}
    assert validation["optimised"]["psnr"] < validation["start"]["psnr"] - 3.0, validation
    assert "optimised_frozen" in report and system.iteration == 2 * 3 and system.total_iters == 2 * 3
    best = max(("start", "optimised", "optimised_frozen"), key=lambda name: validation[name]["psnr"])
    assert report["kept"] == best
    # The retry ran last: its offsets never moved, its textures did.
    assert torch.equal(system.offset.detach(), torch.zeros_like(system.offset))
    assert not torch.equal(system.material.kd.data, system.current["qem_textures"]["kd"])
    start = system.current["qem"]["v_pos"]
    if best != "optimised":
        assert torch.equal(level.mesh.v_pos, start) and report["positions"] == "frozen"
    expected = {"start": report["qem_only"], "optimised": report["optimised"]}
    expected["optimised_frozen"] = report["optimised_frozen"]
    assert report["final"] == expected[best]


def test_no_retry_when_switched_off(spot):
    system = _fit(spot, _retry_settings(retry_frozen=False))
    report = system.levels()[0].report
    assert report["kept"] == "start" and "optimised_frozen" not in report and system.iteration == 3
    assert set(report["validation"]) == {"start", "optimised"}


@pytest.mark.slow
@pytest.mark.parametrize("stop", [3, 4])
def test_run_interrupted_at_or_in_the_retry_resumes_to_the_same_level(spot, tmp_path, stop):
    """Stopped before the retry's first step (its switch pending in the checkpoint, with the first
    phase's optimizer) or inside it: the resumed run writes what an uninterrupted one does."""
    from run_helpers import Crash, Interrupt

    settings = _retry_settings()
    run = RunConfig(wandb="disabled", checkpoint_every=1)
    whole = run_lod(SPOT_OBJ, PROBE_HDR, tmp_path / "whole", settings, faces=[BUDGET], run=run)
    with pytest.raises(Crash):
        run_lod(SPOT_OBJ, PROBE_HDR, tmp_path / "cut", settings, faces=[BUDGET], run=run, callbacks=[Interrupt(stop)])
    resumed = run_lod(SPOT_OBJ, PROBE_HDR, tmp_path / "cut", settings, faces=[BUDGET], run=run)
    keys = ("kept", "final", "validation", "optimised", "optimised_frozen", "positions")
    assert [{k: lv[k] for k in keys} for lv in resumed["levels"]] == [
        {k: lv[k] for k in keys} for lv in whole["levels"]
    ]
    assert (tmp_path / "cut" / "lod0" / "mesh.obj").read_text() == (
        tmp_path / "whole" / "lod0" / "mesh.obj"
    ).read_text()
