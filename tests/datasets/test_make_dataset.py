import argparse
import json
import math

import pytest
import torch
from common import image_views

from dmtrec.commands.make_dataset import add_arguments, main
from dmtrec.datasets import make_dataset as make_dataset_module
from dmtrec.datasets.make_dataset import make_dataset
from dmtrec.datasets.nerf_synthetic import NeRFSyntheticViews
from dmtrec.datasets.reference_mesh import ReferenceMeshViews, ReferenceRender, load_reference_scene
from dmtrec.io.image import linear_to_srgb, srgb_to_linear

SPOT, PROBE = "meshes/spot/spot.obj", "envmaps/mud_road_puresky_1k.hdr"
SMALL = dict(
    views=3,
    res=(12, 16),
    val_views=2,
    test_views=1,
    render=ReferenceRender(probe_res=32, device="cpu", rasterizer="torch"),
)


def make(shared, out, **kwargs):
    return make_dataset(shared / SPOT, shared / PROBE, out=out, **{**SMALL, **kwargs})


@pytest.mark.slow
def test_written_folder_reads_back_as_the_reference_views(shared_data, tmp_path):
    out = make(shared_data, tmp_path / "spot", seed=4)
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset.json",
        "mud_road_puresky_1k.hdr",
        "test",
        "train",
        "transforms_test.json",
        "transforms_train.json",
        "transforms_val.json",
        "val",
    ]
    recipe = json.loads((out / "dataset.json").read_text())
    assert recipe["seed"] == 4 and recipe["views"] == {"train": 3, "val": 2, "test": 1}

    scene = load_reference_scene(
        shared_data / SPOT, shared_data / PROBE, ReferenceRender(probe_res=32, rasterizer="torch")
    )
    for split, count in (("train", 3), ("val", 2), ("test", 1)):
        loaded = image_views(NeRFSyntheticViews, out, split)
        reference = ReferenceMeshViews(scene, split, views=count, resolution=(12, 16), seed=4)
        assert len(loaded) == count and loaded.resolution == (12, 16)
        # the projection from camera_angle_x is the reference views' (fovy 45 deg, 16:12 aspect)
        assert torch.allclose(loaded[0]["proj"], reference.cameras([0]).proj[0], atol=1e-5)
        renders = reference.render(list(range(count)))
        for i in range(count):
            sample = loaded[i]
            assert torch.allclose(sample["c2w"], reference.c2w(i), atol=1e-6)
            # 8-bit sRGB: at most half a code value of error, decoded
            img = renders[i]
            assert (sample["img"][..., 3] - img[..., 3]).abs().max() <= 0.5 / 255 + 1e-6
            covered = img[..., 3] > 0.5
            encoded = linear_to_srgb(img[..., :3])  # PNGs clip radiance above 1
            code_interval = srgb_to_linear(encoded + 0.5 / 255) - srgb_to_linear(encoded - 0.5 / 255)
            error = (sample["img"][..., :3] - srgb_to_linear(encoded)).abs()
            assert (error[covered] <= code_interval[covered] + 1e-6).all()
    fovx = json.loads((out / "transforms_train.json").read_text())["camera_angle_x"]
    assert abs(math.tan(fovx / 2) - math.tan(math.radians(22.5)) * 16 / 12) < 1e-6


@pytest.mark.slow
def test_same_seed_same_bytes_and_runs_through_the_command_line(shared_data, tmp_path):
    first = make(shared_data, tmp_path / "a", seed=1)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--mesh",
            str(shared_data / SPOT),
            "--probe",
            str(shared_data / PROBE),
            "--views",
            "3",
            "--res",
            "12x16",
            "--val-views",
            "2",
            "--test-views",
            "1",
            "--probe-res",
            "32",
            "--device",
            "cpu",
            "--rasterizer",
            "torch",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "b"),
        ]
    )
    assert main(args) == 0
    second = tmp_path / "b"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        if name.name != "dataset.json":  # records the arguments, identical but for paths
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
    other = make(shared_data, tmp_path / "c", seed=2)
    assert (other / "train" / "r_0.png").read_bytes() != (first / "train" / "r_0.png").read_bytes()
    assert (other / "val" / "r_0.png").read_bytes() == (first / "val" / "r_0.png").read_bytes()  # fixed orbit


def test_existing_output_needs_overwrite_and_a_crash_leaves_nothing(shared_data, tmp_path, monkeypatch):
    out = tmp_path / "spot"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists"):
        make(shared_data, out)

    calls = []

    def crash_on_third_image(path, img):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        original(path, img)

    original = make_dataset_module.write_png
    monkeypatch.setattr(make_dataset_module, "write_png", crash_on_third_image)
    with pytest.raises(OSError, match="disk full"):
        make(shared_data, out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spot"]  # no half-written folder beside it
    assert (out / "keep.txt").read_text() == "mine"  # and the old one untouched


def test_bad_arguments_and_inputs_fail_before_writing(shared_data, tmp_path):
    from dmtrec.datasets.errors import DatasetError

    with pytest.raises(ValueError, match="^views: "):
        make(shared_data, tmp_path / "x", views=0)
    with pytest.raises(ValueError, match="^res: "):
        make(shared_data, tmp_path / "x", res=(0, 8))
    with pytest.raises(DatasetError, match="probe file not found"):
        make_dataset(shared_data / SPOT, tmp_path / "none.hdr", 1, 8, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--mesh", "m", "--probe", "p", "--out", "o", "--res", "12y4"])


@pytest.mark.slow
def test_z_up_folder_reads_back_as_the_y_up_one(shared_data, tmp_path):
    """``world_up="z"`` writes Blender-like Z-up poses: read with the kind's ``world_up: z`` they
    are the Y-up folder's poses again (same images); raw, the mesh's +Y is the dataset's +Z."""
    y_up = make(shared_data, tmp_path / "y", seed=2)
    z_up = make(shared_data, tmp_path / "z", seed=2, world_up="z")
    assert json.loads((z_up / "dataset.json").read_text())["world_up"] == "z"
    assert "world_up" not in json.loads((y_up / "dataset.json").read_text())
    for split in ("train", "test"):
        plain = image_views(NeRFSyntheticViews, y_up, split)
        turned = image_views(NeRFSyntheticViews, z_up, split, world_up="z")
        raw = image_views(NeRFSyntheticViews, z_up, split)
        for i in range(len(plain)):
            assert torch.allclose(turned[i]["c2w"], plain[i]["c2w"], atol=1e-6)
            assert torch.equal(turned[i]["img"], plain[i]["img"])
            # camera position (x, y, z) of the mesh's frame is (x, -z, y) in the Z-up one
            x, y, z = plain[i]["c2w"][:3, 3]
            assert torch.allclose(raw[i]["c2w"][:3, 3], torch.stack([x, -z, y]), atol=1e-6)
    with pytest.raises(ValueError, match="^world_up: "):
        make(shared_data, tmp_path / "w", world_up="x")
    with pytest.raises(ValueError, match="only for --format nerf_synthetic"):
        main(
            argparse.Namespace(
                **{**vars(_parse(["--format", "colmap", "--world-up", "z"])), "out": str(tmp_path / "c")}
            )
        )


def _parse(extra):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--mesh", "m", "--probe", "p", "--out", "o", *extra])
