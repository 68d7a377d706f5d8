"""The ``colmap`` kind: readers against hand-written models, intrinsics, undistortion, normalisation, bad input.

Expected values come from the models as written here, COLMAP's documented formulas evaluated in
float64 numpy (scipy for quaternions), or pycolmap (skipped where it is missing).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from common import image_views
from scipy.spatial.transform import Rotation

from dmtrec.datasets.colmap import ColmapViews
from dmtrec.datasets.colmap_normalize import estimate_object_sphere
from dmtrec.datasets.colmap_undistort import undistort_image
from dmtrec.datasets.datamodule import ReconDataModule
from dmtrec.datasets.errors import DatasetError
from dmtrec.io.colmap_model import ColmapCamera, camera_to_world, read_model
from dmtrec.io.image import write_png

# Two cameras, three images (one without 2D points), two points with tracks.
CAMERAS_TXT = """# Camera list with one line of data per camera:
#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]
1 SIMPLE_RADIAL 12 8 10.5 6.25 3.75 0.01
2 PINHOLE 12 8 11.0 9.0 6.5 4.5
"""
IMAGES_TXT = """# Image list with two lines of data per image:
#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME
#   POINTS2D[] as (X, Y, POINT3D_ID)
3 0.9 0.1 -0.2 0.3 0.5 -0.25 4.0 1 a.png
1.5 2.5 7 3.0 4.0 -1
5 1 0 0 0 0 0 5 2 sub/b.png

9 0.7 0.0 0.7 0.1 -1 0 6 1 d.png
6.25 1.75 7 4.0 5.0 8
"""
POINTS_TXT = """# 3D point list with one line of data per point:
#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]
7 0.1 0.2 0.3 255 128 0 0.5 3 0 9 0
8 -1.0 0.5 2.0 10 20 30 1.25 9 1
"""
EXPECTED_IMAGES = {
    3: ((0.9, 0.1, -0.2, 0.3), (0.5, -0.25, 4.0), 1, "a.png", [[1.5, 2.5], [3.0, 4.0]], [7, -1]),
    5: ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 5.0), 2, "sub/b.png", [], []),
    9: ((0.7, 0.0, 0.7, 0.1), (-1.0, 0.0, 6.0), 1, "d.png", [[6.25, 1.75], [4.0, 5.0]], [7, 8]),
}


def write_text_model(folder: Path, cameras=CAMERAS_TXT, images=IMAGES_TXT, points=POINTS_TXT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cameras.txt").write_text(cameras)
    (folder / "images.txt").write_text(images)
    (folder / "points3D.txt").write_text(points)
    return folder


def write_binary_model(folder: Path) -> Path:
    """The same model in COLMAP's binary format, packed field by field from the documentation."""
    folder.mkdir(parents=True, exist_ok=True)
    cams = struct.pack("<Q", 2)
    cams += struct.pack("<iiQQ", 1, 2, 12, 8) + struct.pack("<4d", 10.5, 6.25, 3.75, 0.01)
    cams += struct.pack("<iiQQ", 2, 1, 12, 8) + struct.pack("<4d", 11.0, 9.0, 6.5, 4.5)
    (folder / "cameras.bin").write_bytes(cams)
    imgs = struct.pack("<Q", 3)
    for image_id, (q, t, cam, name, xys, ids) in EXPECTED_IMAGES.items():
        imgs += struct.pack("<I7dI", image_id, *q, *t, cam) + name.encode() + b"\x00"
        imgs += struct.pack("<Q", len(xys))
        for (x, y), i in zip(xys, ids):
            imgs += struct.pack("<2dQ", x, y, i % 2**64)  # -1 is stored as 2^64 - 1
    (folder / "images.bin").write_bytes(imgs)
    pts = struct.pack("<Q", 2)
    pts += struct.pack("<Q3d3Bd", 7, 0.1, 0.2, 0.3, 255, 128, 0, 0.5) + struct.pack("<Q4I", 2, 3, 0, 9, 0)
    pts += struct.pack("<Q3d3Bd", 8, -1.0, 0.5, 2.0, 10, 20, 30, 1.25) + struct.pack("<Q2I", 1, 9, 1)
    (folder / "points3D.bin").write_bytes(pts)
    return folder


