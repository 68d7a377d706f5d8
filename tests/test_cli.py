"""The `dmtrec` command's dispatch, config handling and one-line errors (no training here)."""

from __future__ import annotations

import pytest
import yaml
from common import CONFIGS, DATA, QUICKSTART, TINY

from dmtrec.cli import main


def test_usage_lists_every_command(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "export", "make-dataset", "eval"):
        assert f"  {command}" in out
    assert main(["--help"]) == 0


def test_unknown_command(capsys):
    assert main(["train"]) == 2
    assert "unknown command 'train'" in capsys.readouterr().err


def test_print_config_merges_repeated_configs_overrides_and_env(capsys, monkeypatch):
    monkeypatch.setenv("DMTREC_DATA", "/data/here")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(QUICKSTART), "-c", str(TINY), "--model.iters_mesh", "7", "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["iters_dmtet"] == 160  # from the second -c
    assert config["model"]["iters_mesh"] == 7  # dotted override wins
    assert config["model"]["dmtet"]["resolution"] == 32  # tiny_spot's, over quickstart's 48
    assert config["model"]["dmtet"]["scale"] == 2.4  # from quickstart, untouched
    assert config["model"]["reference_mesh"] == "/data/here/meshes/spot/spot.obj"
    assert config["run"] == {
        "name": "tiny_spot",
        "output_root": "outputs",
        "wandb": "offline",
        "project": "dmtrec",
        "checkpoint_every": 10,
        "export_frame": "dataset",
        "overwrite": False,
    }


def test_data_path_defaults_to_the_repository_data(capsys, monkeypatch):
    monkeypatch.delenv("DMTREC_DATA", raising=False)
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(QUICKSTART), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["data"]["reference_mesh"]["probe"] == str(
        DATA / "envmaps" / "mud_road_puresky_1k.hdr"
    )


def test_missing_config_file_is_one_line(capsys, tmp_path):
    assert main(["fit", "-c", str(tmp_path / "nope.yaml")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"dmtrec fit: error: {tmp_path / 'nope.yaml'}: config file not found"


def test_export_of_missing_checkpoint_is_one_line(capsys, tmp_path):
    assert main(["export", "--ckpt", str(tmp_path / "last.ckpt"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"dmtrec export: error: {tmp_path / 'last.ckpt'}: checkpoint not found"]


@pytest.mark.parametrize("command, option", [("make-dataset", "--probe"), ("eval", "--ref"), ("export", "--ckpt")])
def test_argparse_commands_are_wired(capsys, command, option):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert option in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["probe", "mesh"])
def test_unreadable_probe_or_mesh_is_one_line_before_training(capsys, tmp_path, kind):
    bad = tmp_path / ("bad.hdr" if kind == "probe" else "bad.obj")
    bad.write_text("v 1 2\n")
    override = (
        ["--model.light.init", str(bad)]
        if kind == "probe"
        else ["-c", str(CONFIGS / "refine_spot.yaml"), "--model.mesh_pass.init_mesh", str(bad)]
    )
    assert main(["fit", "-c", str(QUICKSTART), "--run.output_root", str(tmp_path / "out"), *override]) == 1
    err = capsys.readouterr().err
    problem = "not a Radiance HDR file" if kind == "probe" else "malformed 'v' line"
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(f"dmtrec fit: error: {bad}") and problem in errors[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "quickstart" / "checkpoints").exists()
