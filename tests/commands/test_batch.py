"""``dmtrec batch lod|bake``: a folder of assets in, a run folder per asset, one line per broken
asset without stopping the batch, and the summary (CSV + contact sheet)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from common import PROBE_HDR
from PIL import Image

from dmtrec import cli
from dmtrec.assets.procedural import write_procedural_asset
from dmtrec.commands.batch import expand_assets, folder_names, split_argv

BAKE = ["--target", "vertex", "--views", "4", "--held-out", "2", "--val-views", "2", "--res", "32", "--steps", "3"]
TINY = ["--probe", str(PROBE_HDR), "--probe-res", "32", "--run.wandb", "disabled"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A folder of 3 assets: two small tori (1,536 and 768 triangles) and a broken OBJ."""
    folder = tmp_path_factory.mktemp("assets")
    write_procedural_asset(folder, nu=32, nv=24, texture_res=32)  # torus.obj + its MTL and textures
    other = write_procedural_asset(tmp_path_factory.mktemp("other"), nu=24, nv=16, texture_res=32)
    shutil.copy(other, folder / "ring.obj")  # reads the folder's torus.mtl
    (folder / "broken.obj").write_text("v 1 2\nf 1 2 9\n")
    return folder


def _batch(command, assets, out, options, capsys):
    torch.set_num_threads(1)
    code = cli.main(["batch", command, str(assets), "--out", str(out), *options])
    return code, capsys.readouterr()


def _summary(out):
    with (out / "summary.csv").open() as handle:
        return {row["asset_name"]: row for row in csv.DictReader(handle)}


def test_bake_batch_skips_the_broken_asset_in_one_line_and_summarises_the_others(assets, tmp_path, capsys):
    out = tmp_path / "batch"
    code, captured = _batch("bake", assets, out, BAKE + TINY, capsys)
    assert code == 1  # one asset failed
    errors = [line for line in captured.err.splitlines() if ": error:" in line]
    assert errors == [f"dmtrec batch bake: {assets / 'broken.obj'}: error: {assets / 'broken.obj'}:1: malformed "
                      "'v' line ('v' needs 3 numbers): v 1 2"]  # fmt: skip
    rows = _summary(out)
    assert [rows[n]["status"] for n in ("broken", "ring", "torus")] == ["error", "ok", "ok"]
    for name, faces in (("torus", 2 * 32 * 24), ("ring", 2 * 24 * 16)):
        report = json.loads((out / name / "report.json").read_text())
        assert int(rows[name]["faces"]) == report["faces"] == faces
        assert rows[name]["kept"] == report["kept"] in ("point_sampled", "optimised")
        assert float(rows[name]["psnr_final"]) == pytest.approx(report["final_held_out"]["psnr"], abs=1e-4)
    assert not (out / "broken").exists()
    with Image.open(out / "contact_sheet.png") as sheet:
        with Image.open(out / "torus" / "contact_sheet.png") as one:
            # Two captioned tiles side by side, each scaled to 256 px high.
            assert sheet.height == 256 + 16 + 2 and sheet.width > 2 * 256 * one.width / one.height
    assert "1 failed" in captured.out


def test_assets_come_from_folders_list_files_and_paths_once_each(assets, tmp_path):
    listed = tmp_path / "assets.txt"
    listed.write_text(f"# the tori\n{assets / 'torus.obj'}\n\n../{tmp_path.name}/missing.obj\n")
    found = expand_assets([str(listed), str(assets)])
    assert found[:2] == [assets / "torus.obj", tmp_path / "../" / tmp_path.name / "missing.obj"]
    assert [p.name for p in found[2:]] == ["broken.obj", "ring.obj"]  # torus.obj already listed
    assert folder_names(found + [tmp_path / "x" / "torus.obj"])[-1] == "torus-2"


def test_split_argv_needs_assets_and_out():
    assert split_argv(["a.obj", "b", "--out", "o", "--steps", "3"]) == (["a.obj", "b"], Path("o"), ["--steps", "3"])
    with pytest.raises(ValueError, match="--out DIR is required"):
        split_argv(["a.obj", "--steps", "3"])
    with pytest.raises(ValueError, match="no assets"):
        split_argv(["--out", "o"])


@pytest.mark.slow
def test_lod_batch_gives_levels_per_asset_and_a_summary(assets, tmp_path, capsys):
    pytest.importorskip("fast_simplification", reason="dmtrec lod needs the 'lod' extra (fast-simplification)")
    lod = ["--faces", "200", "--iterations", "2", "--level-res", "32", "--texture-res", "32"]
    lod += ["--train-views", "2", "--heldout-views", "2", "--batch", "1", "--no-flip"]
    out = tmp_path / "lods"
    code, captured = _batch("lod", assets, out, lod + TINY, capsys)
    assert code == 1 and captured.err.count(": error:") == 1
    rows = _summary(out)
    assert rows["broken"]["status"] == "error"
    for name in ("ring", "torus"):
        assert rows[name]["status"] == "ok" and int(rows[name]["lod0_triangles"]) <= 200
        assert (out / name / "lod0.glb").is_file()
    assert (out / "contact_sheet.png").is_file()
