"""NeRD (LLFF-layout) folders: poses_bounds.npy + images/ + masks/, written into tmp_path from
known OpenGL cameras, read back through NeRDViews and ReconDataModule."""

import math
import shutil

import numpy as np
import pytest
import torch
from common import image_views
from PIL import Image
from torch.utils.data import DataLoader

from dmtrec.datasets.datamodule import ReconDataModule
from dmtrec.datasets.errors import DatasetError
from dmtrec.datasets.nerd import NeRDViews
from dmtrec.datasets.samples import collate_views
from dmtrec.io.image import write_png

# Every camera looks at this point; the loader must move it to the origin.
CENTRE = np.array([0.3, -0.2, 0.5])
HWF = (400.0, 400.0, 500.0)  # the intrinsics of the full-size photos the poses were solved on


def look_at_centre(i: int) -> np.ndarray:
    """OpenGL camera-to-world ([right, up, back] columns) at distance 3 from CENTRE, looking at it."""
    azimuth, elevation = 0.9 * i, 0.25 * ((i % 3) - 1)
    back = np.array(
        [math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth)]
    )
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, CENTRE + 3.0 * back
    return m


def llff_row(c2w: np.ndarray, hwf=HWF, bounds=(1.0, 6.0)) -> np.ndarray:
    """One row of poses_bounds.npy: the 3x5 [down, right, back, t, hwf] matrix, row-major, then near, far."""
    right, up, back, t = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3]
    pose = np.stack([-up, right, back, t, np.asarray(hwf)], axis=1)
    return np.concatenate([pose.reshape(-1), bounds])


def srgb_pixels(seed: int, size=(8, 8), channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(*size, channels)).astype(np.float32) / 255.0


def write_llff(folder, frames=4, size=(8, 8), hwf=HWF, names=None):
    """Write a scene; returns (c2w per frame, image pixels, mask pixels), in the file names' sorted order."""
    names = names or [f"IMG_{i:04d}" for i in range(frames)]
    order = sorted(range(frames), key=lambda i: names[i])
    cameras, images, masks = [], [], []
    for rank, i in enumerate(order):
        cameras.append(look_at_centre(rank))
        images.append(srgb_pixels(rank, size))
        masks.append(srgb_pixels(100 + rank, size, channels=1))
        write_png(folder / "images" / f"{names[i]}.png", images[-1])
        write_png(folder / "masks" / f"{names[i]}.png", masks[-1])
    np.save(folder / "poses_bounds.npy", np.stack([llff_row(c, hwf) for c in cameras]))
    return cameras, images, masks


def srgb_decode(c):
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


@pytest.fixture
def scene(tmp_path):
    folder = tmp_path / "scene"
    return folder, *write_llff(folder)


def test_poses_convert_from_llff_axes_and_recentre_on_the_common_focus(scene):
    folder, cameras, _, _ = scene
    ds = image_views(NeRDViews, folder)
    assert ds.frames == [0, 1, 2, 3]
    for i, c2w in enumerate(cameras):
        expected = c2w.copy()
        expected[:3, 3] -= CENTRE
        assert torch.allclose(ds[i]["c2w"], torch.from_numpy(expected).float(), atol=1e-5), i
        # The look-at point is now the origin: it projects to the image centre in front of the camera.
        clip = ds[i]["proj"] @ torch.linalg.inv(ds[i]["c2w"]) @ torch.tensor([0.0, 0.0, 0.0, 1.0])
        assert clip[3] > 0 and torch.allclose(clip[:2] / clip[3], torch.zeros(2), atol=1e-5)


def test_fovy_from_focal_and_projection_follow_the_intrinsics_not_the_file_size(tmp_path):
    # Photos solved at 400 x 300 (W x H) with focal 500, stored squashed to 8 x 8 as nvdiffrec's resize does.
    folder = tmp_path / "wide"
    cameras, _, _ = write_llff(folder, frames=3, hwf=(300.0, 400.0, 500.0))
    ds = image_views(NeRDViews, folder)
    assert torch.allclose(ds.fovy, torch.full((3,), 2 * math.atan(150.0 / 500.0)))
    # A camera-space point lands where the pinhole (focal 500 px, centre (200, 150)) puts it.
    point_cam = torch.tensor([0.2, -0.1, -2.0, 1.0])
    clip = ds[0]["proj"] @ point_cam
    ndc = clip[:2] / clip[3]
    px = 500.0 * 0.2 / 2.0 / 200.0, -(500.0 * -0.1 / 2.0) / 150.0  # proj flips y (image rows go down)
    assert torch.allclose(ndc, torch.tensor(px), atol=1e-6)


def test_img_is_srgb_decoded_photo_with_the_linear_mask_as_alpha(scene):
    folder, _, images, masks = scene
    ds = image_views(NeRDViews, folder, preload=False)
    for i in range(4):
        img = ds[i]["img"].numpy()
        assert img.shape == (8, 8, 4) and img.dtype == np.float32
        np.testing.assert_allclose(img[..., :3], srgb_decode(images[i]), atol=1e-6)
        np.testing.assert_allclose(img[..., 3:], masks[i], atol=1e-6)  # coverage, not decoded


