"""`dmtrec make-dataset --renderer pathtrace`: Mitsuba's views in the rasterizer's layout, with
the same cameras, so either dataset trains the same way."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from common import PROBE_HDR, SPOT_OBJ, image_views

from dmtrec.datasets.make_dataset import make_dataset
from dmtrec.datasets.nerf_synthetic import NeRFSyntheticViews
from dmtrec.datasets.reference_mesh import ReferenceRender

pytest.importorskip("mitsuba", reason="mitsuba (dmtrec[pathtrace]) is not installed")

RENDER = ReferenceRender(probe_res=32, device="cpu", rasterizer="torch")
SMALL = dict(views=3, res=32, val_views=1, test_views=1, seed=4)


def test_pathtraced_dataset_matches_the_rasterized_layout_and_cameras(tmp_path):
    raster = make_dataset(SPOT_OBJ, PROBE_HDR, out=tmp_path / "raster", render=RENDER, **SMALL)
    traced = make_dataset(
        SPOT_OBJ, PROBE_HDR, out=tmp_path / "traced", renderer="pathtrace", render=replace(RENDER, spp=16), **SMALL
    )
    assert sorted(p.relative_to(raster).as_posix() for p in raster.rglob("*") if p.name != "dataset.json") == sorted(
        p.relative_to(traced).as_posix() for p in traced.rglob("*") if p.name != "dataset.json"
    )
    for split in ("train", "val", "test"):
        assert (raster / f"transforms_{split}.json").read_text() == (traced / f"transforms_{split}.json").read_text()
    recipe = json.loads((traced / "dataset.json").read_text())
    assert recipe["renderer"] == "pathtrace" and recipe["spp"] == 16

    views_r = image_views(NeRFSyntheticViews, raster, "train")
    views_t = image_views(NeRFSyntheticViews, traced, "train")
    for i in range(3):
        a, b = views_r.load(i), views_t.load(i)
        cover_a, cover_b = a[..., 3] > 0.5, b[..., 3] > 0.5
        assert (cover_a & cover_b).sum() / (cover_a | cover_b).sum() > 0.9  # same object, same camera
        inside = cover_a & cover_b
        # Spot is convex enough that the mean colours agree; self-shadowing makes the path-traced
        # one no brighter.
        mean_a, mean_b = a[..., :3][inside].mean(), b[..., :3][inside].mean()
        assert 0.75 * mean_a < mean_b < 1.1 * mean_a


def test_bad_renderer_and_material_values(tmp_path):
    with pytest.raises(ValueError, match="renderer"):
        make_dataset(SPOT_OBJ, PROBE_HDR, out=tmp_path / "x", renderer="cycles", render=RENDER, **SMALL)
    with pytest.raises(ValueError, match="roughness"):
        make_dataset(SPOT_OBJ, PROBE_HDR, out=tmp_path / "y", render=RENDER, constant_ks=(1.5, 0.0), **SMALL)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_constant_ks_reaches_the_renders(tmp_path):
    plastic = make_dataset(SPOT_OBJ, PROBE_HDR, out=tmp_path / "p", render=RENDER, constant_ks=(0.25, 0.0), **SMALL)
    metal = make_dataset(SPOT_OBJ, PROBE_HDR, out=tmp_path / "m", render=RENDER, constant_ks=(0.25, 1.0), **SMALL)
    a = image_views(NeRFSyntheticViews, plastic, "test").load(0)
    b = image_views(NeRFSyntheticViews, metal, "test").load(0)
    assert torch.equal(a[..., 3], b[..., 3])
    assert (a[..., :3] - b[..., :3]).abs().max() > 0.1  # metal tints reflections by kd, drops the diffuse
