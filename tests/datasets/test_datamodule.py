import pytest
import torch
import yaml

from dmtrec.datasets.datamodule import ReconDataModule
from dmtrec.datasets.errors import DatasetError


def batches(loader):
    return [batch for batch in loader]


def test_batches_follow_the_contract(make_nerf):
    folder, _ = make_nerf(splits={"train": 5, "val": 2, "test": 3})
    dm = ReconDataModule(nerf_synthetic={"path": str(folder), "downscale": 2}, batch_size=2, shared={"seed": 1})
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"c2w", "proj", "img", "background", "index", "resolution"}
    assert batch["c2w"].shape == (2, 4, 4) and batch["proj"].shape == (2, 4, 4)
    assert batch["img"].shape == (2, 4, 4, 4) and batch["background"].shape == (2, 4, 4, 3)
    assert batch["index"].shape == (2,) and batch["index"].dtype == torch.int64
    assert batch["resolution"] == (4, 4) and all(type(v) is int for v in batch["resolution"])
    for key in ("c2w", "proj", "img", "background"):
        assert batch[key].dtype == torch.float32
    # per-pixel noise for training (nvdiffrec's), white for validation by default
    assert not torch.equal(batch["background"], torch.ones_like(batch["background"]))
    val = batches(dm.val_dataloader())
    assert len(val) == 2 and torch.equal(val[0]["background"], torch.ones(1, 4, 4, 3))
    assert [int(b["index"]) for b in batches(dm.test_dataloader())] == [0, 1, 2]


def test_same_seed_same_batches_and_workers_do_not_change_them(make_nerf):
    folder, _ = make_nerf(splits={"train": 4, "test": 1})

    def run(seed, workers):
        dm = ReconDataModule(
            nerf_synthetic={"path": str(folder)},
            batch_size=2,
            views=8,
            shared={"seed": seed, "num_workers": workers},
        )
        dm.setup("fit")
        return batches(dm.train_dataloader())

    first, again, in_worker, other = run(5, 0), run(5, 0), run(5, 1), run(6, 0)
    for a, b, c in zip(first, again, in_worker):
        for key in ("c2w", "img", "background", "index"):
            assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])
    assert not all(torch.equal(a["background"], d["background"]) for a, d in zip(first, other))
    # 8 samples per epoch from 4 frames: each frame twice
    assert sorted(int(i) for b in first for i in b["index"]) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_setup_checks_every_split_before_training(make_nerf):
    folder, _ = make_nerf(splits={"train": 2, "val": 1, "test": 1})
    (folder / "test" / "r_0.png").write_bytes(b"garbage")
    dm = ReconDataModule(nerf_synthetic={"path": str(folder)})
    with pytest.raises(DatasetError, match="test/r_0.png: not a readable image"):
        dm.setup("fit")
    with pytest.raises(RuntimeError, match="setup"):
        ReconDataModule(nerf_synthetic={"path": str(folder)}).train_dataloader()


NERF = {"kind": "nerf_synthetic", "nerf_synthetic": {"path": "x"}}
MESH = {"mesh": "m.obj", "probe": "p.hdr"}


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({}, "nerf_synthetic.path"),
        ({"kind": "reference_mesh", "reference_mesh": {"probe": "p.hdr"}}, "reference_mesh.mesh"),
        ({"kind": "reference_mesh", "reference_mesh": {"mesh": "m.obj"}}, "reference_mesh.probe"),
        ({"kind": "reference_mesh", "reference_mesh": {**MESH, "downscale": 2}}, "reference_mesh.downscale"),
        ({"kind": "reference_mesh", "reference_mesh": MESH, "nerd": {"path": "x"}}, "nerd"),
        ({"kind": "photos", "nerf_synthetic": {"path": "x"}}, "kind"),
        ({**NERF, "shared": {"background_train": "pink"}}, "background_train"),
        ({**NERF, "shared": {"background_val": "pink"}}, "background_val"),
        ({**NERF, "shared": {"colour": "pink"}}, "shared.colour"),
        ({**NERF, "batch_size": 0}, "batch_size"),
        ({**NERF, "views": 0}, "views"),
        ({**NERF, "shared": {"num_workers": -1}}, "num_workers"),
        ({**NERF, "shared": {"seed": -1}}, "seed"),
        ({**NERF, "shared": {"near": 2.0, "far": 1.0}}, "near"),
        ({**NERF, "resolution": (0, 4)}, "resolution"),
        # The flat form of earlier releases, upgraded: its checks name the flat option.
        ({"kind": "reference_mesh", "mesh": "m.obj", "probe": "p.hdr", "downscale": 2}, "downscale"),
        ({"path": "x", "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError) as info:
        ReconDataModule(**kwargs)
    assert str(info.value).startswith(f"{argument}: ") or str(info.value).startswith(f"{argument}, ")


def test_configurable_from_yaml_like_lightning_cli(make_nerf):
    from jsonargparse import ArgumentParser

    folder, _ = make_nerf(splits={"train": 2, "test": 2})
    config = {
        "data": {
            "nerf_synthetic": {"path": str(folder)},
            "resolution": [4, 4],
            "test_views": 1,
            "shared": {"background_val": "black", "seed": 3},
        }
    }
    parser = ArgumentParser()
    parser.add_class_arguments(ReconDataModule, "data")
    parsed = parser.parse_string(yaml.safe_dump(config))
    dm = ReconDataModule(**parsed.data.as_dict())
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["resolution"] == (4, 4) and len(dm.test_dataset) == 1
    assert torch.equal(batch["background"], torch.zeros(1, 4, 4, 3))
    assert dm.hparams.seed == 3


def test_training_backgrounds_are_fresh_per_pixel_noise_every_draw(make_nerf):
    """nvdiffrec composites every training iteration over new per-pixel noise; a view drawn again
    in a later epoch gets a new background, and the same seed draws the same ones."""
    folder, _ = make_nerf(splits={"train": 3, "val": 1, "test": 1})

    def epochs(seed, count):
        dm = ReconDataModule(nerf_synthetic={"path": str(folder)}, batch_size=3, shared={"seed": seed})
        dm.setup("fit")
        loader = dm.train_dataloader()
        out = []
        for epoch in range(count):
            loader.sampler.set_epoch(epoch)  # what Lightning's fit loop does before each epoch
            (b,) = batches(loader)
            order = b["index"].argsort()
            out.append({k: b[k][order] for k in ("index", "img", "background")})
        return out

    first, second = epochs(1, 2)
    background = first["background"]
    # per pixel: neighbouring pixels differ, values spread over [0, 1)
    assert not torch.equal(background[:, 0, 0], background[:, 0, 1]) and background.std() > 0.2
    assert torch.equal(first["img"], second["img"])  # same views ...
    assert not torch.equal(first["background"], second["background"])  # ... new backgrounds
    again = epochs(1, 2)
    assert all(torch.equal(a["background"], b["background"]) for a, b in zip([first, second], again))
    # a resumed run (set_epoch(1) first) draws what the uninterrupted one drew in epoch 1
    dm = ReconDataModule(nerf_synthetic={"path": str(folder)}, batch_size=3, shared={"seed": 1})
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    (resumed,) = batches(loader)
    order = resumed["index"].argsort()
    assert torch.equal(resumed["background"][order], second["background"])
