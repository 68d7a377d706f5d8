import json
import math

import numpy as np
import pytest
import torch
from common import image_views

from dmtrec.datasets.base import load_rgba
from dmtrec.datasets.nerf_synthetic import NeRFSyntheticViews
from dmtrec.datasets.samples import resize_rgba
from dmtrec.io.image import srgb_to_linear, write_png
from dmtrec.render.camera import Cameras


def test_views_decode_srgb_keep_straight_alpha_and_cameras_from_the_json(make_nerf):
    folder, written = make_nerf(splits={"train": 3, "val": 1})
    ds = image_views(NeRFSyntheticViews, folder, "train")
    transforms = json.loads((folder / "transforms_train.json").read_text())
    assert len(ds) == 3 and ds.resolution == (8, 8)
    for i in range(3):
        sample = ds[i]
        expected = torch.from_numpy(written["train"][i])
        assert torch.allclose(sample["img"][..., :3], srgb_to_linear(expected[..., :3]), atol=1e-6)
        assert torch.equal(sample["img"][..., 3], expected[..., 3])  # alpha is not decoded
        c2w = torch.tensor(transforms["frames"][i]["transform_matrix"], dtype=torch.float32)
        assert torch.equal(sample["c2w"], c2w)
        fovy = Cameras.fovy_from_fovx(transforms["camera_angle_x"], (8, 8))
        assert torch.allclose(sample["proj"], Cameras.from_fov(c2w, fovy, (8, 8)).proj[0])
        assert sample["index"].dtype == torch.int64 and int(sample["index"]) == i
        assert sample["img"].dtype == torch.float32 and sample["img"].shape == (8, 8, 4)
        assert sample["resolution"] == (8, 8)


def test_file_path_with_extension_and_the_val_split_falling_back_to_test(make_nerf):
    folder, written = make_nerf(splits={"train": 2, "test": 2}, with_extension=True)
    val = image_views(NeRFSyntheticViews, folder, "val")
    assert val.transforms.path.name == "transforms_test.json"
    assert torch.allclose(val[1]["img"][..., 3], torch.from_numpy(written["test"][1][..., 3]))


def test_aspect_of_non_square_images_sets_fovy_from_camera_angle_x(make_nerf):
    folder, _ = make_nerf(splits={"train": 1, "test": 1}, size=(6, 12))
    ds = image_views(NeRFSyntheticViews, folder, "train")
    fovx = json.loads((folder / "transforms_train.json").read_text())["camera_angle_x"]
    # the projection's x scale must give back the stored horizontal fov
    assert abs(2 * math.atan(1.0 / ds[0]["proj"][0, 0].item()) - fovx) < 1e-5
    assert ds.resolution == (6, 12)


def test_downscale_averages_premultiplied_linear_colour(tmp_path):
    img = torch.zeros(2, 4, 4)
    img[0, 0] = torch.tensor([1.0, 0.5, 0.25, 1.0])  # opaque
    img[0, 1] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # transparent: its colour must not bleed in
    img[1, 0] = torch.tensor([0.2, 0.2, 0.2, 0.5])
    small = resize_rgba(img, (1, 2))
    alpha = (1.0 + 0.0 + 0.0 + 0.5) / 4
    assert torch.allclose(small[0, 0, 3], torch.tensor(alpha))
    expected_rgb = (torch.tensor([1.0, 0.5, 0.25]) * 1.0 + torch.tensor([0.2, 0.2, 0.2]) * 0.5) / 4 / alpha
    assert torch.allclose(small[0, 0, :3], expected_rgb)
    assert torch.equal(small[0, 1], torch.zeros(4))  # fully transparent block stays empty, not NaN


def test_dataset_downscale_matches_resize_of_the_decoded_image(make_nerf):
    folder, _ = make_nerf(splits={"train": 2, "test": 1})
    full = image_views(NeRFSyntheticViews, folder, "train")
    half = image_views(NeRFSyntheticViews, folder, "train", downscale=2)
    by_resolution = image_views(NeRFSyntheticViews, folder, "train", resolution=(4, 4))
    assert half.resolution == (4, 4)
    assert torch.allclose(half[1]["img"], resize_rgba(full[1]["img"], (4, 4)))
    assert torch.equal(by_resolution[1]["img"], half[1]["img"])
    # same cameras, projection for the smaller image has the same fov
    assert torch.allclose(half[1]["proj"], full[1]["proj"])


