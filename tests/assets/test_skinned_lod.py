"""Skinned levels of detail: weight transfer, poses, pruning, and the fit recovering broken weights."""

import math

import pytest
import torch
from common import PROBE_HDR

pytest.importorskip("fast_simplification", reason="lod needs the 'lod' extra (fast-simplification)")
pytest.importorskip("scipy", reason="the closest-surface lookup needs scipy")

from dmtrec.assets.procedural import procedural_textures  # noqa: E402
from dmtrec.assets.procedural_skinned import skinned_limb  # noqa: E402
from dmtrec.assets.skinned_lod import (  # noqa: E402
    SkinnedLevel,
    SkinnedLodSettings,
    SkinnedScene,
    _log_rotation,
    animation_poses,
    evaluate,
    fit_level,
    prepare_level,
    prune_weights,
    random_poses,
    transfer_weights,
)
from dmtrec.datasets.reference_mesh import load_probe  # noqa: E402
from dmtrec.io.gltf_skin import quaternion_to_matrix, sample_animation  # noqa: E402
from dmtrec.render.material import TexturedMaterial  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.render.skinning import skinning_matrices  # noqa: E402


def _dense(joints, weights, num_joints):
    return torch.zeros(len(joints), num_joints).scatter_add_(1, joints, weights)


def test_transfer_at_the_source_vertices_is_the_source():
    mesh, skin, _ = skinned_limb(16, 24)
    joints, weights = transfer_weights(mesh, skin, mesh.v_pos)
    assert torch.allclose(_dense(joints, weights, 4), _dense(skin.joints, skin.weights, 4), atol=1e-5)


def test_transfer_blends_barycentrically_inside_a_triangle():
    mesh, skin, _ = skinned_limb(16, 24)
    face = mesh.t_pos_idx[200]
    corners = _dense(skin.joints[face], skin.weights[face], 4)  # [3, J]
    bary = torch.tensor([0.2, 0.3, 0.5])
    point = (mesh.v_pos[face] * bary[:, None]).sum(0, keepdim=True)
    joints, weights = transfer_weights(mesh, skin, point)
    assert torch.allclose(_dense(joints, weights, 4)[0], (corners * bary[:, None]).sum(0), atol=1e-4)


def test_animation_poses_are_the_animation_frames():
    _, skin, animations = skinned_limb(8, 8)
    poses = animation_poses(skin, animations, 3, seed=5)
    assert len(set(poses.times)) == 3 and all(0 <= t <= animations[0].duration for t in poses.times)
    for k, time_s in enumerate(poses.times):
        t, r, s = sample_animation(skin, animations[0], time_s)
        assert torch.allclose(poses.matrices(skin)[k], skinning_matrices(skin, r, t, s), atol=1e-6)
        assert poses.labels[k] == f"bend_twist@{time_s:.3f}s"


def test_random_poses_stay_within_the_animation_ranges():
    _, skin, animations = skinned_limb(8, 8)
    poses = random_poses(skin, animations, 64, seed=0)
    rest = quaternion_to_matrix(skin.rotation)
    rel = _log_rotation(rest.mT[None] @ poses.rotation)  # [P, J, 3] relative to the rest rotations
    assert torch.allclose(rel[:, 0], torch.zeros(64, 3), atol=1e-6)  # the root has no channel
    # Joint 1 only bends about Z up to 50 degrees; joint 3 about X up to 45.
    assert float(rel[:, 1, :2].abs().max()) < 1e-5 and float(rel[:, 1, 2].abs().max()) <= math.radians(50) + 1e-4
    assert float(rel[:, 1, 2].abs().max()) > math.radians(35)  # and the range is used
    assert float(rel[:, 3, 0].abs().max()) <= math.radians(45) + 1e-4
    # Without animations: every non-root joint within max_angle per axis.
    free = _log_rotation(rest.mT[None] @ random_poses(skin, [], 64, seed=0, max_angle=10).rotation)
    assert float(free[:, 0].abs().max()) < 1e-6 and math.radians(5) < float(free.abs().max()) <= math.radians(10) + 1e-4


def test_prune_drops_small_weights_and_renormalises():
    joints = torch.tensor([[0, 1, 2, 3]])
    joints_out, weights = prune_weights(joints, torch.tensor([[0.6, 0.3995, 0.0004, 0.0001]]), 4)
    assert torch.allclose(weights, torch.tensor([[0.6 / 0.9995, 0.3995 / 0.9995, 0.0, 0.0]]))
    assert torch.equal(joints_out, torch.tensor([[0, 1, 0, 0]]))


