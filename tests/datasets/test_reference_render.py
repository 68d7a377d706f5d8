"""Reference-mesh renders of Spot under the shared probe, and every bad mesh/probe input."""

import functools

import pytest
import torch

from dmtrec.datasets.errors import DatasetError
from dmtrec.datasets.reference_mesh import ReferenceMeshViews, ReferenceRender, load_reference_scene
from dmtrec.render.render_mesh import render_mesh

PROBE = "envmaps/mud_road_puresky_1k.hdr"


@functools.lru_cache(maxsize=None)
def load_spot(shared):
    # a 32^2 cube map keeps the light's prefiltering to a fraction of a second on a CPU
    return load_reference_scene(
        shared / "meshes/spot/spot.obj", shared / PROBE, ReferenceRender(probe_res=32, device="cpu", rasterizer="torch")
    )


@pytest.fixture
def spot(shared_data):
    return load_spot(shared_data)


def test_renders_are_straight_alpha_that_composite_like_the_renderer(spot):
    views = ReferenceMeshViews(spot, "val", views=4, resolution=(24, 24))
    img = views.render([0, 2])
    alpha = img[..., 3]
    assert img.shape == (2, 24, 24, 4) and torch.isfinite(img).all()
    assert (alpha[:, 12, 12] == 1).all() and (alpha[:, 0, 0] == 0).all()  # object in the middle, corners empty
    assert torch.equal(img[..., :3][alpha == 0], torch.zeros_like(img[..., :3][alpha == 0]))
    assert img[..., :3].min() >= 0 and img[..., :3][alpha > 0].mean() > 0.05  # lit, not black
    # Compositing the straight-alpha render over a constant colour must give what the
    # renderer draws over it, silhouette (antialiased) pixels included.
    cameras = views.cameras([0, 2])
    for colour in ([1.0, 1.0, 1.0], [0.2, 0.5, 0.9]):
        background = torch.tensor(colour).expand(2, 24, 24, 3)
        with torch.no_grad():
            drawn = render_mesh(spot.mesh, spot.material, spot.light, cameras, spot.rasterizer, background=background)[
                "shaded"
            ]
        assert torch.allclose(torch.lerp(background, img[..., :3], img[..., 3:]), drawn[..., :3], atol=1e-5)
        assert torch.equal(alpha, drawn[..., 3])
    assert ((alpha > 0) & (alpha < 1)).any()  # there are silhouette pixels to check


def test_supersampling_keeps_the_picture(spot):
    plain = ReferenceMeshViews(spot, "val", views=4, resolution=(16, 16)).render([1])
    fine = ReferenceMeshViews(spot, "val", views=4, resolution=(16, 16), render=ReferenceRender(spp=2)).render([1])
    assert fine.shape == plain.shape
    assert (fine[..., 3] - plain[..., 3]).abs().mean() < 0.05
    assert ((fine[..., 3] > 0) & (fine[..., 3] < 1)).sum() >= ((plain[..., 3] > 0) & (plain[..., 3] < 1)).sum()


def write_obj(path, text, mtl=None):
    path.write_text(text)
    if mtl is not None:
        path.with_suffix(".mtl").write_text(mtl)
    return path


TRIANGLE = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"


def expect_error(path, *words, mesh=None, probe=None):
    with pytest.raises(DatasetError) as info:
        load_reference_scene(mesh, probe, ReferenceRender(probe_res=32, rasterizer="torch"))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for word in words:
        assert word in message, message


