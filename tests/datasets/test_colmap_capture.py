"""``make-dataset --format colmap`` round trip, ``inspect-data`` and ``poses`` on synthetic captures of Spot.

The masks come from the renderer; the mesh's vertices projected through the cameras the
``colmap`` kind reads back must fall on them, which a wrong pose convention, principal point or
normalisation would break.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from common import PROBE_HDR, SPOT_OBJ, image_views

from dmtrec.cli import main as cli_main
from dmtrec.datasets.colmap import ColmapViews
from dmtrec.datasets.make_dataset import ColmapCapture, make_colmap_dataset
from dmtrec.datasets.reference_mesh import ReferenceRender
from dmtrec.io.colmap_model import camera_to_world, read_model
from dmtrec.io.image import read_image, write_png
from dmtrec.io.obj import read_obj

RES = (72, 96)
FOVY = 45.0


def make(out, **kwargs):
    return make_colmap_dataset(
        SPOT_OBJ,
        PROBE_HDR,
        4,
        RES,
        out,
        render=ReferenceRender(fovy=FOVY, probe_res=32, device="cpu", rasterizer="torch"),
        capture=ColmapCapture(**kwargs),
    )


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    root = tmp_path_factory.mktemp("captures")
    return make(root / "pinhole"), make(root / "opencv", camera_model="OPENCV", distortion=0.4)


def projected_pixels(views: ColmapViews, vertices: np.ndarray) -> np.ndarray:
    """``[B, V, 2]`` pixel coordinates of world ``vertices`` through the views' cameras."""
    clip = views.cameras.project(torch.from_numpy(views.normalization.points(vertices)).float())
    ndc = (clip[..., :2] / clip[..., 3:]).double().numpy()
    height, width = views.resolution
    return np.stack([(ndc[..., 0] + 1) * width / 2, (ndc[..., 1] + 1) * height / 2], -1)


def test_round_trip_cameras_land_the_mesh_on_its_masks(captures):
    folder = captures[0]
    model = read_model(folder / "sparse" / "0")
    focal = 0.5 * RES[0] / math.tan(math.radians(FOVY) / 2)
    camera = model.cameras[1]
    assert camera.model == "PINHOLE" and camera.intrinsics[:2] == pytest.approx((focal, focal))
    assert abs(camera.intrinsics[2] - RES[1] / 2) > 2.0  # off centre: a reader ignoring cx would fail below
    views = image_views(ColmapViews, folder)
    vertices = read_obj(SPOT_OBJ)[0].v_pos.double().numpy()
    pixels = projected_pixels(views, vertices)
    for slot in range(len(views)):
        alpha = views.image(slot)[..., 3]
        # Thin parts (horns) are narrower than a pixel: allow one pixel (a 3 px shift leaves ~7 % outside).
        grown = torch.nn.functional.max_pool2d(alpha[None, None], 3, 1, 1)[0, 0].numpy()
        alpha = alpha.numpy()
        u, v = pixels[slot, :, 0], pixels[slot, :, 1]
        inside = grown[np.clip(v.astype(int), 0, RES[0] - 1), np.clip(u.astype(int), 0, RES[1] - 1)] > 0.0
        assert inside.mean() > 0.995
        rows, cols = np.nonzero(alpha > 0.5)
        # The mask's extent matches the projected mesh's to about a pixel (a cx error would be ~3 px).
        assert abs(u.min() - cols.min()) < 1.5 and abs(u.max() - (cols.max() + 1)) < 1.5
        assert abs(v.min() - rows.min()) < 1.5 and abs(v.max() - (rows.max() + 1)) < 1.5
    # The object sphere estimated from the cameras and the sparse points holds the mesh.
    radius = np.linalg.norm(views.normalization.points(vertices), axis=-1).max()
    assert 0.8 < radius < 1.25


