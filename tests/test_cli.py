"""The `dmtrec` command's dispatch, config handling and one-line errors (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dmtrec.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "configs" / "quickstart.yaml"
TINY = REPO / "experiments" / "configs" / "tests" / "tiny_spot.yaml"


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
    assert config["model"]["dmtet"]["resolution"] == 32  # from quickstart, untouched
    assert config["model"]["reference_mesh"] == "/data/here/meshes/spot/spot.obj"
    assert config["run"] == {"name": "tiny_spot", "output_root": "outputs", "wandb": "offline", "project": "dmtrec",
                             "checkpoint_every": 10}


def test_data_path_defaults_to_shared_data(capsys, monkeypatch):
    monkeypatch.delenv("DMTREC_DATA", raising=False)
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(QUICKSTART), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["data"]["probe"] == "../shared/data/envmaps/mud_road_puresky_1k.hdr"


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
