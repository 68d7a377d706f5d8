"""What a user watches and gets: the pipeline progress bar, and the exported mesh's frame.

One tiny fit (8 + 4 iterations on a 32 x 32 Spot dataset) read as a Z-up scene
(``--data.nerf_synthetic.world_up z``), so that training runs in a frame turned from the dataset's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from common import QUIET_ENV, tiny_fit_args

from dmtrec.cli import main
from dmtrec.io.gltf import read_glb
from dmtrec.io.obj import read_obj
from dmtrec.systems.pipeline import describe

ITERS = (8, 4)


def test_describe_names_the_pass_and_its_iterations():
    assert describe("dmtet", "both", 312, 600) == "pass 1/2 dmtet 312/600"
    assert describe("mesh", "both", 7, 200) == "pass 2/2 mesh 7/200"
    assert describe("mesh", "mesh", 7, 200) == "pass 1/1 mesh 7/200"
    assert describe("dmtet", "dmtet", 0, 50) == "pass 1/1 dmtet 0/50"


@pytest.fixture(scope="module")
def z_up_run(tmp_path_factory, spot_dataset):
    """``(run folder, stderr of the fit)``."""
    data = spot_dataset(views=8, res=32, val_views=1, test_views=2, probe_res=32)
    root = tmp_path_factory.mktemp("frame")
    capture = root / "stderr.txt"
    with pytest.MonkeyPatch.context() as mp, capture.open("w") as err:
        for key, value in QUIET_ENV.items():
            mp.setenv(key, value)
        mp.setattr("sys.stderr", err)
        code = main(tiny_fit_args(data, root, "--data.nerf_synthetic.world_up", "z", "--run.wandb", "disabled",
                     "--model.iters_dmtet", str(ITERS[0]), "--model.iters_mesh", str(ITERS[1]),
                     "--model.metric_samples", "500", "--model.material.texture_res", "16",
                     "--data.val_batch_size", "2"))  # fmt: skip
    assert code == 0, capture.read_text()[-3000:]
    return root / "tiny_spot", capture.read_text()


@pytest.mark.slow
def test_progress_bar_counts_the_pipeline_not_epochs(z_up_run):
    _, err = z_up_run
    assert f"pass 1/2 dmtet {ITERS[0]}/{ITERS[0]}" in err
    assert f"pass 2/2 mesh {ITERS[1]}/{ITERS[1]}" in err
    assert "bake: UV unwrap" in err
    assert "Epoch" not in err
    assert "export: writing mesh" in err


def _nearest_distance(points: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
    return torch.cdist(points.double(), cloud.double()).min(dim=1).values


@pytest.mark.slow
def test_obj_is_in_the_dataset_frame_and_glb_is_y_up(z_up_run, tmp_path):
    run, _ = z_up_run
    obj = read_obj(run / "mesh" / "mesh.obj")[0].v_pos
    glb = read_glb(run / "mesh.glb")[0].v_pos
    # Training turned the Z-up world Y-up with (x, y, z) -> (x, z, -y); the dataset frame is the
    # inverse turn (x, y, z) -> (x, -z, y), written out by hand here.
    to_world = torch.stack([glb[:, 0], -glb[:, 2], glb[:, 1]], dim=1)
    assert _nearest_distance(to_world, obj).max() < 1e-4
    assert _nearest_distance(glb, obj).max() > 1e-2  # the two frames really differ on this mesh
    frame = json.loads((run / "metrics.json").read_text())["export_frame"]
    assert frame["obj"] == "dataset" and frame["glb"].startswith("training")
    assert frame["train_from_world"] == [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]]

    # `dmtrec export --frame training` keeps the training frame: the OBJ matches the GLB.
    out = tmp_path / "training"
    assert main(["export", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--out", str(out),
                 "--frame", "training"]) == 0  # fmt: skip
    assert _nearest_distance(read_obj(out / "mesh" / "mesh.obj")[0].v_pos, glb).max() < 1e-4
    # ... and by default it writes the dataset frame, as the fit did.
    out = tmp_path / "dataset"
    assert main(["export", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--out", str(out)]) == 0
    assert _nearest_distance(read_obj(out / "mesh" / "mesh.obj")[0].v_pos, obj).max() < 1e-4


def test_export_frame_option_is_checked(tmp_path):
    from dmtrec.runs.callbacks import FinalizeRun

    with pytest.raises(ValueError, match="run.export_frame"):
        FinalizeRun(Path(tmp_path), export_frame="world")