def test_distorted_capture_undistorts_to_the_pinhole_one(captures, tmp_path, monkeypatch):
    """Radial distortion (k1 > 0) magnifies off-axis: the distorted masks cover more pixels than the
    pinhole renders of the same views; undistorted, they cover the same (resampling keeps coverage)."""
    monkeypatch.setenv("DMTREC_CACHE", str(tmp_path / "cache"))
    pinhole, distorted = image_views(ColmapViews, captures[0]), image_views(ColmapViews, captures[1])
    for slot in range(len(pinhole)):
        reference = float(pinhole.image(slot)[..., 3].sum())
        before = float(read_image(distorted.mask_paths[slot])[..., 0].sum())
        after = float(distorted.image(slot)[..., 3].sum())
        assert abs(after / reference - 1) < 0.25 * abs(before / reference - 1), (reference, before, after)
        assert abs(before / reference - 1) > 0.02


def test_inspect_data_draws_any_kind(captures, tmp_path, capsys):
    assert cli_main(["inspect-data", str(captures[0]), "--out", str(tmp_path / "insp"), "--images", "3"]) == 0
    printed = capsys.readouterr().out
    assert "4 training cameras" in printed and "check:" not in printed
    from PIL import Image

    overview = Image.open(tmp_path / "insp" / "cameras.png")
    sheet = Image.open(tmp_path / "insp" / "contact_sheet.png")
    assert overview.size[0] > overview.size[1] and sheet.size[1] >= 160
    # Red top edges of the frusta are drawn.
    pixels = np.asarray(overview.convert("RGB")).reshape(-1, 3)
    assert ((pixels[:, 0] > 200) & (pixels[:, 1] < 80)).sum() > 20


def test_inspect_data_reads_a_nerf_synthetic_folder(make_nerf, tmp_path, capsys):
    folder, _ = make_nerf()
    assert cli_main(["inspect-data", str(folder), "--out", str(tmp_path / "insp")]) == 0
    assert "3 training cameras, 0 points" in capsys.readouterr().out
    assert (tmp_path / "insp" / "cameras.png").is_file() and (tmp_path / "insp" / "contact_sheet.png").is_file()


def test_inspect_data_flags_a_grid_too_small(captures, tmp_path, capsys):
    assert cli_main(["inspect-data", str(captures[0]), "--out", str(tmp_path / "i"), "--scale", "1.2"]) == 0
    assert "exceeds the tet grid's half-edge" in capsys.readouterr().out


def test_poses_reports_too_few_registered_images_in_one_line(tmp_path, capsys):
    pytest.importorskip("pycolmap", reason="pycolmap (extra 'colmap') not installed")
    for i in range(4):  # featureless photos: nothing to match
        write_png(tmp_path / "photos" / f"p{i}.png", np.full((64, 64, 3), 0.5, np.float32))
    assert cli_main(["poses", str(tmp_path / "photos"), "--out", str(tmp_path / "data")]) != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "registered only 0 of 4 photos" in err and "overlap" in err
    assert not (tmp_path / "data").exists()


def test_poses_needs_three_photos(tmp_path, capsys):
    for i in range(2):
        write_png(tmp_path / "photos" / f"p{i}.png", np.full((8, 8, 3), 0.5, np.float32))
    assert cli_main(["poses", str(tmp_path / "photos"), "--out", str(tmp_path / "data")]) != 0
    assert "holds 2 photos" in capsys.readouterr().err


def noisy_spot(folder):
    """Spot with a high-frequency texture: SfM needs corners, which Spot's smooth texture lacks."""
    from PIL import Image

    folder.mkdir()
    for name in ("spot.obj", "spot.mtl"):
        shutil.copy(SPOT_OBJ.parent / name, folder / name)
    base = np.asarray(Image.open(SPOT_OBJ.parent / "spot_texture.png").convert("RGB"), np.float32) / 255
    rng = np.random.default_rng(0)
    noise = np.zeros_like(base)
    for cells in (16, 32, 64, 128, 256):
        grid = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8))
        noise += (np.asarray(grid.resize(base.shape[1::-1], Image.BICUBIC), np.float32) / 127.5 - 1) / 3
    Image.fromarray((np.clip(base * (0.65 + 0.35 * noise) + 0.1 * noise, 0, 1) * 255).astype(np.uint8)).save(
        folder / "spot_texture.png"
    )
    return folder / "spot.obj"