def test_rgb_masks_use_channel_0_and_photo_alpha_is_ignored(scene):
    folder, _, images, _ = scene
    photo = np.concatenate([images[1], np.zeros((8, 8, 1), np.float32)], axis=-1)  # fully transparent photo
    write_png(folder / "images" / "IMG_0001.png", photo)
    mask = np.zeros((8, 8, 3), np.float32)
    mask[..., 0], mask[..., 1:] = 0.6, 1.0
    write_png(folder / "masks" / "IMG_0001.png", mask)
    img = image_views(NeRDViews, folder)[1]["img"]
    assert torch.allclose(img[..., :3], torch.from_numpy(srgb_decode(images[1])).float(), atol=1e-6)
    assert torch.allclose(img[..., 3], torch.full((8, 8), 0.6), atol=1 / 255)


def test_images_and_masks_pair_with_poses_by_sorted_name_and_other_files_are_ignored(tmp_path):
    folder = tmp_path / "names"
    cameras, images, masks = write_llff(folder, frames=3, names=["c", "a", "B"])  # sorted: B, a, c
    (folder / "images" / "notes.txt").write_text("not an image")
    (folder / "masks" / "thumbs.db").write_bytes(b"\0")
    ds = image_views(NeRDViews, folder)
    assert [p.name for p in ds.image_paths] == ["B.png", "a.png", "c.png"]
    for i in range(3):
        assert np.allclose(ds[i]["img"][..., 3].numpy(), masks[i][..., 0], atol=1e-6)
        assert torch.allclose(ds[i]["c2w"][:3, :3], torch.from_numpy(cameras[i][:3, :3]).float(), atol=1e-6)


def test_jpeg_files_with_upper_case_suffixes_are_read(tmp_path):
    folder = tmp_path / "jpeg"
    write_llff(folder, frames=2)
    for sub in ("images", "masks"):
        for png in sorted((folder / sub).glob("*.png")):
            Image.new("RGB" if sub == "images" else "L", (8, 8), (128, 128, 128) if sub == "images" else 255).save(
                png.with_suffix(".JPG")
            )
            png.unlink()
    img = image_views(NeRDViews, folder)[1]["img"]
    assert torch.allclose(img[..., :3], torch.full((8, 8, 3), float(srgb_decode(128 / 255))), atol=0.01)
    assert torch.allclose(img[..., 3], torch.ones(8, 8), atol=0.01)


def test_every_split_holds_all_frames_by_default_as_nvdiffrec(scene):
    folder = scene[0]
    train, val, test = (image_views(NeRDViews, folder, split) for split in ("train", "val", "test"))
    assert train.frames == val.frames == test.frames == [0, 1, 2, 3]
    assert image_views(NeRDViews, folder, "val", max_frames=2).frames == [0, 3]


def test_holdout_gives_every_kth_frame_to_val_and_test_in_the_same_world(tmp_path):
    folder = tmp_path / "seven"
    write_llff(folder, frames=7)
    train, test = image_views(NeRDViews, folder, "train", holdout=3), image_views(NeRDViews, folder, "test", holdout=3)
    assert train.frames == [1, 2, 4, 5] and test.frames == [0, 3, 6]
    assert image_views(NeRDViews, folder, "val", holdout=3).frames == [0, 3, 6]
    assert [int(train[k]["index"]) for k in range(4)] == [1, 2, 4, 5]
    everything = image_views(NeRDViews, folder)
    # Recentred on all frames, whatever the split: the same frame has the same camera.
    assert torch.equal(test[1]["c2w"], everything[3]["c2w"]) and torch.equal(train[2]["c2w"], everything[4]["c2w"])
    with pytest.raises(ValueError, match="^holdout: "):
        image_views(NeRDViews, folder, holdout=1)


def test_holdout_that_leaves_a_split_empty(tmp_path):
    folder = tmp_path / "single"
    write_llff(folder, frames=1)
    expect_error(folder, folder / "poses_bounds.npy", "holdout 2 leaves no train frames", holdout=2)


def test_batches_follow_the_contract_at_the_working_resolution(scene):
    folder, _, images, masks = scene
    ds = image_views(NeRDViews, folder, downscale=2, background="random", length=6, seed=1)
    batch = next(iter(DataLoader(ds, batch_size=6, collate_fn=collate_views)))
    assert batch["c2w"].shape == (6, 4, 4) and batch["proj"].shape == (6, 4, 4)
    assert batch["img"].shape == (6, 4, 4, 4) and batch["background"].shape == (6, 4, 4, 3)
    assert batch["index"].dtype == torch.int64 and batch["index"].tolist() == [0, 1, 2, 3, 0, 1]
    assert batch["resolution"] == (4, 4)
    assert all(t.dtype == torch.float32 for t in (batch["c2w"], batch["proj"], batch["img"], batch["background"]))
    # Area downscale of straight alpha: the alpha is the 2x2 mean of the mask.
    expected_alpha = masks[0][..., 0].reshape(4, 2, 4, 2).mean(axis=(1, 3))
    assert np.allclose(batch["img"][0, ..., 3].numpy(), expected_alpha, atol=1e-6)
    # Any resolution is fine (the projection comes from the intrinsics, not the pixels).
    squashed = image_views(NeRDViews, folder, resolution=(4, 6))
    assert squashed[0]["img"].shape == (4, 6, 4) and torch.equal(
        squashed[0]["proj"], image_views(NeRDViews, folder)[0]["proj"]
    )