@pytest.fixture(scope="module")
def limb_scene():
    mesh, skin, animations = skinned_limb(24, 40)
    textures = procedural_textures(64)
    material = TexturedMaterial.from_tensors(kd=textures["kd"], ks=textures["ks"], normal=textures["normal"])
    material.requires_grad_(False)
    settings = SkinnedLodSettings(
        res=32, spp=1, iterations=15, texture_res=64, heldout_poses=3, heldout_views=2, probe_res=32
    )
    light = load_probe(PROBE_HDR, settings.probe_res)
    return SkinnedScene(mesh, material, skin, animations, light, get_rasterizer("torch", "cpu"), settings)


def test_fit_recovers_weights_broken_at_the_joints(limb_scene):
    scene = limb_scene
    level = prepare_level(scene, 400)
    good = evaluate(scene, level.mesh, level.joints, level.weights, level.material)
    # Half of every vertex's weight moved to the root joint: the limb bends half as much; weights
    # alone (positions and textures locked) must win back a good part of the loss.
    joints, weights = level.joints, level.weights * 0.5
    joints = torch.cat([torch.zeros_like(joints[:, :1]), joints[:, :3]], 1)
    weights = torch.cat([torch.full_like(weights[:, :1], 0.5), weights[:, :3]], 1)
    weights = weights / weights.sum(1, keepdim=True)
    broken = SkinnedLevel(level.budget, level.mesh, joints, weights, level.material)
    bad = evaluate(scene, broken.mesh, broken.joints, broken.weights, broken.material)
    # The last weights, not their running average (which lags over 15 steps).
    scene.settings.skip_train, scene.settings.weight_lr, scene.settings.average = ["position", "textures"], 0.3, None
    fitted = fit_level(scene, broken)
    scene.settings.skip_train, scene.settings.weight_lr, scene.settings.average = [], 0.01, 0.95
    after = evaluate(scene, fitted.mesh, fitted.joints, fitted.weights, fitted.material)
    assert bad["psnr"] < good["psnr"] - 3.0, (bad["psnr"], good["psnr"])
    assert after["psnr"] > bad["psnr"] + 0.4 * (good["psnr"] - bad["psnr"]), (bad["psnr"], after["psnr"], good["psnr"])
    # The fitted influences are on the simplex with at most 4 joints, unused slots joint 0.
    assert torch.allclose(
        fitted.weights.double().sum(1), torch.ones(len(fitted.weights), dtype=torch.float64), atol=1e-6
    )
    assert bool((fitted.joints[fitted.weights == 0] == 0).all()) and fitted.weights.shape[1] == 4
    assert torch.equal(fitted.mesh.v_pos, level.mesh.v_pos)  # positions were locked


def test_fit_with_everything_locked_scores_as_the_baseline(limb_scene):
    scene = limb_scene
    level = prepare_level(scene, 400)
    scene.settings.skip_train = ["position", "weights", "textures"]
    scene.settings.iterations = 2
    fitted = fit_level(scene, level)
    scene.settings.skip_train, scene.settings.iterations = [], 15
    a = evaluate(scene, level.mesh, level.joints, level.weights, level.material)
    c = evaluate(scene, fitted.mesh, fitted.joints, fitted.weights, fitted.material)
    # Only the pruning of the logits' 1e-4 floor separates them.
    assert abs(a["psnr"] - c["psnr"]) < 0.05 and a["worst_pose"] == c["worst_pose"]