def check_expected_model(model) -> None:
    assert set(model.cameras) == {1, 2}
    cam1, cam2 = model.cameras[1], model.cameras[2]
    assert (cam1.model, cam1.width, cam1.height) == ("SIMPLE_RADIAL", 12, 8)
    assert cam1.intrinsics == (10.5, 10.5, 6.25, 3.75) and cam1.distortion == (0.01,)
    assert cam2.model == "PINHOLE" and cam2.intrinsics == (11.0, 9.0, 6.5, 4.5) and not cam2.distorted
    assert set(model.images) == set(EXPECTED_IMAGES)
    for image_id, (q, t, cam, name, xys, ids) in EXPECTED_IMAGES.items():
        image = model.images[image_id]
        assert image.qvec == pytest.approx(q) and image.tvec == pytest.approx(t)
        assert (image.camera_id, image.name) == (cam, name)
        np.testing.assert_allclose(image.xys.reshape(-1, 2), np.asarray(xys, dtype=float).reshape(-1, 2))
        assert image.point3d_ids.tolist() == ids
    np.testing.assert_array_equal(model.points.ids, [7, 8])
    np.testing.assert_allclose(model.points.xyz, [[0.1, 0.2, 0.3], [-1.0, 0.5, 2.0]])
    np.testing.assert_array_equal(model.points.rgb, [[255, 128, 0], [10, 20, 30]])
    np.testing.assert_allclose(model.points.error, [0.5, 1.25])
    np.testing.assert_array_equal(model.points.track_length, [2, 1])


def test_reads_hand_written_text_model(tmp_path):
    model = read_model(write_text_model(tmp_path / "m"))
    assert model.suffix == ".txt"
    check_expected_model(model)


def test_reads_hand_written_binary_model(tmp_path):
    model = read_model(write_binary_model(tmp_path / "m"))
    assert model.suffix == ".bin"
    check_expected_model(model)


def test_binary_reader_agrees_with_pycolmap_writer(tmp_path):
    pycolmap = pytest.importorskip("pycolmap", reason="pycolmap (extra 'colmap') not installed")
    text = write_text_model(tmp_path / "text")
    binary = tmp_path / "bin"
    binary.mkdir()
    pycolmap.Reconstruction(str(text)).write_binary(str(binary))
    model = read_model(binary)
    assert model.suffix == ".bin"
    reference = read_model(text)
    assert model.cameras == reference.cameras
    for image_id, image in reference.images.items():
        assert model.images[image_id].name == image.name
        np.testing.assert_allclose(model.images[image_id].tvec, image.tvec)
        q = np.asarray(model.images[image_id].qvec)
        np.testing.assert_allclose(q / np.linalg.norm(q), np.asarray(image.qvec) / np.linalg.norm(image.qvec))
    np.testing.assert_allclose(model.points.xyz, reference.points.xyz)


# ----------------------------------------------------------------------------- capture folders


def look_at_pose(centre, target, rng):
    """COLMAP ``(qvec, tvec)`` of a camera at ``centre`` whose +z axis points at ``target`` (OpenCV axes),
    rolled a little at random."""
    z = np.asarray(target, float) - centre
    z /= np.linalg.norm(z)
    x = np.cross([0.0, -1.0, 0.0], z)  # image y down = world -y (world +Y up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    r_wc = np.stack([x, y, z], 1) @ Rotation.from_euler("z", rng.uniform(-0.2, 0.2)).as_matrix()
    r_cw = r_wc.T
    qx, qy, qz, qw = Rotation.from_matrix(r_cw).as_quat()
    return (qw, qx, qy, qz), -r_cw @ centre


