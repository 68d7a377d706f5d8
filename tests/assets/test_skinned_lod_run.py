"""``dmtrec lod`` on a skinned asset as a run: progress bar, wandb run folder, checkpoints and a
resume that matches the uninterrupted run; never-worse and FLIP in its report (a small
procedural limb, two levels, a few steps each, two position-rate candidates)."""

from __future__ import annotations

import json

import pytest
from common import PROBE_HDR
from pytorch_lightning.cli import LightningArgumentParser
from run_helpers import Crash, Interrupt, flag_run

pytest.importorskip("fast_simplification", reason="dmtrec lod needs the 'lod' extra (fast-simplification)")
pytest.importorskip("scipy", reason="dmtrec lod's closest-surface lookup needs scipy")
pytestmark = pytest.mark.slow  # three two-level runs of a small limb: about a minute of CPU

from dmtrec.commands import lod  # noqa: E402
from dmtrec.commands.lod import settings_from_args  # noqa: E402
from dmtrec.commands.lod_skinned import run_skinned_lod  # noqa: E402
from dmtrec.runs.checkpoints import load_checkpoint_file  # noqa: E402
from dmtrec.runs.folder import RunConfig  # noqa: E402

ITERATIONS = 4
FLAGS = ["--levels", "0.5", "0.2", "--iterations", str(ITERATIONS), "--res", "48", "--min-res", "32", "--spp", "1",
         "--texture-res", "32", "--heldout-views", "2", "--validation-views", "2", "--poses", "4",
         "--probe-res", "32"]  # fmt: skip


@pytest.fixture(scope="module")
def asset(tmp_path_factory):
    from dmtrec.assets.procedural_skinned import write_skinned_asset

    return write_skinned_asset(
        tmp_path_factory.mktemp("asset") / "limb.glb", "limb", texture_res=32, around=12, rings=20
    )


@pytest.fixture(scope="module", name="flag_run")
def flag_run_fixture(asset, tmp_path_factory):
    return flag_run("lod", asset, PROBE_HDR, FLAGS, tmp_path_factory.mktemp("flags"))


def _levels(out):
    return json.loads((out / "report.json").read_text())["levels"]


def test_progress_bar_wandb_folder_and_final_checkpoint(flag_run):
    out, err = flag_run
    levels = _levels(out)
    assert f"level 1/2 ({levels[0]['budget']} triangles) {ITERATIONS}/{ITERATIONS}" in err
    assert "level 2/2: poses, references, decimate" in err and "Epoch" not in err
    assert list((out / "wandb").glob("offline-run-*")) and not (out / "run.lock").exists()
    state = load_checkpoint_file(out / "checkpoints" / "last.ckpt")["dmtrec_skinned_lod"]
    assert state["iteration"] == 2 * ITERATIONS and len(state["results"]) == 2 and state["fit"] is None


def test_report_says_which_level_was_kept_with_validation_and_flip_scores(flag_run):
    out, _ = flag_run
    for level in _levels(out):
        kept = level["kept"]
        assert kept in ("start", "pose_fitted")
        start, fitted = level["validation"]["start"]["psnr"], level["validation"]["pose_fitted"]["psnr"]
        assert (kept == "pose_fitted") == (fitted > start)
        assert level["final"] == level["pose_fitted" if kept == "pose_fitted" else "bind_pose_qem"]
        pytest.importorskip("flip_evaluator")
        assert 0 < level["bind_pose_qem"]["flip"] < 1 and 0 < level["pose_fitted"]["flip"] < 1


def test_interrupted_run_resumes_and_matches_the_uninterrupted_one(flag_run, asset, tmp_path):
    reference, _ = flag_run
    parser = LightningArgumentParser()
    lod.add_arguments(parser)
    args = parser.parse_args(["--mesh", str(asset), "--probe", str(PROBE_HDR), "--out", "x", *FLAGS])
    settings = settings_from_args(args)
    out, run = tmp_path / "lods", RunConfig(checkpoint_every=2)
    # Stop in the second level, one step after its checkpoint at step ITERATIONS + 2.
    with pytest.raises(Crash):
        run_skinned_lod(asset, PROBE_HDR, out, settings, levels=[0.5, 0.2], poses=4, run=run,
                        callbacks=[Interrupt(ITERATIONS + 3)])  # fmt: skip
    assert not (out / "report.json").exists()
    state = load_checkpoint_file(out / "checkpoints" / "last.ckpt")["dmtrec_skinned_lod"]
    assert state["iteration"] == ITERATIONS + 2 and len(state["results"]) == 1 and state["fit"]["iteration"] == 2
    run_skinned_lod(asset, PROBE_HDR, out, settings, levels=[0.5, 0.2], poses=4, run=run)

    def scores(levels):
        return [
            (lv["kept"], lv["bind_pose_qem"]["psnr"], lv["pose_fitted"]["psnr"], lv["pose_fitted"]["lr"])
            for lv in levels
        ]

    assert scores(_levels(out)) == scores(_levels(reference))
    for name in ("lod0.glb", "lod1.glb"):
        assert (out / name).read_bytes() == (reference / name).read_bytes()
