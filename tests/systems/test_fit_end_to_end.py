"""`dmtrec fit` end to end on a tiny Spot dataset: outputs, quality bounds, wandb, kill and resume.

The dataset (Spot under the shared probe, 48 x 48, made once per session with
``make_dataset``) is read as a NeRF-synthetic folder; all runs use
experiments/configs/quickstart.yaml overridden by tests/tiny_spot.yaml (grid 32, 60 + 20
iterations), offline wandb, on the CPU torch backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from common import DMTREC_CLI, PROBE_HDR, QUICKSTART, QUIET_ENV, REPO, TINY, subprocess_env, tiny_fit_args
from PIL import Image

from dmtrec.cli import main
from dmtrec.io.image import read_hdr
from dmtrec.systems.pipeline import ReconstructionSystem

TOTAL_ITERS = 200  # tiny_spot: 160 (pass 1) + 40 (pass 2), 4 views per step
# Chamfer-L1 in units of Spot's bounding-box size (geometry_report, 5000 samples). Measured on
# this config (issue 11, deterministic CPU fits at 1 thread, seeds 0-2 of seed_everything,
# model.dmtet.seed and data.seed together, `dmtrec fit` on a dataset made as spot_views):
# 0.0394, 0.0356, 0.0441, and after the pass-1 speed-ups of issue 20 (same math, other float
# rounding) 0.0380, 0.0375, 0.0499; this test's own run (seed 0, pytest, 1 thread) 0.0416. For scale: Spot's convex
# hull 0.053, the best-fitting ellipsoid (principal axes) 0.054, the best-fitting sphere 0.098; the
# sampling floor (Spot against itself) 0.010, Spot's SDF on the 32-grid 0.012. The bound rejects
# the hull and the ellipsoid, 0.008 above the seed this test runs (0.038-0.042 in three runs);
# other seeds come close to it (0.0499), and earlier non-deterministic runs reached 0.049.
# Since tiny_spot's light starts constant and learns at 0.003 (the current config): 0.0332 / 0.0297 /
# 0.0330 for seeds 0-2, this test's own run (2 threads) 0.0298; the bound moved from 0.05 to 0.042,
# 0.011 below the hull and 0.009 above the worst of these seeds.
CHAMFER_BOUND = 0.042
# PSNR (nvdiffrec's convention, 4 held-out views over white). The exact silhouettes filled with
# linear 0.5 grey score 20.1 dB on these views (the 20.3 dB baseline), with the best single
# grey 24.0 dB (sRGB 0.58; best_grey_silhouette_psnr below), an empty render 13.3 dB. Measured on this
# config (issue 11, tiny_spot's constant light start learned at 0.003; 1 thread): 22.34 / 22.29 /
# 22.23 dB for seeds 0-2; this test's own run (2 threads) 22.55 dB. With the quickstart's random light
# at the material's rate it was 18.9-20.5 dB, below the grey baseline (the old bound was 17.0). The
# bound sits above the linear-grey baseline. It cannot reach the best grey: at 48 x 48 the silhouette
# pixels dominate, and quickstart's full schedule on these views scores 20.5 dB.
# What this bound does not catch: broken shading or light. kd absorbs Spot's mostly diffuse shading,
# and these mutations scored about as high as the correct fit (22.34 dB): specular dropped 23.47 dB,
# normals negated 22.54, light frozen at 0.5 22.97, light read along mirrored directions 22.17.
# test_pass_two_learns_the_probe_of_a_known_asset catches those of the light and the normals.
PSNR_BOUND = 21.0

pytestmark = pytest.mark.slow


class SimulatedKill(Exception):
    """Stands in for SIGKILL: aborts the process's training at a chosen iteration."""


def fit(data: Path, output_root: Path, *extra: str) -> int:
    return main(tiny_fit_args(data, output_root, *extra))


def ckpt_state(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {**ckpt["dmtrec_pipeline"], "global_step": ckpt["global_step"]}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, spot_views) -> Path:
    root = tmp_path_factory.mktemp("fit")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in QUIET_ENV.items():
            mp.setenv(key, value)
        assert fit(spot_views, root) == 0
    return root / "tiny_spot"