def test_datamodule_kind_nerd(scene):
    folder = scene[0]
    dm = ReconDataModule(kind="nerd", nerd={"path": str(folder), "holdout": 2}, val_views=1, batch_size=2, views=5)
    dm.setup("fit")
    assert isinstance(dm.train_dataset, NeRDViews) and len(dm.train_dataset) == 5
    assert dm.train_dataset.frames == [1, 3] and dm.val_dataset.frames == [0] and dm.test_dataset.frames == [0, 2]
    batch = next(iter(dm.train_dataloader()))
    assert batch["img"].shape == (2, 8, 8, 4)
    with pytest.raises(ValueError, match="^nerd.path: "):
        ReconDataModule(kind="nerd")
    with pytest.raises(ValueError, match="^nerf_synthetic.holdout: "):
        ReconDataModule(nerf_synthetic={"path": str(folder), "holdout": 8})


# --- bad input: one DatasetError line that starts with the offending file ---------------------


def expect_error(folder, path, *words, **kwargs):
    with pytest.raises(DatasetError) as info:
        image_views(NeRDViews, folder, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message


def test_missing_folder_poses_and_subfolders(tmp_path, scene):
    folder = scene[0]
    expect_error(tmp_path / "nope", tmp_path / "nope", "not found")
    shutil.rmtree(folder / "masks")
    expect_error(folder, folder / "masks", "not found")
    (folder / "poses_bounds.npy").unlink()
    expect_error(folder, folder / "poses_bounds.npy", "not found")


AXES = [0, 1, 2, 5, 6, 7, 10, 11, 12]  # the 3x3 axes in a row's flattened 3x5 pose
FOCAL = 14


def edited_row(row: int, columns, value):
    """A writer of poses_bounds.npy: the scene's own poses with ``columns`` of one row set to ``value``."""

    def write(path):
        data = np.load(path)
        data[row, columns] = value
        np.save(path, data)

    return write


def write_npz(path):
    with open(path, "wb") as fh:
        np.savez(fh, poses=np.zeros((4, 17)))


@pytest.mark.parametrize(
    "write, words",
    [
        (lambda path: np.save(path, np.zeros((4, 15))), ["[4, 15]", "[N, 17]"]),
        (lambda path: np.save(path, np.zeros(17)), ["[17]", "[N, 17]"]),
        (lambda path: np.save(path, np.zeros((0, 17))), ["[0, 17]"]),
        (lambda path: np.save(path, np.array([["a"] * 17] * 4)), ["[N, 17] numbers"]),
        (edited_row(2, [3], np.nan), ["row 2", "NaN"]),
        (edited_row(1, [FOCAL], 0.0), ["row 1", "positive"]),
        (edited_row(3, AXES, 0.0), ["row 3", "not invertible"]),
        (lambda path: path.write_bytes(b"not a numpy file"), ["not a readable .npy"]),
        (lambda path: path.write_bytes(b"PK\x03\x04 not a zip either"), ["not a readable .npy"]),
        (write_npz, [".npz archive"]),
    ],
)
def test_malformed_poses_bounds(scene, write, words):
    folder = scene[0]
    path = folder / "poses_bounds.npy"
    write(path)
    expect_error(folder, path, *words)


def test_image_or_mask_count_differing_from_the_poses(scene):
    folder = scene[0]
    (folder / "masks" / "IMG_0002.png").unlink()
    expect_error(folder, folder / "masks", "3 images", "4 poses")
    write_png(folder / "images" / "IMG_0009.png", srgb_pixels(9))
    expect_error(folder, folder / "images", "5 images", "4 poses")


@pytest.mark.parametrize("sub", ["images", "masks"])
def test_unreadable_image_or_mask(scene, sub):
    folder = scene[0]
    bad = folder / sub / "IMG_0002.png"
    bad.write_bytes(b"\x89PNG truncated")
    expect_error(folder, bad, "not a readable image")
    # The same check holds for a split that does not cache its images.
    expect_error(folder, bad, "not a readable image", preload=False)


def test_mask_or_image_of_another_size(scene):
    folder = scene[0]
    mask = folder / "masks" / "IMG_0001.png"
    write_png(mask, srgb_pixels(5, size=(8, 6), channels=1))
    expect_error(folder, mask, "mask is 6x8", "IMG_0001.png is 8x8")
    write_png(mask, srgb_pixels(5, size=(6, 6), channels=1))
    image = folder / "images" / "IMG_0001.png"
    write_png(image, srgb_pixels(5, size=(6, 6)))
    expect_error(folder, image, "image is 6x6", "IMG_0000.png", "8x8")