def test_lazy_loading_gives_the_cached_images(make_nerf):
    folder, _ = make_nerf(splits={"train": 2, "test": 1})
    cached = image_views(NeRFSyntheticViews, folder, "train", downscale=2)
    lazy = image_views(NeRFSyntheticViews, folder, "train", downscale=2, preload=False)
    for i in range(2):
        assert torch.equal(cached[i]["img"], lazy[i]["img"])


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_grayscale_and_alpha_less_images(channels, make_nerf):
    folder, written = make_nerf(splits={"train": 1, "test": 1}, channels=channels)
    has_alpha = channels == 2
    ds = image_views(NeRFSyntheticViews, folder, "train", require_alpha=has_alpha)
    img = ds[0]["img"]
    src = torch.from_numpy(written["train"][0])
    colour = src[..., :1].expand(-1, -1, 3) if channels <= 2 else src
    assert torch.allclose(img[..., :3], srgb_to_linear(colour), atol=1e-6)
    assert torch.equal(img[..., 3], src[..., 1] if has_alpha else torch.ones(8, 8))


def test_hdr_images_are_already_linear(tmp_path):
    from dmtrec.io.image import write_hdr

    radiance = np.full((4, 4, 3), 2.0, dtype=np.float32)
    write_hdr(tmp_path / "a.hdr", radiance)
    img = load_rgba(tmp_path / "a.hdr", require_alpha=False)
    assert torch.allclose(img[..., :3], torch.full((4, 4, 3), 2.0), rtol=1e-2)


def test_backgrounds_are_seeded_per_index(make_nerf):
    folder, _ = make_nerf(splits={"train": 3, "test": 1})
    white = image_views(NeRFSyntheticViews, folder, "train")[0]["background"]
    assert torch.equal(white, torch.ones(8, 8, 3))
    assert torch.equal(
        image_views(NeRFSyntheticViews, folder, "train", background="black")[0]["background"], torch.zeros(8, 8, 3)
    )

    rand = image_views(NeRFSyntheticViews, folder, "train", background="random", seed=3, length=6)
    again = image_views(NeRFSyntheticViews, folder, "train", background="random", seed=3, length=6)
    other_seed = image_views(NeRFSyntheticViews, folder, "train", background="random", seed=4, length=6)
    colours = torch.stack([rand[i]["background"][0, 0] for i in range(6)])
    bg = rand[2]["background"]
    assert torch.equal(bg, bg[:1, :1].expand_as(bg))  # one colour per image
    assert torch.unique(colours, dim=0).shape[0] == 6  # fresh colour per sample, even for a repeated frame
    assert torch.equal(rand[5]["background"], again[5]["background"])
    assert not torch.equal(rand[5]["background"], other_seed[5]["background"])
    assert torch.equal(rand[5]["img"], rand[2]["img"])  # frames cycle
    assert int(rand[5]["index"]) == 2

    noise = image_views(NeRFSyntheticViews, folder, "train", background="noise")[0]["background"]
    assert torch.unique(noise.reshape(-1, 3), dim=0).shape[0] == 64
    assert 0.0 <= noise.min() and noise.max() <= 1.0


def test_max_frames_takes_evenly_spaced_frames(make_nerf):
    folder, written = make_nerf(splits={"train": 1, "test": 5})
    ds = image_views(NeRFSyntheticViews, folder, "test", max_frames=3)
    assert ds.frames == [0, 2, 4] and len(ds) == 3
    assert [int(ds[i]["index"]) for i in range(3)] == [0, 2, 4]
    assert torch.equal(ds[2]["img"][..., 3], torch.from_numpy(written["test"][4][..., 3]))


def test_world_up_z_turns_blender_scenes_y_up(tmp_path):
    write_png(tmp_path / "train" / "a.png", np.ones((4, 4, 4), dtype=np.float32))
    above = np.eye(4)
    above[2, 3] = 5.0  # Blender: camera 5 units above the origin looking down (-Z)
    frames = [{"file_path": "train/a.png", "transform_matrix": above.tolist()}]
    for split in ("train", "test"):
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    c2w = image_views(NeRFSyntheticViews, tmp_path, "train", world_up="z")[0]["c2w"]
    assert torch.allclose(c2w[:3, 3], torch.tensor([0.0, 5.0, 0.0]))  # above is +Y now
    assert torch.allclose(c2w[:3, 2], torch.tensor([0.0, 1.0, 0.0]))  # still looking down at the origin
    assert torch.allclose(torch.det(c2w[:3, :3]), torch.tensor(1.0))