def test_fit_writes_every_output(finished_run):
    run = finished_run
    for name in (
        "mesh/mesh.obj",
        "mesh/mesh.mtl",
        "mesh/texture_kd.png",
        "mesh/texture_ks.png",
        "mesh/texture_n.png",
        "mesh.glb",
        "probe.hdr",
        "config.yaml",
        "metrics.json",
        "checkpoints/last.ckpt",
        "inspect/cameras.png",  # the dataset as inspect-data draws it, logged at fit start
        "inspect/contact_sheet.png",
    ):
        assert (run / name).is_file(), name
    assert list((run / "images").glob("val_*.png")), "no validation grid written"
    leftovers = [p.name for p in run.rglob(".*tmp*")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    state = ckpt_state(run / "checkpoints" / "last.ckpt")
    assert state == {"stage": "mesh", "iteration": TOTAL_ITERS, "global_step": TOTAL_ITERS}


def test_fit_reconstructs_spot(finished_run):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["iterations"] == TOTAL_ITERS
    # Bounds measured on this config (see the report): Chamfer-L1 in units of Spot's
    # bounding-box size; PSNR on the 4 held-out test views over white.
    assert metrics["geometry_chamfer_l1"] < CHAMFER_BOUND
    assert metrics["test_psnr"] > PSNR_BOUND


def test_test_command_evaluates_the_checkpoint(finished_run, spot_views, capsys):
    assert (
        main(
            [
                "test",
                "-c",
                str(QUICKSTART),
                "-c",
                str(TINY),
                "--data.nerf_synthetic.path",
                str(spot_views),
                "--run.output_root",
                str(finished_run.parent),
                "--ckpt_path",
                "last",
            ]
        )
        == 0
    )
    assert "test/psnr" in capsys.readouterr().out


def test_wandb_offline_run_has_images_and_glb(finished_run):
    runs = list((finished_run / "wandb").glob("offline-run-*"))
    assert runs, "no offline wandb run folder"
    media = [p for run in runs for p in (run / "files" / "media").rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in media), "no logged image grid"
    assert any(p.suffix == ".glb" for p in media), "no logged GLB"


def test_kill_in_each_pass_and_resume_reaches_the_same_step_count(tmp_path, monkeypatch, spot_views):
    original = ReconstructionSystem.training_step
    run = tmp_path / "tiny_spot"
    last = run / "checkpoints" / "last.ckpt"
    resume = ()
    for kill_at, stage in ((73, "dmtet"), (175, "mesh")):

        def dying_step(self, batch, batch_idx, kill_at=kill_at):
            if self.iteration == kill_at:
                raise SimulatedKill(f"killed at iteration {kill_at}")
            return original(self, batch, batch_idx)

        monkeypatch.setattr(ReconstructionSystem, "training_step", dying_step)
        with pytest.raises(SimulatedKill):
            fit(spot_views, tmp_path, *resume)
        saved = ckpt_state(last)
        assert saved == {"stage": stage, "iteration": kill_at // 10 * 10, "global_step": kill_at // 10 * 10}
        assert not (run / "metrics.json").exists() and not (run / "mesh").exists()
        if stage == "dmtet":  # a pass-1 checkpoint exports too: extracted, unwrapped and baked
            assert main(["export", "--ckpt", str(last), "--out", str(tmp_path / "export")]) == 0
            assert (tmp_path / "export" / "mesh" / "texture_kd.png").is_file() and (
                tmp_path / "export" / "mesh.glb"
            ).is_file()
        resume = ("--ckpt_path", "last")

    monkeypatch.setattr(ReconstructionSystem, "training_step", original)
    assert fit(spot_views, tmp_path, *resume) == 0
    assert ckpt_state(last) == {"stage": "mesh", "iteration": TOTAL_ITERS, "global_step": TOTAL_ITERS}
    assert json.loads((run / "metrics.json").read_text())["iterations"] == TOTAL_ITERS
    # Same run identity in all three sessions: one offline folder per session, all with the run
    # folder's wandb id (`wandb sync` appends them to one run).
    ids = [p.name.split("-", 3)[-1] for p in (run / "wandb").glob("offline-run-*")]
    assert ids == [(run / "wandb_id").read_text().strip()] * 3


def test_sigkill_then_resume(tmp_path, spot_views):
    """A real SIGKILL (no exception handlers, no logger teardown) as soon as the first
    checkpoint exists; the same command plus --ckpt_path last finishes the run."""
    import signal
    import subprocess
    import time

    command = DMTREC_CLI + tiny_fit_args(spot_views, tmp_path)
    last = tmp_path / "tiny_spot" / "checkpoints" / "last.ckpt"
    # Without WANDB_SERVICE: a child would otherwise attach to this process's wandb service, which
    # then keeps the killed child's run id marked as in use (a fresh shell has no such link).
    env = subprocess_env()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.exists(), "no checkpoint appeared"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert ckpt_state(last)["iteration"] < TOTAL_ITERS
    assert not (tmp_path / "tiny_spot" / "metrics.json").exists()
    assert fit(spot_views, tmp_path, "--ckpt_path", "last") == 0
    assert ckpt_state(last) == {"stage": "mesh", "iteration": TOTAL_ITERS, "global_step": TOTAL_ITERS}


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(np.clip(c, 0.0031308, None), 1 / 2.4) - 0.055)


def best_grey_silhouette_psnr(folder: Path) -> float:
    """Mean test PSNR (dB, nvdiffrec's convention: over white in linear RGB, then sRGB) of the exact
    silhouettes of the RGBA PNGs in ``folder`` filled with one grey, the best of 201 sRGB greys;
    computed in float64 with numpy, independently of dmtrec's metrics."""
    images = [np.asarray(Image.open(p), dtype=np.float64) / 255 for p in sorted(folder.glob("*.png"))]
    assert images, f"no test images in {folder}"
    best = -np.inf
    for grey in np.arange(201) / 200:
        scores = []
        for image in images:
            alpha = image[..., 3:]
            ref = _linear_to_srgb(_srgb_to_linear(image[..., :3]) * alpha + (1 - alpha))
            pred = _linear_to_srgb(_srgb_to_linear(np.full(3, grey)) * alpha + (1 - alpha))
            scores.append(10 * np.log10(1 / np.mean((pred - ref) ** 2)))
        best = max(best, float(np.mean(scores)))
    return best


def test_pass_two_alone_refines_an_input_mesh(tmp_path, spot_views):
    refine = REPO / "experiments" / "configs" / "refine_spot.yaml"
    assert (
        fit(
            spot_views,
            tmp_path,
            "-c",
            str(refine),
            "--model.iters_mesh",
            "10",
            "--run.name",
            "refine",
            "--run.wandb",
            "disabled",
        )
        == 0
    )
    # Without wandb a CSV logger runs, whose log_dir is a subfolder: the config still lands in the run root.
    assert (tmp_path / "refine" / "config.yaml").is_file() and not list((tmp_path / "refine").glob("*/config.yaml"))
    metrics = json.loads((tmp_path / "refine" / "metrics.json").read_text())
    assert metrics["passes"] == "mesh" and metrics["iterations"] == 10
    assert metrics["triangles"] == 5856  # Spot's topology is kept
    topology = metrics["topology"]  # Spot: one closed genus-0 shell, so no handle loop and no picture
    assert (topology["components"], topology["genus"], topology["watertight"]) == (1, 0, True)
    assert topology["handle_loops"] == [] and topology["handle_loop_pictures"] == []
    # Starting from the reference itself, 10 warm-up steps must not move it off: the Chamfer
    # stays at the 5000-sample floor (0.010, see CHAMFER_BOUND) within sampling noise.
    assert metrics["geometry_chamfer_l1"] < 0.012
    # The run starts from Spot's own mesh and textures (the OBJ's kd map) and tiny_spot's light
    # (constant, learned at 0.003); after 10 steps its test renders must beat the exact silhouettes
    # filled with the best single grey (24.0 dB on these views) by 2 dB, which needs the input
    # textures read right, the shading, the learned light and the test-time compositing to work.
    # Measured with tiny_spot's light: 28.25 dB (seed 0, 2 threads). Earlier, with a random light
    # learned at 0.03 (seed 0, 1 thread): 28.44 dB after 10 steps (27.53 with the material's learning
    # rate at 1e-9, i.e. the light alone moving), 29.71 after 20, 31.0 after 40. It does not catch a
    # poorly learned light: with the light frozen (random or constant) the 40-step fit scored 31.5 /
    # 31.7 dB; test_pass_two_learns_the_probe_of_a_known_asset does.
    assert metrics["test_psnr"] > best_grey_silhouette_psnr(spot_views / "test") + 2.0


def _latlong_means(path: Path, height: int = 32) -> np.ndarray:
    """``[height, 2 height, 3]`` float64 block means of an equirectangular Radiance HDR image."""
    image = np.asarray(read_hdr(path), dtype=np.float64)
    rows, cols = image.shape[0] // height, image.shape[1] // (2 * height)
    image = image[: rows * height, : cols * 2 * height]
    return image.reshape(height, rows, 2 * height, cols, 3).mean(axis=(1, 3))


def _scale_free_l1(learned: np.ndarray, true: np.ndarray) -> float:
    """Relative L1 of ``learned`` against ``true`` after the least-squares scale of ``learned``
    (light and base colour trade a common factor, so only the light's shape is identifiable)."""
    scale = (learned * true).sum() / max((learned * learned).sum(), 1e-12)
    return float(np.abs(scale * learned - true).sum() / np.abs(true).sum())


def test_pass_two_learns_the_probe_of_a_known_asset(tmp_path, spot_views):
    # Spot's own mesh and textures, positions and textures locked: only the light learns, from
    # nvdiffrec's constant start, at the material's rate (0.03, not tiny_spot's 0.003 for the light).
    # The shading has to be right for the renders to match, and the light's gradients have to reach
    # the right texels for the probe to take the sky's shape. Measured (seed 0, 1 thread, 40 steps):
    # 38.15 dB and a scale-free probe error of 0.180 (the constant start: 0.466). Mutations measured
    # against it: light frozen 27.90 dB / 0.466, normals negated 27.76 / 0.461, lookups along mirrored
    # directions 26.59 / 0.317; the specular term dropped 38.58 / 0.155 is not caught (Spot is nearly
    # diffuse; the specular lobe is checked against dense GGX sums and Mitsuba elsewhere).
    refine = REPO / "experiments" / "configs" / "refine_spot.yaml"
    args = ["-c", str(refine), "--model.iters_mesh", "40", "--model.mesh_pass.lock_pos", "true"]
    args += ["--model.mesh_pass.lock_material", "true", "--model.optim.lr_light", "0.03"]
    args += ["--run.name", "light", "--run.wandb", "disabled"]
    assert fit(spot_views, tmp_path, *args) == 0
    run = tmp_path / "light"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_psnr"] > 34.0
    true = _latlong_means(PROBE_HDR)
    constant_error = _scale_free_l1(np.ones_like(true), true)
    learned_error = _scale_free_l1(_latlong_means(run / "probe.hdr"), true)
    assert learned_error < 0.55 * constant_error, (learned_error, constant_error)
    # Nothing but the light was optimised.
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert [group["name"] for group in checkpoint["optimizer_states"][0]["param_groups"]] == ["light"]


def test_non_finite_loss_stops_with_the_step_and_terms(tmp_path, monkeypatch, capsys, spot_views):
    original = ReconstructionSystem.loss_terms

    def poisoned(self, batch):
        terms, buffers = original(self, batch)
        if self.iteration == 15:
            terms["sdf_reg"] = terms["sdf_reg"] * float("nan")
        return terms, buffers

    monkeypatch.setattr(ReconstructionSystem, "loss_terms", poisoned)
    assert fit(spot_views, tmp_path) == 1
    err = capsys.readouterr().err
    assert "non-finite loss at iteration 15" in err and "sdf_reg=nan" in err and "image_color=" in err
    assert ckpt_state(tmp_path / "tiny_spot" / "checkpoints" / "last.ckpt")["iteration"] == 10


@pytest.mark.gpu
def test_fit_on_cuda_with_nvdiffrast(tmp_path, spot_views):
    """The same tiny fit on the GPU with nvdiffrast: same outputs, same quality bounds."""
    assert fit(spot_views, tmp_path, "--trainer.accelerator", "gpu", "--model.rasterizer", "nvdiffrast") == 0
    run = tmp_path / "tiny_spot"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["iterations"] == TOTAL_ITERS
    assert metrics["geometry_chamfer_l1"] < CHAMFER_BOUND and metrics["test_psnr"] > PSNR_BOUND
    assert (run / "mesh" / "texture_kd.png").is_file() and (run / "mesh.glb").is_file()