def test_bad_meshes_and_probes(tmp_path, shared_data):
    probe = shared_data / PROBE
    expect_error(tmp_path / "none.obj", "not found", mesh=tmp_path / "none.obj", probe=probe)

    garbage = write_obj(tmp_path / "garbage.obj", "v 0 0 0\nv 1 zero 0\n")
    expect_error(f"{garbage}:2", "malformed", mesh=garbage, probe=probe)

    no_faces = write_obj(tmp_path / "points.obj", "v 0 0 0\nv 1 0 0\n")
    expect_error(no_faces, "no triangles", mesh=no_faces, probe=probe)

    untextured = write_obj(tmp_path / "plain.obj", TRIANGLE + "f 1/1 2/2 3/3\n")
    expect_error(untextured, "no diffuse", mesh=untextured, probe=probe)

    missing_texture = write_obj(
        tmp_path / "tex.obj",
        "mtllib tex.mtl\nusemtl m\n" + TRIANGLE + "f 1/1 2/2 3/3\n",
        mtl="newmtl m\nmap_Kd missing.png\n",
    )
    expect_error(tmp_path, "missing.png", mesh=missing_texture, probe=probe)

    broken_texture = write_obj(
        tmp_path / "broken.obj",
        "mtllib broken.mtl\nusemtl m\n" + TRIANGLE + "f 1/1 2/2 3/3\n",
        mtl="newmtl m\nmap_Kd broken.png\n",
    )
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    # the OBJ reader names the MTL line and the texture file
    expect_error(tmp_path, "broken.png", "not a readable image", mesh=broken_texture, probe=probe)

    constant = write_obj(
        tmp_path / "constant.obj",
        "mtllib constant.mtl\nusemtl m\n" + TRIANGLE + "f 1/1 2/2 3/3\n",
        mtl="newmtl m\nKd 0.5 0.5 0.5\n",
    )
    expect_error(tmp_path / "nope.hdr", "probe file not found", mesh=constant, probe=tmp_path / "nope.hdr")
    (tmp_path / "bad.hdr").write_bytes(b"P6 not an hdr")
    expect_error(tmp_path / "bad.hdr", "Radiance", mesh=constant, probe=tmp_path / "bad.hdr")
    (tmp_path / "short.hdr").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 8 +X 8\n" + bytes(10))
    expect_error(tmp_path / "short.hdr", "truncated", mesh=constant, probe=tmp_path / "short.hdr")
    # and a good constant-colour mesh with a good probe loads
    scene = load_reference_scene(constant, probe, ReferenceRender(probe_res=32, rasterizer="torch"))
    assert scene.mesh.num_faces == 1 and scene.probe_path == probe


def test_datamodule_renders_the_same_batches_in_worker_processes(shared_data):
    from dmtrec.datasets.datamodule import ReconDataModule

    def first_batches(workers):
        dm = ReconDataModule(
            kind="reference_mesh",
            mesh=str(shared_data / "meshes/spot/spot.obj"),
            probe=str(shared_data / PROBE),
            probe_res=32,
            resolution=(16, 16),
            views=4,
            batch_size=2,
            seed=9,
            num_workers=workers,
            render_device="cpu",
            render_rasterizer="torch",
        )
        dm.setup("fit")
        return dm, list(dm.train_dataloader())

    dm, main = first_batches(0)
    _, workers = first_batches(1)
    assert dm.reference_mesh.num_faces == 5856
    for a, b in zip(main, workers):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["c2w"], b["c2w"])
        assert torch.allclose(a["img"], b["img"], atol=1e-6) and torch.equal(a["background"], b["background"])
    assert sum(float(batch["img"][..., 3].sum()) for batch in main) > 0


@pytest.mark.gpu
def test_reference_views_render_on_cuda_as_on_the_cpu(shared_data):
    from dmtrec.datasets.datamodule import ReconDataModule

    cuda = load_reference_scene(
        shared_data / "meshes/spot/spot.obj",
        shared_data / PROBE,
        ReferenceRender(probe_res=32, device="cuda", rasterizer="nvdiffrast"),
    )
    on_gpu = ReferenceMeshViews(cuda, "val", views=4, resolution=(32, 32)).render([0, 1])
    on_cpu = ReferenceMeshViews(load_spot(shared_data), "val", views=4, resolution=(32, 32)).render([0, 1])
    assert on_gpu.device.type == "cuda"
    # same cameras, same mesh: the backends agree up to float rounding at a few edge pixels
    assert (on_gpu.cpu() - on_cpu).abs().mean() < 1e-2
    assert (on_gpu[..., 3].cpu() == on_cpu[..., 3]).float().mean() > 0.98

    dm = ReconDataModule(
        kind="reference_mesh",
        mesh=str(shared_data / "meshes/spot/spot.obj"),
        probe=str(shared_data / PROBE),
        probe_res=32,
        resolution=(32, 32),
        views=4,
        batch_size=2,
        render_device="cuda",
        render_rasterizer="nvdiffrast",
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert all(batch[key].device.type == "cuda" for key in ("c2w", "proj", "img", "background", "index"))
    assert batch["img"].shape == (2, 32, 32, 4) and batch["img"][..., 3].sum() > 0