def test_lod_command_detects_the_skin_and_writes_skinned_levels(tmp_path, capsys):
    from node_tools import validate_glb

    from dmtrec import cli
    from dmtrec.assets.procedural_skinned import write_skinned_asset
    from dmtrec.io.gltf_skin import read_skinned_glb

    asset = write_skinned_asset(tmp_path / "limb.glb", "limb", texture_res=32, around=12, rings=20)
    out = tmp_path / "out"
    argv = ["lod", "--mesh", str(asset), "--probe", str(PROBE_HDR), "--levels", "0.5", "0.2", "--out", str(out),
            "--iterations", "2", "--res", "48", "--min-res", "32", "--spp", "1", "--texture-res", "32",
            "--heldout-views", "1", "--poses", "3", "--animation", "bend_twist", "--probe-res", "32"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err[-3000:]
    printed = capsys.readouterr().out
    assert "lod1: " in printed and "bind-pose QEM" in printed
    report = (out / "report.json").read_text()
    assert '"skinned": true' in report and '"worst_pose"' in report
    for index, fraction in enumerate((0.5, 0.2)):
        mesh, _, skin, animations = read_skinned_glb(out / f"lod{index}.glb")
        assert mesh.num_faces <= fraction * 480 and skin.num_joints == 4 and animations[0].name == "bend_twist"
        assert torch.allclose(
            skin.weights.double().sum(1), torch.ones(mesh.num_vertices, dtype=torch.float64), atol=1e-6
        )
    issues = validate_glb(out / "lods.glb")["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:5]
    assert (out / "contact_sheet.png").is_file()
    assert cli.main(argv[:-2] + ["--probe-res", "64"]) != 0  # another configuration on the run folder: refused
    assert f"{out}: holds a lod run of another configuration (skinned_settings.probe_res differ)" in (
        capsys.readouterr().err
    )


def test_selection_steps_halve_the_candidates_down_to_one():
    from dmtrec.assets.skinned_lod import selection_steps

    assert selection_steps(SkinnedLodSettings(iterations=150, lr_candidates=None)) == []  # one rate: no halving
    assert selection_steps(SkinnedLodSettings(iterations=150, lr_candidates=[1e-4, 1e-3])) == [75]
    # 4 candidates: 2 rounds (4 -> 2 -> 1); 3 candidates too (3 -> 2 -> 1); 5: 3 rounds.
    assert selection_steps(SkinnedLodSettings(iterations=150, lr_candidates=[1, 2, 3, 4])) == [50, 100]
    assert selection_steps(SkinnedLodSettings(iterations=150, lr_candidates=[1, 2, 3])) == [50, 100]
    assert selection_steps(SkinnedLodSettings(iterations=100, lr_candidates=[1, 2, 3, 4, 5])) == [25, 50, 75]


def test_level_fit_keeps_the_start_when_the_fit_is_worse_on_validation(limb_scene):
    from dataclasses import replace

    from dmtrec.assets.skinned_lod import LevelFit

    scene, saved = limb_scene, limb_scene.settings
    # Position rates of a third and a whole bounding radius per step: both candidates wreck the level.
    scene.settings = replace(saved, iterations=4, lr_candidates=[0.3, 1.0])
    try:
        fit = LevelFit(scene, 400)
        while not fit.done:
            fit.step()
        baseline, fitted, final = fit.finish()
    finally:
        scene.settings = saved
    (round_,) = fitted.report["lr_selection"]
    assert round_["step"] == 2 and len(round_["kept_lr"]) == 1
    best = max(round_["validation_psnr"], key=round_["validation_psnr"].get)
    assert round_["kept_lr"] == [best] and fitted.report["lr"] == best
    assert fitted.report["validation"]["psnr"] < baseline.report["validation"]["psnr"] - 1.0
    assert final is baseline and final.report["kept"] == "start"


def test_averaged_positions_are_the_debiased_running_mean_of_the_steps(limb_scene):
    from dataclasses import replace

    from dmtrec.assets.skinned_lod import PoseFit, step_draw

    scene, saved = limb_scene, limb_scene.settings
    scene.settings = replace(saved, average=0.5)
    try:
        level = prepare_level(scene, 400)
        fit = PoseFit(scene, level, 1e-3, laplace_weight=0.0)
        optimizer = torch.optim.Adam(fit.groups())
        offsets = []
        for it in range(3):
            loss = fit.loss(step_draw(scene, it))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            fit.stepped(float(loss.detach()), 0.0)
            offsets.append(fit.offset.detach().clone())
        result = fit.result()
    finally:
        scene.settings = saved
    # EMA from zero with decay 0.5 over x1, x2, x3, divided by 1 - 0.5^3: (x1 + 2 x2 + 4 x3) / 7.
    expected = (offsets[0] + 2 * offsets[1] + 4 * offsets[2]) / 7
    assert not torch.allclose(offsets[2], expected, atol=1e-7)  # the steps moved the positions
    assert torch.allclose(result.mesh.v_pos, level.mesh.v_pos + expected * scene.radius, atol=1e-6)


def test_keep_best_takes_the_best_validation_state_of_any_halving_or_the_end(limb_scene):
    from dataclasses import replace

    from dmtrec.assets.skinned_lod import LevelFit

    scene, saved = limb_scene, limb_scene.settings
    scene.settings = replace(saved, iterations=4, lr_candidates=[1e-4, 0.3], keep_best=True)
    try:
        fit = LevelFit(scene, 400)
        while not fit.done:
            fit.step()
        _, fitted, _ = fit.finish()
        end = fit.candidates[fit.active[0]].result()
        end_psnr = evaluate(scene, end.mesh, end.joints, end.weights, end.material, split="validation")["psnr"]
    finally:
        scene.settings = saved
    (round_,) = fitted.report["lr_selection"]
    halving = max(round_["validation_psnr"].values())  # rounded to 3 decimals
    assert fitted.report["validation"]["psnr"] >= max(halving - 1e-3, end_psnr - 1e-6)
    assert fitted.report["step"] in (2, 4) and (fitted.report["step"] == 4) == (end_psnr >= halving - 1e-3)
