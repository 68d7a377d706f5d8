"""``dmtrec lod`` as a run: the fit's progress bar, wandb run folder, checkpoints and resume, and
config files parsed like the fit's (one small procedural asset, two levels, a few steps each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from common import CONFIGS, PROBE_HDR, SPOT_OBJ
from pytorch_lightning.cli import LightningArgumentParser
from run_helpers import Crash, Interrupt, config_file_run, flag_run, printed_config

pytest.importorskip("fast_simplification", reason="dmtrec lod needs the 'lod' extra (fast-simplification)")
pytest.importorskip("scipy", reason="dmtrec lod's closest-surface lookup needs scipy")

from dmtrec import cli  # noqa: E402
from dmtrec.assets.procedural import write_procedural_asset  # noqa: E402
from dmtrec.commands import lod  # noqa: E402
from dmtrec.commands.lod import run_lod, settings_from_args  # noqa: E402
from dmtrec.runs.checkpoints import load_checkpoint_file  # noqa: E402
from dmtrec.runs.folder import RunConfig  # noqa: E402

ITERATIONS = 4
# (flag, config key, value): the same run as flags and as a config file.
OPTIONS = [
    ("--faces", "faces", [400, 100]),
    ("--iterations", "iterations", ITERATIONS),
    ("--level-res", "level_res", [40, 32]),
    ("--texture-res", "texture_res", 64),
    ("--train-views", "train_views", 4),
    ("--heldout-views", "heldout_views", 2),
    ("--validation-views", "validation_views", 2),
    ("--freeze-below-px", "freeze_below_px", 0.5),
    ("--probe-res", "probe_res", 32),
    ("--batch", "batch", 2),
    ("--spp", "spp", 1),
    ("--no-flip", "no_flip", True),
    # Two phases per level at most: the frozen-position retry is tested in test_lod_never_worse.py.
    ("--no-retry-frozen", "no_retry_frozen", True),
]


def _flags():
    argv = []
    for flag, _, value in OPTIONS:
        if value is True:
            argv.append(flag)
        else:
            argv += [flag, *(str(v) for v in (value if isinstance(value, list) else [value]))]
    return argv


def _scores(out):
    """Every level's held-out scores and final training loss, from report.json."""
    report = json.loads((out / "report.json").read_text())
    keys = ("psnr", "ssim", "heldout_loss")
    return [
        (
            lv["triangles"],
            [lv[kind][k] for kind in ("qem_only", "optimised", "final") for k in keys],
            lv["train_loss"]["last"],
            lv["kept"],
            lv["validation"],
            lv["positions"],
        )
        for lv in report["levels"]
    ]


@pytest.fixture(scope="module")
def asset(tmp_path_factory):
    return write_procedural_asset(tmp_path_factory.mktemp("asset"), nu=40, nv=24, texture_res=64)


@pytest.fixture(scope="module", name="flag_run")
def flag_run_fixture(asset, tmp_path_factory):
    """``(out, stderr)`` of an uninterrupted lod given as command-line flags."""
    return flag_run("lod", asset, PROBE_HDR, _flags(), tmp_path_factory.mktemp("flags"))


@pytest.mark.slow
def test_progress_bar_shows_each_level_and_its_steps(flag_run):
    out, err = flag_run
    counts = [score[0] for score in _scores(out)]
    assert f"level 1/2 ({counts[0]} triangles) {ITERATIONS}/{ITERATIONS}" in err
    assert f"level 2/2 ({counts[1]} triangles) {ITERATIONS}/{ITERATIONS}" in err
    assert "level 2/2: decimate, UV unwrap" in err
    assert "Epoch" not in err


@pytest.mark.slow
def test_run_folder_has_offline_wandb_run_config_and_final_checkpoint(flag_run):
    out, _ = flag_run
    assert list((out / "wandb").glob("offline-run-*")), list(out.iterdir())
    assert (out / "wandb_id").is_file() and not (out / "run.lock").exists()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["faces"] == [400, 100] and saved["settings"]["iterations"] == ITERATIONS
    state = load_checkpoint_file(out / "checkpoints" / "last.ckpt")["dmtrec_lod"]
    assert state["iteration"] == 2 * ITERATIONS and len(state["results"]) == 2


@pytest.mark.slow
def test_interrupted_run_resumes_its_level_and_matches_the_uninterrupted_one(flag_run, asset, tmp_path, caplog):
    reference, _ = flag_run
    parser = LightningArgumentParser()
    lod.add_arguments(parser)
    args = parser.parse_args(["--mesh", str(asset), "--probe", str(PROBE_HDR), "--out", "x", *_flags()])
    settings = settings_from_args(args)
    out = tmp_path / "lods"
    run = RunConfig(checkpoint_every=2)
    # Stop in the second level, one step after its checkpoint at step ITERATIONS + 2.
    with pytest.raises(Crash):
        run_lod(asset, PROBE_HDR, out, settings, faces=[400, 100], run=run, callbacks=[Interrupt(ITERATIONS + 3)])
    assert not (out / "report.json").exists()  # does not look finished
    state = load_checkpoint_file(out / "checkpoints" / "last.ckpt")["dmtrec_lod"]
    assert state["iteration"] == ITERATIONS + 2 and len(state["results"]) == 1
    caplog.clear()
    with caplog.at_level("INFO", logger="dmtrec.systems.lod"):
        run_lod(asset, PROBE_HDR, out, settings, faces=[400, 100], run=run)
    started = [r.getMessage() for r in caplog.records if "QEM-only PSNR" in r.getMessage()]
    assert started == [], started  # level 1 skipped, level 2 resumed from its checkpoint: none prepared again
    assert _scores(out) == _scores(reference)
    for name in ("lod0/mesh.obj", "lod1/mesh.obj"):
        assert (out / name).read_text() == (reference / name).read_text()


@pytest.mark.slow
def test_config_file_run_equals_the_flag_run(flag_run, asset, tmp_path, capsys):
    reference, _ = flag_run
    out, path = config_file_run("lod", {key: value for _, key, value in OPTIONS}, asset, PROBE_HDR, tmp_path, capsys)
    assert _scores(out) == _scores(reference)
    printed = printed_config("lod", ["-c", str(path), "--iterations", "7"], capsys)
    assert printed["iterations"] == 7 and printed["faces"] == [400, 100] and printed["run"]["wandb"] == "offline"


def test_shipped_config_parses_with_the_data_folder_expanded(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["lod", "-c", str(CONFIGS / "lod" / "spot.yaml"), "--print_config"])
    assert stop.value.code in (0, None), capsys.readouterr().err
    printed = yaml.safe_load(capsys.readouterr().out)
    assert Path(printed["mesh"]) == SPOT_OBJ and Path(printed["probe"]) == PROBE_HDR
    assert printed["levels"] == [0.25, 0.05, 0.01] and printed["run"]["wandb"] == "offline"