def write_capture(
    folder: Path,
    count: int = 4,
    camera_line: str = "1 PINHOLE 16 12 14.0 13.0 9.0 5.0",
    size=(12, 16),
    masks: bool = True,
    alpha: bool = False,
    target=(0.0, 0.0, 0.0),
    points=None,
    object_radius=None,
):
    """A capture folder: ``count`` cameras on a circle of radius 4 around ``target``, small random images.

    With ``object_radius``, each image observes the ``points`` it sees (2D points, COLMAP's
    pinhole formula) and its mask is the disc the sphere of that radius at ``target`` projects to
    (random masks otherwise).
    """
    rng = np.random.default_rng(0)
    lines, images = [], []
    for i in range(count):
        angle = 2 * math.pi * i / count
        centre = np.asarray(target) + 4.0 * np.array([math.sin(angle), 0.3, math.cos(angle)])
        q, t = look_at_pose(centre, target, rng)
        name = f"img{i}.jpg" if not alpha else f"img{i}.png"
        pose = " ".join(repr(float(v)) for v in (*q, *t))
        observations = ""
        mask = rng.integers(0, 2, (*size, 1)).astype(np.float32)
        if object_radius is not None:
            fx, fy, cx, cy = (float(v) for v in camera_line.split()[4:8])  # a PINHOLE camera
            rotation = Rotation.from_quat([*q[1:], q[0]]).as_matrix()
            cam = np.asarray(points) @ rotation.T + t
            uv = np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], -1)
            seen = (cam[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < size[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < size[0])
            observations = " ".join(f"{u!r} {v!r} {k + 1}" for k, (u, v) in enumerate(uv.tolist()) if seen[k])
            middle = rotation @ np.asarray(target) + t
            u0, v0 = fx * middle[0] / middle[2] + cx, fy * middle[1] / middle[2] + cy
            rows, cols = np.indices(size) + 0.5
            disc = np.hypot(cols - u0, rows - v0) < fx * object_radius / np.linalg.norm(middle) * 1.1
            mask = disc[..., None].astype(np.float32)
        lines.append(f"{i + 1} {pose} 1 {name}\n{observations}\n")  # the second line: 2D points (or none)
        img = rng.integers(0, 256, (*size, 4 if alpha else 3)).astype(np.float32) / 255
        write_png(folder / "images" / name, img)
        if masks:
            write_png(folder / "masks" / f"{name}.png", mask)
        images.append(img)
    point_lines = "".join(f"{i + 1} {p[0]} {p[1]} {p[2]} 0 0 0 0.1\n" for i, p in enumerate(points or []))
    write_text_model(folder / "sparse" / "0", camera_line + "\n", "".join(lines), point_lines)
    return images


def pixel_of(clip: torch.Tensor, width: int, height: int) -> np.ndarray:
    ndc = (clip[..., :2] / clip[..., 3:]).double().numpy()
    return np.stack([(ndc[..., 0] + 1) * width / 2, (ndc[..., 1] + 1) * height / 2], -1)


def test_projection_honours_per_image_intrinsics_and_pose(tmp_path):
    """World points project where COLMAP's pinhole formula u = fx X/Z + cx, v = fy Y/Z + cy puts them,
    with X = R(q) x + t, for an off-centre principal point and fx != fy, after any normalisation."""
    write_capture(tmp_path / "cap", count=4)
    views = image_views(ColmapViews, tmp_path / "cap")
    world = np.random.default_rng(1).uniform(-0.5, 0.5, (20, 3))
    for slot, entry in enumerate(views.entries):
        qw, qx, qy, qz = entry.qvec
        cam = Rotation.from_quat([qx, qy, qz, qw]).as_matrix() @ world.T + np.asarray(entry.tvec)[:, None]
        expected = np.stack([14.0 * cam[0] / cam[2] + 9.0, 13.0 * cam[1] / cam[2] + 5.0], -1)
        normalised = torch.from_numpy(views.normalization.points(world)).float()
        got = pixel_of(views.cameras[slot].project(normalised)[0], 16, 12)
        np.testing.assert_allclose(got, expected, atol=2e-3)


def test_projection_agrees_with_pycolmap(tmp_path):
    pycolmap = pytest.importorskip("pycolmap", reason="pycolmap (extra 'colmap') not installed")
    write_capture(tmp_path / "cap", count=3, camera_line="1 SIMPLE_PINHOLE 16 12 15.0 7.5 6.5")
    views = image_views(ColmapViews, tmp_path / "cap")
    rec = pycolmap.Reconstruction(str(tmp_path / "cap" / "sparse" / "0"))
    world = np.random.default_rng(2).uniform(-0.5, 0.5, (10, 3))
    for slot, entry in enumerate(views.entries):
        image, camera = rec.images[entry.id], rec.cameras[entry.camera_id]
        expected = np.array([camera.img_from_cam(image.cam_from_world() * x) for x in world])
        normalised = torch.from_numpy(views.normalization.points(world)).float()
        np.testing.assert_allclose(pixel_of(views.cameras[slot].project(normalised)[0], 16, 12), expected, atol=2e-3)


def opencv_distort(x, y, k1, k2, p1, p2):
    """OpenCV's radial-tangential model (COLMAP's OPENCV camera), written out from its documentation."""
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    return x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y


@pytest.mark.parametrize(
    "model, params, coefficients",
    [
        ("SIMPLE_RADIAL", (40.0, 31.0, 22.0, 0.08), (0.08, 0.0, 0.0, 0.0)),
        ("RADIAL", (40.0, 31.0, 22.0, -0.06, 0.02), (-0.06, 0.02, 0.0, 0.0)),
        ("OPENCV", (40.0, 36.0, 30.0, 23.0, 0.05, -0.01, 0.002, -0.003), (0.05, -0.01, 0.002, -0.003)),
    ],
)
def test_undistortion_samples_the_analytic_distorted_position(model, params, coefficients):
    """A photo whose channels hold its own pixel coordinates (u / W, v / H, linear, so bilinear
    sampling is exact) undistorts to the distorted position of every pinhole pixel."""
    width, height = 60, 44
    camera = ColmapCamera(1, model, width, height, params)
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    photo = torch.from_numpy(np.stack([u / width, v / height], -1))
    out = undistort_image(photo, camera).numpy()
    fx, fy, cx, cy = (params[0], params[0], params[1], params[2]) if model != "OPENCV" else params[:4]
    xd, yd = opencv_distort((u - cx) / fx, (v - cy) / fy, *coefficients)
    ud, vd = xd * fx + cx, yd * fy + cy
    inside = (ud > 0.5) & (ud < width - 0.5) & (vd > 0.5) & (vd < height - 0.5)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(out[..., 0][inside] * width, ud[inside], atol=1e-6)
    np.testing.assert_allclose(out[..., 1][inside] * height, vd[inside], atol=1e-6)
    moved = np.hypot(ud - u, vd - v)[inside]
    assert moved.max() > 1.0  # the distortion is not trivially small


def test_distorted_photos_are_undistorted_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DMTREC_CACHE", str(tmp_path / "cache"))
    write_capture(tmp_path / "cap", count=3, camera_line="1 RADIAL 16 12 14.0 8.0 6.0 0.1 0.01")
    views = image_views(ColmapViews, tmp_path / "cap", preload=False)
    cached = sorted((tmp_path / "cache" / "colmap").glob("*.png"))
    assert len(cached) == 3
    first = views.image(1)

    def fail(*args):
        raise AssertionError("undistorted again instead of read from the cache")

    monkeypatch.setattr("dmtrec.datasets.colmap.undistort_image", fail)
    again = image_views(ColmapViews, tmp_path / "cap", preload=False)
    torch.testing.assert_close(again.image(1), first)


# ----------------------------------------------------------------------------- normalisation


def test_normalisation_centres_and_scales_the_object():
    """Cameras around (1, 2, 3) at distance 5 and points filling a ball of radius 0.5 there (plus
    background points beyond the cameras): the centre is found, the radius is the 95th percentile
    of a uniform ball's distances (0.5 * 0.95^(1/3))."""
    rng = np.random.default_rng(3)
    centre = np.array([1.0, 2.0, 3.0])
    directions = rng.normal(size=(30, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    c2w = np.tile(np.eye(4), (30, 1, 1))
    for i, d in enumerate(directions):
        back = d
        right = np.cross([0.0, 1.0, 0.0], back)
        right /= np.linalg.norm(right)
        c2w[i, :3, :3] = np.stack([right, np.cross(back, right), back], 1)
        c2w[i, :3, 3] = centre + 5.0 * d
    ball = rng.normal(size=(20000, 3))
    ball *= (0.5 * rng.uniform(size=(20000, 1)) ** (1 / 3)) / np.linalg.norm(ball, axis=-1, keepdims=True)
    background = centre + rng.normal(size=(500, 3)) * 40.0
    background = background[np.linalg.norm(background - centre, axis=-1) > 6.0]
    found_centre, radius = estimate_object_sphere(c2w, np.concatenate([centre + ball, background]))
    np.testing.assert_allclose(found_centre, centre, atol=1e-6)
    assert radius == pytest.approx(0.5 * 0.95 ** (1 / 3), rel=0.02)


def test_normalised_capture_and_overrides(tmp_path):
    target = (2.0, -1.0, 0.5)
    ball = np.random.default_rng(4).uniform(-0.3, 0.3, (200, 3)) + np.asarray(target)
    write_capture(tmp_path / "cap", count=5, target=target, points=ball.tolist())
    views = image_views(ColmapViews, tmp_path / "cap")
    centres = views.cameras.campos.double().numpy()
    distance = np.linalg.norm(centres, axis=-1)
    # The cameras were 4 * sqrt(1 + 0.3^2) from the target; the estimated radius is the sparse points'.
    expected = np.percentile(np.linalg.norm(ball - np.asarray(target), axis=-1), 95)
    np.testing.assert_allclose(distance, 4.0 * math.sqrt(1.09) / expected, rtol=1e-4)
    assert np.abs(views.points.mean(0)).max() < 0.1
    # Cameras were upright (world +Y up, small roll): their mean up becomes +Y.
    up = views.cameras.c2w[:, :3, 1].double().mean(0).numpy()
    assert up[1] / np.linalg.norm(up) > 0.999
    override = image_views(ColmapViews, tmp_path / "cap", center=[2.0, -1.0, 0.5], radius=2.0)
    np.testing.assert_allclose(override.cameras.campos.double().norm(dim=-1).numpy(), 2 * math.sqrt(1.09), rtol=1e-4)


def test_points_outside_the_masks_do_not_inflate_the_radius(tmp_path):
    """A ball of points on a table of points: with masks of the ball, the radius is the ball's;
    the table (nearer than the cameras) would otherwise set it."""
    rng = np.random.default_rng(5)
    ball = rng.normal(size=(400, 3))
    ball *= 0.4 * rng.uniform(size=(400, 1)) ** (1 / 3) / np.linalg.norm(ball, axis=-1, keepdims=True)
    table = np.stack([rng.uniform(-2.5, 2.5, 600), np.full(600, -0.6), rng.uniform(-2.5, 2.5, 600)], -1)
    points = np.concatenate([ball, table]).tolist()
    write_capture(
        tmp_path / "cap", count=8, camera_line="1 PINHOLE 160 120 140.0 140.0 80.0 60.0", size=(120, 160),
        points=points, object_radius=0.4,
    )  # fmt: skip
    views = image_views(ColmapViews, tmp_path / "cap")
    assert views.normalization.radius == pytest.approx(np.percentile(np.linalg.norm(ball, axis=-1), 95), rel=0.1)
    c2w = np.stack([camera_to_world(image) for image in views.model.images.values()])
    unmasked = estimate_object_sphere(c2w, np.asarray(points))[1]
    assert unmasked > 2 * views.normalization.radius


# ----------------------------------------------------------------------------- bad input


def error_line(tmp_path, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        image_views(ColmapViews, tmp_path / "cap", **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_image_is_one_line(tmp_path):
    write_capture(tmp_path / "cap")
    (tmp_path / "cap" / "images" / "img2.jpg").unlink()
    assert "img2.jpg: image not found, registered as image 3" in error_line(tmp_path)


def test_unknown_camera_id_is_one_line(tmp_path):
    write_capture(tmp_path / "cap")
    path = tmp_path / "cap" / "sparse" / "0" / "images.txt"
    path.write_text(path.read_text().replace(" 1 img1.jpg", " 4 img1.jpg"))
    assert "image 2 (img1.jpg) references camera 4, which cameras.txt does not define" in error_line(tmp_path)


def test_unsupported_camera_model_is_one_line(tmp_path):
    write_capture(tmp_path / "cap", camera_line="1 OPENCV_FISHEYE 16 12 14 14 8 6 0.1 0 0 0")
    message = error_line(tmp_path)
    assert "camera 1 uses model OPENCV_FISHEYE" in message and "image_undistorter" in message


def test_mask_of_the_wrong_size_is_one_line(tmp_path):
    write_capture(tmp_path / "cap")
    write_png(tmp_path / "cap" / "masks" / "img1.jpg.png", np.ones((6, 8, 1), np.float32))
    assert "img1.jpg.png: mask is 8x6 but its image img1.jpg is 16x12" in error_line(tmp_path)


def test_image_of_another_size_than_its_camera_is_one_line(tmp_path):
    write_capture(tmp_path / "cap", camera_line="1 PINHOLE 32 24 14.0 13.0 9.0 5.0")
    assert "image is 16x12 but its camera 1 in cameras.txt is 32x24" in error_line(tmp_path)


def test_fewer_than_three_registered_images_is_one_line(tmp_path):
    write_capture(tmp_path / "cap", count=2)
    assert "only 2 registered images; at least 3 are needed" in error_line(tmp_path)


def test_images_without_masks_are_rejected_or_opaque(tmp_path):
    write_capture(tmp_path / "cap", masks=False)
    assert "no mask (masks/img0.jpg.png) and no alpha channel" in error_line(tmp_path)
    views = image_views(ColmapViews, tmp_path / "cap", require_alpha=False)
    assert float(views.image(0)[..., 3].min()) == 1.0


def test_alpha_serves_as_mask_and_stem_named_masks(tmp_path):
    images = write_capture(tmp_path / "alpha", masks=False, alpha=True)
    views = image_views(ColmapViews, tmp_path / "alpha")
    np.testing.assert_allclose(views.image(0)[..., 3].numpy(), images[0][..., 3], atol=1e-6)
    write_capture(tmp_path / "stem", masks=False)
    for i in range(4):
        write_png(tmp_path / "stem" / "masks" / f"img{i}.png", np.full((12, 16, 1), 0.4, np.float32))
    assert image_views(ColmapViews, tmp_path / "stem").image(2)[..., 3].mean() == pytest.approx(102 / 255, abs=1e-6)


def test_datamodule_colmap_kind_with_holdout(tmp_path):
    write_capture(tmp_path / "cap", count=6)
    module = ReconDataModule(
        kind="colmap", colmap={"path": str(tmp_path / "cap"), "holdout": 3, "center": [0, 0, 0], "radius": 1.0}
    )
    module.setup()
    assert [len(module.datasets[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    batch = next(iter(module.train_dataloader()))
    assert batch["img"].shape == (1, 12, 16, 4) and batch["proj"][0, 0, 2] == pytest.approx(1 - 2 * 9.0 / 16)


def test_centred_intrinsics_give_the_fov_projection():
    from dmtrec.render.camera import perspective, perspective_from_intrinsics

    width, height, fy = 64.0, 48.0, 50.0
    fovy = 2 * math.atan(height / (2 * fy))
    got = perspective_from_intrinsics(fy, fy, width / 2, height / 2, width, height, 0.1, 100.0)
    torch.testing.assert_close(got, perspective(fovy, width / height, 0.1, 100.0))
