"""ReferenceMeshViews' sampling logic, with a stand-in scene (the real renderer is tested in
test_reference_render.py)."""

import math

import pytest
import torch

from dmtrec.datasets.reference_mesh import ReferenceMeshViews, ReferenceRender
from dmtrec.datasets.samples import collate_views
from dmtrec.render.camera import perspective


class CameraPositionScene:
    """Renders every pixel with the camera position (so tests can tell views apart) and counts calls."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls = 0

    def render(self, cameras, spp=1):
        self.calls += 1
        height, width = cameras.resolution
        rgb = cameras.campos[:, None, None, :].expand(-1, height, width, 3)
        return torch.cat([rgb, torch.ones(cameras.batch_size, height, width, 1)], -1)


def views(split="train", **kwargs):
    kwargs.setdefault("views", 6)
    kwargs.setdefault("resolution", (4, 6))
    return ReferenceMeshViews(CameraPositionScene(), split, **kwargs)


def test_samples_follow_the_contract_and_render_their_camera():
    ds = views(background="random", seed=2)
    sample = ds[3]
    assert sample["img"].shape == (4, 6, 4) and sample["background"].shape == (4, 6, 3)
    assert sample["resolution"] == (4, 6) and int(sample["index"]) == 3
    assert torch.allclose(sample["img"][0, 0, :3], sample["c2w"][:3, 3])
    assert torch.allclose(sample["proj"], perspective(math.radians(45.0), 6 / 4))
    batch = collate_views([ds[i] for i in range(3)])
    assert batch["img"].shape == (3, 4, 6, 4) and batch["index"].tolist() == [0, 1, 2]
    with pytest.raises(IndexError):
        ds[6]


def test_training_cameras_are_fresh_per_index_and_fixed_by_the_seed():
    a, again, other = views(seed=7), views(seed=7), views(seed=8)
    positions = torch.stack([a.c2w(i)[:3, 3] for i in range(6)])
    assert torch.cdist(positions, positions).add(torch.eye(6)).min() > 1e-3  # all different
    for i in range(6):
        assert torch.equal(a.c2w(i), again.c2w(i))
        assert not torch.equal(a.c2w(i), other.c2w(i))
    # the camera of an index does not depend on how many views the dataset has
    assert torch.equal(views(seed=7, views=100).c2w(5), a.c2w(5))
    distances = positions.norm(dim=-1)
    assert ((distances > 3.0 - 0.44) & (distances < 3.0 + 0.44)).all()  # radius 3, jitter 0.25 * sqrt(3)


def test_validation_views_orbit_and_are_rendered_once():
    val = views("val", views=4, render=ReferenceRender(cam_radius=2.0))
    for i in range(4):
        campos = val.c2w(i)[:3, 3]
        assert abs(campos.norm().item() - 2.0) < 1e-5
        assert abs(campos[1].item() - 2.0 * math.sin(0.4)) < 1e-5
    first = [val[i]["img"] for i in range(4)]
    again = [val[i]["img"] for i in range(4)]
    assert val.scene.calls == 4  # cached after the first render
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    test = views("test", views=4, render=ReferenceRender(cam_radius=2.0))
    assert not torch.allclose(test.c2w(0), val.c2w(0))

    train = views()
    train[0], train[0]
    assert train.scene.calls == 2  # training views are not kept (there may be millions)


def test_prerender_renders_in_batches_once():
    ds = views(views=10)
    ds.prerender(chunk=4)
    assert ds.scene.calls == 3
    lazy = views(views=10)
    for i in range(10):
        assert torch.equal(ds[i]["img"], lazy[i]["img"])
    assert ds.scene.calls == 3 and lazy.scene.calls == 10
    assert [i for i, _ in ds.renders(chunk=4)] == list(range(10))


def test_a_batch_renders_in_one_call_and_matches_single_samples():
    from torch.utils.data import DataLoader

    ds = views(views=6, background="random")
    batches = list(DataLoader(ds, batch_size=3, collate_fn=collate_views))
    assert ds.scene.calls == 2
    single = views(views=6, background="random")
    for i in range(6):
        sample = single[i]
        for key in ("c2w", "proj", "img", "background", "index"):
            assert torch.equal(batches[i // 3][key][i % 3], sample[key])
    twice = ds.__getitems__([2, 2])
    assert ds.scene.calls == 3 and torch.equal(twice[0]["img"], twice[1]["img"])  # one render for both


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"views": 0}, "views"),
        ({"background": "grey"}, "background"),
        ({"resolution": (0, 3)}, "resolution"),
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument}: "):
        views(**kwargs)


@pytest.mark.parametrize("kwargs", [{"fovy": 180.0}, {"cam_radius": 0.0}, {"spp": 0}])
def test_bad_render_settings(kwargs):
    with pytest.raises(ValueError, match=f"^{next(iter(kwargs))}: "):
        ReferenceRender(**kwargs)


def test_datamodule_wires_reference_views(monkeypatch):
    from dmtrec.datasets import datamodule

    scene = CameraPositionScene()
    scene.mesh = "the reference mesh"
    loaded = {}

    def fake_load(mesh, probe, render):
        loaded.update(
            mesh=mesh,
            probe=probe,
            env_scale=render.env_scale,
            probe_res=render.probe_res,
            device=render.render_device,
            rasterizer=render.rasterizer,
        )
        return scene

    monkeypatch.setattr(datamodule, "load_reference_scene", fake_load)
    dm = datamodule.ReconDataModule(
        kind="reference_mesh",
        mesh="m.obj",
        probe="p.hdr",
        env_scale=2.0,
        resolution=(4, 4),
        views=10,
        test_views=3,
        batch_size=5,
        render_device="cpu",
        render_rasterizer="torch",
        prerender=True,
    )
    assert dm.reference_mesh is None  # not before setup
    dm.setup("fit")
    assert scene.calls == 2 + 1 + 1  # every split rendered in batches of 8 at setup (10, 8, 3 views)
    assert loaded == {
        "mesh": "m.obj",
        "probe": "p.hdr",
        "env_scale": 2.0,
        "probe_res": 512,
        "device": "cpu",
        "rasterizer": "torch",
    }
    assert [len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)] == [10, 8, 3]
    assert dm.reference_mesh == "the reference mesh"
    batch = next(iter(dm.train_dataloader()))
    assert batch["img"].shape == (5, 4, 4, 4)
    assert not torch.equal(batch["background"], torch.ones_like(batch["background"]))
    assert torch.equal(next(iter(dm.val_dataloader()))["background"], torch.ones(1, 4, 4, 3))
    assert scene.calls == 4  # nothing rendered after setup

    on_cuda = datamodule.ReconDataModule(
        kind="reference_mesh", mesh="m.obj", probe="p.hdr", render_device="cuda", num_workers=2
    )
    with pytest.raises(ValueError, match="^num_workers: "):
        on_cuda.setup("fit")


def _small_reference_datamodule(monkeypatch, **extra):
    """A set-up reference-mesh datamodule over :class:`CameraPositionScene`: 6 x 8 views, training
    renders at 3 x 4, batches of 2; ``extra`` adds constructor arguments."""
    from dmtrec.datasets import datamodule

    monkeypatch.setattr(datamodule, "load_reference_scene", lambda *args, **kwargs: CameraPositionScene())
    dm = datamodule.ReconDataModule(
        kind="reference_mesh",
        mesh="m.obj",
        probe="p.hdr",
        resolution=(6, 8),
        train_resolution=(3, 4),
        views=4,
        test_views=2,
        batch_size=2,
        render_device="cpu",
        **extra,
    )
    dm.setup("fit")
    return dm


def test_train_resolution_applies_to_the_training_split_only(monkeypatch):
    from dmtrec.datasets import datamodule

    dm = _small_reference_datamodule(monkeypatch)
    assert next(iter(dm.train_dataloader()))["img"].shape == (2, 3, 4, 4)
    assert next(iter(dm.val_dataloader()))["img"].shape == (1, 6, 8, 4)
    assert next(iter(dm.test_dataloader()))["img"].shape == (1, 6, 8, 4)
    with pytest.raises(ValueError, match="^train_resolution: "):
        datamodule.ReconDataModule(kind="nerf_synthetic", path="x", train_resolution=(3, 4))


def test_train_resolution_mesh_serves_pass_two_only(monkeypatch):
    dm = _small_reference_datamodule(monkeypatch, train_resolution_mesh=(5, 7))
    loader = dm.train_dataloader()
    assert next(iter(loader))["img"].shape == (2, 3, 4, 4)
    dm.use_pass(2)
    batch = next(iter(loader))
    assert batch["img"].shape == (2, 5, 7, 4) and batch["background"].shape == (2, 5, 7, 3)
    # The renders are the pass-2 camera's: every pixel holds its camera position.
    assert torch.allclose(batch["img"][:, 2, 3, :3], batch["c2w"][:, :3, 3])
    assert next(iter(dm.val_dataloader()))["img"].shape == (1, 6, 8, 4)
    dm.use_pass(1)
    assert next(iter(loader))["img"].shape == (2, 3, 4, 4)


def test_train_resolution_mesh_is_a_no_op_unset_and_rejected_where_it_cannot_apply(monkeypatch):
    from dmtrec.datasets import datamodule

    monkeypatch.setattr(datamodule, "load_reference_scene", lambda *args, **kwargs: CameraPositionScene())
    dm = datamodule.ReconDataModule(
        kind="reference_mesh", mesh="m.obj", probe="p.hdr", resolution=(6, 8), views=2, render_device="cpu"
    )
    dm.setup("fit")
    dm.use_pass(2)
    assert next(iter(dm.train_dataloader()))["img"].shape == (1, 6, 8, 4)
    with pytest.raises(ValueError, match="^train_resolution_mesh: "):
        datamodule.ReconDataModule(kind="nerf_synthetic", path="x", train_resolution_mesh=(3, 4))
    with pytest.raises(ValueError, match="^train_resolution_mesh: "):
        datamodule.ReconDataModule(
            kind="reference_mesh", mesh="m.obj", probe="p.hdr", train_resolution_mesh=(3, 4), prerender=True
        )
