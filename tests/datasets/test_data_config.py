"""Typed ``data:`` sections, and the flat form of earlier releases that still loads for one release."""

import contextlib
import io
import logging

import pytest
import torch
import yaml
from common import CONFIGS

from dmtrec import cli
from dmtrec.datasets import config
from dmtrec.datasets.config import ReferenceMeshData, upgrade_data_config
from dmtrec.datasets.datamodule import ReconDataModule, config_train_from_world

# The quick start's data section as earlier releases wrote it (flat), and the same typed.
FLAT = {
    "kind": "reference_mesh",
    "mesh": "spot.obj",
    "probe": "sky.hdr",
    "probe_res": 128,
    "resolution": [96, 96],
    "views": 1000,
    "val_views": 4,
    "test_views": 8,
    "batch_size": 2,
    "val_batch_size": 4,
    "background_train": "noise",
    "background_val": "white",
    "render_rasterizer": "torch",
    "render_device": "cpu",
}
TYPED = {
    "kind": "reference_mesh",
    "reference_mesh": {
        "mesh": "spot.obj",
        "probe": "sky.hdr",
        "probe_res": 128,
        "rasterizer": "torch",
        "device": "cpu",
    },
    "resolution": [96, 96],
    "views": 1000,
    "val_views": 4,
    "test_views": 8,
    "batch_size": 2,
    "val_batch_size": 4,
    "shared": {"background_train": "noise", "background_val": "white"},
}


@pytest.fixture
def fresh_warning(monkeypatch):
    """The deprecation line is logged once per process: let this test see it."""
    monkeypatch.setattr(config, "_warned", False)


def test_flat_config_loads_with_one_line_showing_the_typed_form(fresh_warning, caplog):
    with caplog.at_level(logging.WARNING, logger="dmtrec.datasets.config"):
        flat = ReconDataModule(**FLAT)
        again = ReconDataModule(**FLAT)
    typed = ReconDataModule(**TYPED)
    assert dict(flat.hparams) == dict(typed.hparams) == dict(again.hparams)
    assert (
        flat.source
        == typed.source
        == ReferenceMeshData(mesh="spot.obj", probe="sky.hdr", probe_res=128, rasterizer="torch", device="cpu")
    )
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "deprecated" in messages[0]
    # The line shows the typed section a user should write instead.
    assert '"reference_mesh": {"mesh": "spot.obj", "probe": "sky.hdr", "probe_res": 128' in messages[0]
    assert '"rasterizer": "torch", "device": "cpu"' in messages[0]
    assert '"shared": {"background_train": "noise", "background_val": "white"}' in messages[0]


def test_upgrade_data_config_gives_the_typed_form(fresh_warning):
    assert upgrade_data_config(FLAT) == TYPED
    assert upgrade_data_config(TYPED) == TYPED  # typed sections pass through


def test_flat_options_of_another_kind_are_refused(fresh_warning):
    with pytest.raises(ValueError, match="^holdout: applies to another kind than reference_mesh"):
        ReconDataModule(**FLAT, holdout=8)
    with pytest.raises(ValueError, match="^colour: not a data option"):
        ReconDataModule(**FLAT, colour="red")
    # What the flat datamodule ignored for kinds it did not apply to (dmtrec eval sets both).
    assert ReconDataModule(**FLAT, preload=False, prerender=False).source.prerender is False


def test_hparams_keep_the_flat_names():
    """Checkpoints and run readers (``dmtrec eval`` reads ``hparams.path``) see the flat layout."""
    hparams = ReconDataModule(kind="nerd", nerd={"path": "scene", "holdout": 8}).hparams
    assert (hparams.kind, hparams.path, hparams.holdout, hparams.mesh, hparams.render_rasterizer) == (
        "nerd",
        "scene",
        8,
        None,
        "auto",
    )


def test_the_frame_of_a_run_config_typed_or_flat():
    z_up = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    typed = {"kind": "nerf_synthetic", "nerf_synthetic": {"path": "x", "world_up": "z"}}
    assert torch.equal(config_train_from_world(typed), z_up)
    assert torch.equal(config_train_from_world({"kind": "nerf_synthetic", "path": "x", "world_up": "z"}), z_up)
    assert torch.equal(config_train_from_world(TYPED), torch.eye(4))


def test_print_config_of_the_quickstart_shows_only_reference_mesh_options():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        cli.main(["fit", "-c", str(CONFIGS / "quickstart.yaml"), "--print_config"])
    assert stop.value.code in (0, None)
    data = yaml.safe_load(out.getvalue())["data"]
    assert data["kind"] == "reference_mesh"
    assert data["nerf_synthetic"] is data["nerd"] is data["colmap"] is None
    assert {"mesh", "probe", "probe_res", "rasterizer", "device"} <= set(data["reference_mesh"])
    # No image-folder option anywhere in the section.
    keys = set(data) | set(data["reference_mesh"]) | set(data["shared"])
    assert not keys & {"path", "downscale", "holdout", "world_up", "require_alpha", "center", "preload"}


def _printed_data(capsys, argv) -> dict:
    """``dmtrec fit ... --print_config``'s ``data:`` section."""
    import yaml

    from dmtrec.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["fit", *argv, "--print_config"])
    assert stop.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)["data"]


def test_a_flat_config_file_of_an_earlier_release_still_fits(tmp_path, capsys, caplog):
    # Issue 27: old flat configs keep working for one release, with one line showing the new form.
    old = tmp_path / "old.yaml"
    old.write_text(
        "data:\n  kind: reference_mesh\n  mesh: ${DMTREC_DATA}/meshes/spot/spot.obj\n"
        "  probe: ${DMTREC_DATA}/envmaps/mud_road_puresky_1k.hdr\n  probe_res: 64\n  render_rasterizer: torch\n"
        "  seed: 5\n  resolution: [32, 32]\n"
    )
    with caplog.at_level("WARNING"):
        data = _printed_data(capsys, ["-c", str(CONFIGS / "quickstart.yaml"), "-c", str(old)])
    assert data["kind"] == "reference_mesh" and data["resolution"] == [32, 32]
    assert data["reference_mesh"]["probe_res"] == 64 and data["reference_mesh"]["rasterizer"] == "torch"
    assert data["reference_mesh"]["mesh"].endswith("spot.obj") and data["shared"]["seed"] == 5
    warnings = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) <= 1 and all('"reference_mesh": {' in w and "\n" not in w for w in warnings)


def test_flat_dotted_overrides_reach_the_kinds_section(capsys):
    data = _printed_data(
        capsys,
        ["-c", str(CONFIGS / "quickstart.yaml"), "--data.kind", "nerf_synthetic", "--data.path", "/somewhere",
         "--data.seed=7", "--data.resolution", "[64, 64]"],
    )  # fmt: skip
    assert data["kind"] == "nerf_synthetic" and data["nerf_synthetic"]["path"] == "/somewhere"
    assert data["shared"]["seed"] == 7 and data["resolution"] == [64, 64]
    # The reference-mesh kind's renamed option lands in its section under the new name.
    data = _printed_data(capsys, ["-c", str(CONFIGS / "quickstart.yaml"), "--data.render_rasterizer", "auto"])
    assert data["reference_mesh"]["rasterizer"] == "auto"
