"""``dmtrec bake`` as a run (like ``dmtrec lod``: progress bar, run folder, checkpoints, resume,
config files) and its never-worse rule (the bake kept is the better on the validation views)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from common import CONFIGS, PROBE_HDR, SPOT_OBJ
from pytorch_lightning.cli import LightningArgumentParser
from run_helpers import Crash, Interrupt, config_file_run, flag_run, printed_config

from dmtrec.assets.procedural import write_procedural_asset
from dmtrec.assets.unlit_bake import BakeResult, finish_bake, point_sample, with_render_frame
from dmtrec.assets.views import render_reference, view_cameras
from dmtrec.commands import bake
from dmtrec.datasets.reference_mesh import load_asset, load_probe
from dmtrec.render.raster import get_rasterizer
from dmtrec.runs.checkpoints import load_checkpoint_file

STEPS = 6
# (flag, config key, value): the same bake as flags and as a config file.
OPTIONS = [
    ("--target", "target", "vertex"),
    ("--views", "views", 6),
    ("--held-out", "held_out", 2),
    ("--val-views", "val_views", 2),
    ("--res", "res", 32),
    ("--steps", "steps", STEPS),
    ("--batch", "batch", 2),
    ("--probe-res", "probe_res", 32),
]


def _flags():
    return [str(v) for flag, _, value in OPTIONS for v in (flag, value)]


def _outcome(out):
    """The report's scores and losses, and the written colours' bytes."""
    report = json.loads((out / "report.json").read_text())
    return report["scores_held_out"], report["loss_first_last"], report["kept"], (out / "baked.ply").read_bytes()


@pytest.fixture(scope="module")
def asset(tmp_path_factory):
    return write_procedural_asset(tmp_path_factory.mktemp("asset"), nu=24, nv=16, texture_res=32)


@pytest.fixture(scope="module", name="flag_run")
def flag_run_fixture(asset, tmp_path_factory):
    """``(out, stderr)`` of an uninterrupted bake given as command-line flags."""
    torch.set_num_threads(1)
    return flag_run("bake", asset, PROBE_HDR, _flags(), tmp_path_factory.mktemp("flags"))


def test_progress_bar_counts_the_bake_steps_on_stderr(flag_run):
    _, err = flag_run
    assert f"bake {STEPS}/{STEPS}" in err and "left" in err
    assert "Epoch" not in err


def test_run_folder_has_offline_wandb_config_and_final_checkpoint(flag_run):
    out, _ = flag_run
    assert list((out / "wandb").glob("offline-run-*")), list(out.iterdir())
    assert not (out / "run.lock").exists()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["settings"]["steps"] == STEPS and saved["settings"]["target"] == "vertex"
    state = load_checkpoint_file(out / "checkpoints" / "last.ckpt")["dmtrec_bake"]
    assert state["fit"]["iteration"] == STEPS and len(state["losses"]) == STEPS


@pytest.mark.slow
def test_interrupted_bake_resumes_and_matches_the_uninterrupted_one(flag_run, asset, tmp_path):
    reference, _ = flag_run
    parser = LightningArgumentParser()
    bake.add_arguments(parser)
    out = tmp_path / "bake"
    argv = [
        "--mesh",
        str(asset),
        "--probe",
        str(PROBE_HDR),
        "--out",
        str(out),
        *_flags(),
        "--run.checkpoint_every",
        "2",
    ]
    args = parser.parse_args(argv)
    # Stop one step after the checkpoint at step 2, as a kill would.
    with pytest.raises(Crash):
        bake.run_bake(args, callbacks=[Interrupt(3)])
    assert not (out / "report.json").exists()  # does not look finished
    assert load_checkpoint_file(out / "checkpoints" / "last.ckpt")["dmtrec_bake"]["fit"]["iteration"] == 2
    bake.run_bake(parser.parse_args(argv))
    assert _outcome(out) == _outcome(reference)
    # Another configuration on the same folder is refused, naming what differs.
    with pytest.raises(ValueError, match="settings.steps"):
        bake.run_bake(parser.parse_args([*argv, "--steps", "7"]))


@pytest.mark.slow
def test_config_file_bake_equals_the_flag_bake(flag_run, asset, tmp_path, capsys):
    reference, _ = flag_run
    out, path = config_file_run("bake", {key: value for _, key, value in OPTIONS}, asset, PROBE_HDR, tmp_path, capsys)
    assert _outcome(out) == _outcome(reference)
    printed = printed_config("bake", ["-c", str(path), "--steps", "9"], capsys)
    assert printed["steps"] == 9 and printed["target"] == "vertex" and printed["run"]["wandb"] == "offline"


@pytest.fixture(scope="module")
def scene(asset):
    torch.set_num_threads(1)
    rasterizer = get_rasterizer("torch")
    mesh, material = load_asset(asset)
    mesh = with_render_frame(mesh, material)
    light = load_probe(PROBE_HDR, 32)
    views = {}
    for name, seed in (("train", 0), ("held", 1), ("val", 2)):
        cams = view_cameras("sphere", 4, mesh, resolution=32, seed=seed)
        views[name] = (cams, render_reference(mesh, material, light, cams, rasterizer))
    _, point = point_sample(mesh, material, light, None, "vertex", rasterizer)
    return mesh, point, views, rasterizer


def _finish(scene, point, optimised):
    mesh, _, views, rasterizer = scene
    result = BakeResult("vertex", mesh, point, optimised)
    return finish_bake(result, True, *views["train"], *views["held"], rasterizer, 32, validation=views["val"])


def test_a_worse_optimised_bake_is_not_kept(scene):
    _, point, _, _ = scene
    noisy = (point + 0.3 * torch.randn(point.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    result = _finish(scene, point, noisy)
    assert result.selection["optimised"] < result.selection["point_sampled"]
    assert result.kept == "point_sampled" and torch.equal(result.final, point)


def test_a_better_optimised_bake_is_kept(scene):
    # The roles swapped: the point sample is the damaged one.
    _, point, _, _ = scene
    damaged = (point * 0.5).clamp(0, 1)
    result = _finish(scene, damaged, point)
    assert result.selection["optimised"] > result.selection["point_sampled"]
    assert result.kept == "optimised" and torch.equal(result.final, point)


def test_without_validation_views_the_optimised_bake_is_kept(scene):
    mesh, point, views, rasterizer = scene
    result = BakeResult("vertex", mesh, point, (point * 0.5).clamp(0, 1))
    result = finish_bake(result, True, *views["train"], *views["held"], rasterizer, 32)
    assert result.selection is None and result.kept == "optimised"


def test_shipped_config_parses_with_the_data_folder_expanded(capsys):
    printed = printed_config("bake", ["-c", str(CONFIGS / "bake" / "spot.yaml")], capsys)
    assert Path(printed["mesh"]) == SPOT_OBJ and Path(printed["probe"]) == PROBE_HDR
    assert printed["target"] == "texture" and printed["steps"] == 300 and printed["run"]["wandb"] == "offline"
