"""``eval_spp``: the lod judge's supersampling, apart from the training renders' ``spp``."""

from __future__ import annotations

import pytest
import torch
from common import PROBE_HDR, SPOT_OBJ

pytest.importorskip("fast_simplification", reason="dmtrec lod needs the 'lod' extra (fast-simplification)")
pytest.importorskip("scipy", reason="dmtrec lod's closest-surface lookup needs scipy")

from dmtrec import cli  # noqa: E402
from dmtrec.assets.lod import LodScene, LodSettings, reference_spp, split_spp  # noqa: E402
from dmtrec.assets.views import render_reference  # noqa: E402
from dmtrec.commands.lod import check_settings  # noqa: E402
from dmtrec.commands.lod_skinned import skinned_settings  # noqa: E402
from dmtrec.commands.options import OptionError  # noqa: E402
from dmtrec.datasets.reference_mesh import load_asset, load_probe  # noqa: E402
from dmtrec.metrics.image import image_metrics  # noqa: E402
from dmtrec.render.camera import Cameras  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.systems.lod import evaluate  # noqa: E402

RES = 24
SMALL = dict(train_views=2, heldout_views=2, validation_views=2, probe_res=32)


@pytest.fixture(scope="module")
def asset():
    mesh, material = load_asset(SPOT_OBJ)
    return mesh, material, load_probe(PROBE_HDR, probe_res=32), get_rasterizer("torch", "cpu")


def _scene(asset, **settings) -> LodScene:
    mesh, material, light, rasterizer = asset
    return LodScene(mesh, material, light, rasterizer, LodSettings(**SMALL, **settings))


def _box_filtered(asset, cameras, k: int) -> torch.Tensor:
    """The original rendered with one sample per pixel at ``k`` times the resolution, its
    premultiplied colour and coverage averaged over ``k x k`` blocks: ``[B, H, W, 4]`` straight alpha."""
    mesh, material, light, rasterizer = asset
    fine = Cameras(cameras.c2w, cameras.proj, (RES * k, RES * k))  # square views: the same projection
    img = render_reference(mesh, material, light, fine, rasterizer, spp=1)
    premultiplied = torch.cat([img[..., :3] * img[..., 3:], img[..., 3:]], -1)
    b = premultiplied.shape[0]
    blocks = premultiplied.reshape(b, RES, k, RES, k, 4).mean((2, 4))
    alpha = blocks[..., 3:]
    rgb = torch.where(alpha > 0, blocks[..., :3] / alpha.clamp_min(1e-12), torch.zeros_like(blocks[..., :3]))
    return torch.cat([rgb, alpha], -1)


def test_split_spp_trains_at_spp_and_judges_at_eval_spp():
    settings = LodSettings(spp=2, eval_spp=8)
    assert [split_spp(settings, s) for s in ("train", "validation", "heldout")] == [2, 8, 8]
    assert [split_spp(LodSettings(spp=3), s) for s in ("train", "validation", "heldout")] == [3, 3, 3]


def test_references_are_the_box_filtered_fine_render_in_every_split(asset):
    """The judge's references and the training ones alike (:func:`reference_spp`); only the level's
    own training renders stay at ``spp`` (the next tests)."""
    views = _scene(asset, spp=1, eval_spp=3).views(RES)
    for split in ("train", "heldout", "validation"):
        cams, ref = views[split]
        expected = _box_filtered(asset, cams, 3)
        assert torch.allclose(ref[..., 3], expected[..., 3], atol=1e-5)
        covered = expected[..., 3] > 1e-3  # straight colour is ill-conditioned where coverage is ~0
        assert torch.allclose(ref[..., :3][covered], expected[..., :3][covered], atol=2e-4)
    assert reference_spp(LodSettings(spp=2)) == 2


def test_eval_spp_equal_to_spp_is_the_old_judge_bit_for_bit(asset):
    old, same = _scene(asset, spp=2).views(RES), _scene(asset, spp=2, eval_spp=2).views(RES)
    for split in ("train", "heldout", "validation"):
        assert torch.equal(old[split][1], same[split][1])


def test_candidates_are_rendered_as_the_judges_references(asset):
    """The original judged on itself scores as a render against an identical render, only if the
    candidate is supersampled as the references are (at ``spp`` against an ``eval_spp`` reference it
    would carry the aliasing difference)."""
    mesh, material, _, _ = asset
    scene = _scene(asset, spp=1, eval_spp=3)
    scores = evaluate(scene, mesh, material, RES, flip=False)
    cams, ref = scene.views(RES)["heldout"]
    white = torch.ones(cams.batch_size, RES, RES, 3)
    with torch.no_grad():
        at_spp = scene.render(mesh, material, cams, white, "train")[..., :3]
    aliased = float(image_metrics(at_spp, ref, background=1.0)["psnr"].mean())
    assert scores["psnr"] > 60.0 > aliased + 10.0


def test_eval_spp_is_range_checked_and_carried_to_the_skinned_settings(capsys):
    with pytest.raises(OptionError, match="^--eval-spp: must be >= 1, got 0$"):
        check_settings(LodSettings(eval_spp=0))
    check_settings(LodSettings(eval_spp=8))
    assert skinned_settings(LodSettings(spp=2, eval_spp=8)).eval_spp == 8
    argv = ["--mesh", str(SPOT_OBJ), "--probe", str(PROBE_HDR), "--levels", "0.5", "--out", "/nonexistent/x"]
    code = cli.main(["lod", *argv, "--eval-spp", "0"])
    assert code != 0
    assert "--eval-spp: must be >= 1, got 0" in capsys.readouterr().err
