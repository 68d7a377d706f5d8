"""quality.py --suite: the suite's scenes fitted from their path-traced Z-up folders, with the true
genus beside the found one. The smoke run is tiny (a 24^2 torus, 10 + 5 iterations)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from common import REPO


def _load(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _quality():
    return _load("quality", REPO / "experiments" / "benchmarks" / "quality.py")


def test_scenes_state_their_topology_and_both_parts_cover_genus_0_to_2():
    from dmtrec.assets.procedural_shapes import SHAPES

    scenes = _load("scenes", REPO / "experiments" / "benchmarks" / "suite" / "scenes.py").SCENES
    for scene in scenes.values():
        kind, _, where = scene.source.partition(":")
        if kind == "shape":  # the suite's truth is the shape's own
            assert (scene.genus, scene.components) == (SHAPES[where].genus, SHAPES[where].components)
    for part in ("tuning", "held_out"):
        assert {s.genus for s in scenes.values() if s.part == part} == {0, 1, 2}


def test_nerf_folder_args_and_unknown_scene(capsys):
    quality = _quality()
    argv = quality.nerf_folder_args(REPO / "x", REPO / "m.obj", "z")
    assert argv[argv.index("--data.nerf_synthetic.world_up") + 1] == "z"
    assert argv[argv.index("--model.reference_mesh") + 1] == str(REPO / "m.obj")
    with pytest.raises(SystemExit):
        quality.main(["--suite", "--scenes", "spot-nerf"])  # not a suite scene
    assert "unknown scene 'spot-nerf'" in capsys.readouterr().err


@pytest.mark.slow
def test_suite_smoke_run(tmp_path, capsys):
    quality = _quality()
    argv = ["--suite", "--scenes", "torus", "--seeds", "0", "--iters", "10", "5", "--out", str(tmp_path)]
    argv += ["--res", "24", "--views", "4", "--spp", "2", "--test-views", "2", "--json", str(tmp_path / "rows.json")]
    argv += ["--set", "model.dmtet.resolution=32", "model.metric_samples=2000", "model.material.texture_res=64"]
    assert quality.main(argv) == 0
    (row,) = json.loads((tmp_path / "rows.json").read_text())
    assert "failed" not in row and row["true_genus"] == 1 and row["part"] == "tuning"
    assert row["iterations"] == 15 and row["topology"]["genus"] == row["genus"]
    assert row["topology_ok"] == ("yes" if (row["components"], row["genus"]) == (1, 1) else "NO")
    scene = json.loads((tmp_path / "datasets" / "torus_r24_v4_spp2" / "scene.json").read_text())
    assert (scene["genus"], scene["world_up"], scene["part"]) == (1, "z", "tuning")
    out = capsys.readouterr().out
    assert "true" in out and "tuning: 1 runs, true genus and components in" in out
