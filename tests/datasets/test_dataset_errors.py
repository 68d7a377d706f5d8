"""Every bad input gives one DatasetError line, "<file>: <problem>", before any training."""

import json
import os

import numpy as np
import pytest
from common import image_views

from dmtrec.datasets.errors import DatasetError
from dmtrec.datasets.nerf_synthetic import NeRFSyntheticViews
from dmtrec.io.image import write_png


def expect_error(folder, path, *words, split="train", **kwargs):
    """Building ``split`` fails with one line that starts with ``path`` and mentions ``words``."""
    with pytest.raises(DatasetError) as info:
        image_views(NeRFSyntheticViews, folder, split, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message
    assert isinstance(info.value, ValueError)
    return message


def edit_transforms(folder, change, split="train"):
    path = folder / f"transforms_{split}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_missing_folder_and_missing_transforms(tmp_path, make_nerf):
    expect_error(tmp_path / "nope", tmp_path / "nope", "folder not found")
    folder, _ = make_nerf(splits={"test": 1})
    expect_error(folder, folder, "transforms_train.json")
    folder, _ = make_nerf("only_train", splits={"train": 1})
    expect_error(folder, folder, "transforms_val.json", "transforms_test.json", split="val")


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"camera_angle_x": 0.7, "frames": [', ["malformed JSON", "line 1"]),
        ("[1, 2]", ["JSON object"]),
        ('{"frames": []}', ["camera_angle_x"]),
        ('{"camera_angle_x": "wide", "frames": []}', ["camera_angle_x", "'wide'"]),
        ('{"camera_angle_x": 7.0, "frames": []}', ["camera_angle_x"]),
        ('{"camera_angle_x": 0.7}', ["missing 'frames'"]),
        ('{"camera_angle_x": 0.7, "frames": []}', ["non-empty"]),
        ('{"camera_angle_x": 0.7, "frames": [3]}', ["frames[0]"]),
    ],
)
def test_malformed_transforms(make_nerf, text, words):
    folder, _ = make_nerf()
    path = folder / "transforms_train.json"
    path.write_text(text)
    expect_error(folder, path, *words)


def test_non_utf8_transforms(make_nerf):
    folder, _ = make_nerf()
    path = folder / "transforms_train.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    expect_error(folder, path, "malformed JSON")


@pytest.mark.parametrize(
    "frame_change, words",
    [
        (lambda f: f.pop("file_path"), ["frames[1].file_path"]),
        (lambda f: f.update(file_path=""), ["frames[1].file_path"]),
        (lambda f: f.update(transform_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]]), ["frames[1].transform_matrix", "4x4"]),
        (lambda f: f.update(transform_matrix=[["a"] * 4] * 4), ["frames[1].transform_matrix"]),
        (lambda f: f.pop("transform_matrix"), ["frames[1].transform_matrix"]),
        (
            lambda f: f.update(transform_matrix=[[0.0] * 4] * 3 + [[0, 0, 0, 1]]),
            ["frames[1].transform_matrix", "invertible"],
        ),
        (
            lambda f: f.update(transform_matrix=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, float("nan")]]),
            ["finite"],
        ),
    ],
)
def test_malformed_frames(make_nerf, frame_change, words):
    folder, _ = make_nerf()
    path = edit_transforms(folder, lambda d: frame_change(d["frames"][1]))
    expect_error(folder, path, *words)


@pytest.mark.parametrize("file_path", ["../outside/r_0", "./train/../../outside/r_0", "/etc/passwd"])
def test_paths_must_stay_inside_the_dataset_folder(make_nerf, tmp_path, file_path):
    folder, _ = make_nerf()
    # a real image outside the folder, so only the containment check can reject it
    write_png(tmp_path / "outside" / "r_0.png", np.ones((8, 8, 4), dtype=np.float32))
    path = edit_transforms(folder, lambda d: d["frames"][0].update(file_path=file_path))
    expect_error(folder, path, "frames[0].file_path", "outside the dataset folder")


def test_missing_image(make_nerf):
    folder, _ = make_nerf()
    os.remove(folder / "train" / "r_2.png")
    expect_error(folder, folder / "train" / "r_2", "image not found", "frames[2]", "transforms_train.json")


def test_unreadable_images(make_nerf):
    folder, _ = make_nerf()
    (folder / "train" / "r_1.png").write_bytes(b"not a png at all")
    expect_error(folder, folder / "train" / "r_1.png", "not a readable image")

    folder, _ = make_nerf("truncated")
    image = folder / "train" / "r_0.png"
    image.write_bytes(image.read_bytes()[:60])
    expect_error(folder, image, "not a readable image")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions that apply to this user")
def test_image_without_read_permission(make_nerf):
    folder, _ = make_nerf()
    image = folder / "train" / "r_0.png"
    image.chmod(0)
    try:
        expect_error(folder, image, "not a readable image")
    finally:
        image.chmod(0o644)


def test_images_of_mixed_sizes(make_nerf):
    folder, _ = make_nerf()
    write_png(folder / "train" / "r_2.png", np.ones((8, 16, 4), dtype=np.float32))
    expect_error(folder, folder / "train" / "r_2.png", "16x8", "8x8", "r_0.png")


def test_no_alpha_where_masks_are_required(make_nerf):
    folder, _ = make_nerf()
    write_png(folder / "train" / "r_1.png", np.ones((8, 8, 3), dtype=np.float32))
    expect_error(folder, folder / "train" / "r_1.png", "no alpha channel", "require_alpha")
    assert len(image_views(NeRFSyntheticViews, folder, "train", require_alpha=False)) == 3


def test_broken_test_split_is_reported_too(make_nerf):
    folder, _ = make_nerf()
    (folder / "test" / "r_0.png").write_bytes(b"")
    expect_error(folder, folder / "test" / "r_0.png", "not a readable image", split="test")


def test_resolution_and_downscale_that_do_not_fit_the_images(make_nerf):
    folder, _ = make_nerf()
    expect_error(folder, folder / "train" / "r_0.png", "aspect ratio", resolution=(4, 8))
    expect_error(folder, folder / "train" / "r_0.png", "downscale 16", downscale=16)
    with pytest.raises(ValueError, match="^downscale: "):
        image_views(NeRFSyntheticViews, folder, "train", downscale=0)
    with pytest.raises(ValueError, match="^downscale: .*not both"):
        image_views(NeRFSyntheticViews, folder, "train", downscale=2, resolution=(4, 4))