@pytest.mark.slow
def test_poses_recovers_synthetic_cameras(tmp_path):
    """SfM on 30 renders of a textured Spot (centred principal point, as SfM assumes) recovers the
    true cameras of the images it registers up to a similarity. Threaded COLMAP varies from run to
    run on this sparse, small set (medians 0.3-1.3 degrees, 0.5-3.2 % of the camera distance), so
    it runs seeded on one thread here: 21 registered, medians 0.51 degrees and 0.81 %, every run, on
    the machine it was calibrated on. On 2026-12-07's machine the same seeded run gives a centre
    median of 1.30 % with pycolmap 4.2.1 and 1.07-1.08 % with 4.1.1, 4.0.4 and 3.13.0, on the
    commit that set the 1 % bound too: the bound is 2 %, still far from what a wrong pose convention
    gives (tens of degrees, centres off by the camera distance). Rotation: < 1 degree."""
    pytest.importorskip("pycolmap", reason="pycolmap (extra 'colmap') not installed")
    from dmtrec.datasets.sfm import run_sfm

    truth = make_colmap_dataset(
        noisy_spot(tmp_path / "spot"), PROBE_HDR, 30, 320, tmp_path / "truth",
        render=ReferenceRender(probe_res=32, device="cpu", rasterizer="torch"),
        capture=ColmapCapture(principal_offset=(0.0, 0.0)),
    )  # fmt: skip
    summary = run_sfm(truth / "images", tmp_path / "sfm", deterministic=True)
    assert summary.registered >= 15, summary.text()  # 30 views over the whole sphere are sparse: 21 in our runs
    errors = alignment_errors(read_model(truth / "sparse" / "0"), read_model(tmp_path / "sfm" / "sparse" / "0"))
    assert np.median(errors["rotation_deg"]) < 1.0
    assert np.median(errors["centre_rel"]) < 0.02


def alignment_errors(truth, estimate):
    """Per registered image: rotation error (degrees) and centre error relative to the camera's
    distance from the cameras' centroid, after the least-squares similarity (Umeyama) taking the
    estimated centres onto the true ones."""
    by_name = {image.name: image for image in truth.images.values()}
    pairs = [(camera_to_world(by_name[e.name]), camera_to_world(e)) for e in estimate.images.values()]
    true_c2w, est_c2w = (np.stack(x) for x in zip(*pairs))
    x, y = est_c2w[:, :3, 3], true_c2w[:, :3, 3]
    mx, my = x.mean(0), y.mean(0)
    u, d, vt = np.linalg.svd((y - my).T @ (x - mx) / len(x))
    s = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ s @ vt
    scale = np.trace(np.diag(d) @ s) / ((x - mx) ** 2).sum(-1).mean()
    centres = scale * (x - mx) @ rotation.T + my
    relative = rotation @ est_c2w[:, :3, :3]
    cos = (np.einsum("nij,nij->n", relative, true_c2w[:, :3, :3]) - 1) / 2
    return {
        "rotation_deg": np.degrees(np.arccos(np.clip(cos, -1, 1))),
        "centre_rel": np.linalg.norm(centres - y, axis=-1) / np.linalg.norm(y - my, axis=-1),
        # estimated world -> true world: x_true = scale * rotation @ (x - mx) + my
        "similarity": (scale, rotation, mx, my),
    }


@pytest.mark.parametrize("command, option", [("poses", "--masks"), ("inspect-data", "--scale")])
def test_new_commands_are_wired(capsys, command, option):
    with pytest.raises(SystemExit) as exit_info:
        cli_main([command, "--help"])
    assert exit_info.value.code == 0
    assert option in capsys.readouterr().out


def test_poses_without_pycolmap_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pycolmap", None)  # `import pycolmap` raises ImportError
    for i in range(3):
        write_png(tmp_path / "photos" / f"p{i}.png", np.full((8, 8, 3), 0.5, np.float32))
    assert cli_main(["poses", str(tmp_path / "photos"), "--out", str(tmp_path / "data")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install dmtrec[colmap]" in err[0]


def test_inspect_data_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert cli_main(["inspect-data", str(tmp_path / "nope")]) != 0
    assert capsys.readouterr().err.strip().endswith("nope: dataset folder or config not found")
