"""`dmtrec fit` end to end with ``model.geometry: flexicubes`` on the tiny Spot dataset: a kill in
pass 1, export of that checkpoint, resume to the end, outputs and a quality bound.

Configs: quickstart.yaml + tests/tiny_spot.yaml (160 + 40 iterations, 48 x 48 views) +
quickstart_flexi.yaml, on a 26-cell grid with learned weights, as in test_fit_end_to_end.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from common import CONFIGS, QUICKSTART, TINY

from dmtrec.cli import main
from dmtrec.systems.pipeline import ReconstructionSystem

TOTAL_ITERS = 200  # 160 (pass 1) + 40 (pass 2)
KILL_AT = 73
# Chamfer-L1 in units of Spot's bounding-box size (5000 samples). Measured on this config, seed 0:
# 0.052 (DMTet at grid 32 on the same budget: 0.037-0.044); the best-fitting sphere scores 0.098,
# the sampling floor 0.010.
CHAMFER_BOUND = 0.06

pytestmark = pytest.mark.slow


class SimulatedKill(Exception):
    pass


def fit(data: Path, output_root: Path, *extra: str) -> int:
    # tiny_spot pins DMTet's pass-1 values (grid 32, random start, no filling); quickstart_flexi comes
    # after it. Grid 26 and learned weights (nvdiffrec's) as the bound below was measured, and so that
    # the checkpoint carries learnt weights (the quick start's are frozen: weight_lr 0).
    configs = [QUICKSTART, TINY, CONFIGS / "quickstart_flexi.yaml"]
    argv = ["fit"] + [arg for c in configs for arg in ("-c", str(c))]
    argv += ["--data.nerf_synthetic.path", str(data), "--run.output_root", str(output_root), "--run.name", "tiny_flexi"]
    argv += ["--model.dmtet.resolution", "26", "--model.dmtet.weight_lr", "1"]
    return main(argv + list(extra))


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_flexicubes_fit_killed_exported_resumed(tmp_path, monkeypatch, spot_views):
    run = tmp_path / "tiny_flexi"
    last = run / "checkpoints" / "last.ckpt"
    original = ReconstructionSystem.training_step

    def dying_step(self, batch, batch_idx):
        if self.iteration == KILL_AT:
            raise SimulatedKill(f"killed at iteration {KILL_AT}")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ReconstructionSystem, "training_step", dying_step)
    with pytest.raises(SimulatedKill):
        fit(spot_views, tmp_path)
    saved = ckpt(last)
    assert saved["dmtrec_pipeline"] == {"stage": "dmtet", "iteration": 70}
    assert saved["hyper_parameters"]["geometry"] == "flexicubes"
    state = saved["state_dict"]
    assert state["geometry.weights"].shape == (26**3, 21) and state["geometry.sdf"].shape == (27**3,)
    assert not bool(torch.equal(state["geometry.weights"], torch.ones(26**3, 21))), "the weights are learnt"

    # A pass-1 FlexiCubes checkpoint exports: extracted (2 triangles per quad), unwrapped, baked.
    assert main(["export", "--ckpt", str(last), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "mesh" / "texture_kd.png").is_file() and (tmp_path / "export" / "mesh.glb").is_file()

    monkeypatch.setattr(ReconstructionSystem, "training_step", original)
    assert fit(spot_views, tmp_path, "--ckpt_path", "last") == 0
    final = ckpt(last)
    assert final["dmtrec_pipeline"] == {"stage": "mesh", "iteration": TOTAL_ITERS}
    for name in ("mesh/mesh.obj", "mesh/texture_kd.png", "mesh.glb", "probe.hdr", "metrics.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["iterations"] == TOTAL_ITERS
    assert metrics["geometry_chamfer_l1"] < CHAMFER_BOUND
