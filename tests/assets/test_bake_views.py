"""View distributions and camera lists of dmtrec.assets.views (shared by bake and lod)."""

import json
import math

import pytest
import torch

from dmtrec.assets.views import fit_radius, load_camera_list, mesh_bounds, view_cameras
from dmtrec.core.mesh import Mesh
from dmtrec.render.camera import look_at
from dmtrec.render.camera_distributions import sample_cameras


def _box(offset=(0.0, 0.0, 0.0)):
    corners = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-0.5, 0.5) for z in (-0.25, 0.25)])
    return Mesh(corners + torch.tensor(offset), torch.tensor([[0, 1, 2], [1, 3, 2]]))


@pytest.mark.parametrize("distribution", ["sphere", "hemisphere"])
def test_cameras_look_at_the_target_from_the_radius(distribution):
    target = torch.tensor([1.0, 2.0, 3.0])
    cameras = sample_cameras(200, distribution, 4.0, 30.0, (20, 30), seed=3, target=target.tolist())
    offset = cameras.campos - target
    torch.testing.assert_close(offset.norm(dim=-1), torch.full((200,), 4.0))
    # Each camera's -Z axis points at the target.
    torch.testing.assert_close(-cameras.c2w[:, :3, 2], -offset / 4.0, atol=1e-5, rtol=0)
    assert cameras.resolution == (20, 30)
    heights = offset[:, 1] / 4.0
    if distribution == "hemisphere":
        assert bool((heights >= -1e-6).all())
        assert abs(float(heights.mean()) - 0.5) < 0.1  # uniform over the half sphere's area: mean height 1/2
    else:
        assert float(heights.min()) < -0.5 and abs(float(heights.mean())) < 0.1
    again = sample_cameras(200, distribution, 4.0, 30.0, (20, 30), seed=3, target=target.tolist())
    assert torch.equal(again.c2w, cameras.c2w)
    assert not torch.equal(sample_cameras(200, distribution, 4.0, 30.0, 8, seed=4).c2w, cameras.c2w)


def test_fit_radius_fits_the_bounding_sphere_into_the_view():
    mesh = _box((5.0, 0.0, 0.0))
    centre, radius = mesh_bounds(mesh)
    torch.testing.assert_close(centre, torch.tensor([5.0, 0.0, 0.0]))
    assert radius == pytest.approx(math.sqrt(1 + 0.25 + 0.0625), rel=1e-6)
    distance = fit_radius(mesh, fovy=60.0, margin=1.0)
    assert distance == pytest.approx(radius / math.sin(math.radians(30.0)), rel=1e-6)
    cameras = view_cameras("sphere", 5, mesh, fovy=60.0, resolution=16)
    torch.testing.assert_close((cameras.campos - centre).norm(dim=-1), torch.full((5,), fit_radius(mesh, 60.0)))


def test_camera_list_reads_nerf_transforms(tmp_path):
    c2w = look_at(torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0]]), torch.zeros(3))
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps({"camera_angle_x": 0.8, "w": 40, "h": 20, "frames": [
        {"transform_matrix": m.tolist()} for m in c2w
    ]}))  # fmt: skip
    cameras = load_camera_list(path)
    assert cameras.resolution == (20, 40)
    torch.testing.assert_close(cameras.c2w, c2w)
    # Horizontal angle 0.8 rad on a 2:1 image: tan(fovy / 2) = tan(0.4) / 2.
    torch.testing.assert_close(cameras.proj[:, 1, 1].abs(), torch.full((2,), 2.0 / math.tan(0.4)))
    path.write_text(json.dumps({"fovy": 45.0, "frames": [{"transform_matrix": c2w[0].tolist()}]}))
    assert load_camera_list(path, resolution=32).resolution == (32, 32)
    assert view_cameras(str(path), 99, _box()).batch_size == 1


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{", "unreadable camera list"),
        ('{"frames": []}', "no frames"),
        ('{"fovy": 40, "frames": [{"matrix": 1}]}', "transform_matrix"),
        ('{"frames": [{"transform_matrix": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}', "camera_angle_x"),
    ],
)
def test_bad_camera_lists_are_one_line(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem) as info:
        load_camera_list(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="camera list not found"):
        load_camera_list(tmp_path / "missing.json")


def test_unknown_distribution_is_rejected():
    with pytest.raises(ValueError, match="unknown distribution"):
        sample_cameras(4, "cube")
