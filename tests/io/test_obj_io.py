import numpy as np
import pytest
import torch
from PIL import Image

from dmtrec.geometry import Mesh
from dmtrec.io.image import linear_to_srgb, read_image
from dmtrec.io.mesh_files import read_mesh
from dmtrec.io.obj import ObjReadError, read_obj, write_obj


def random_mesh(seed=0, uv=True, normals=True) -> Mesh:
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(30, 3, generator=gen) * torch.tensor([1e-6, 1.0, 1e5])  # awkward magnitudes
    f = torch.randint(0, 30, (50, 3), generator=gen)
    mesh = Mesh(v, f)
    if uv:
        mesh.v_tex, mesh.t_tex_idx = torch.rand(40, 2, generator=gen), torch.randint(0, 40, (50, 3), generator=gen)
    if normals:
        n = torch.randn(20, 3, generator=gen)
        mesh.v_nrm, mesh.t_nrm_idx = n / n.norm(dim=1, keepdim=True), torch.randint(0, 20, (50, 3), generator=gen)
    return mesh


def random_textures(seed=0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    n = torch.randn(6, 5, 3, generator=gen)
    return {
        "kd": torch.rand(8, 7, 4, generator=gen),
        "ks": torch.rand(4, 4, 3, generator=gen),
        "normal": n / n.norm(dim=-1, keepdim=True),
    }


@pytest.mark.parametrize("uv,normals", [(True, True), (True, False), (False, True), (False, False)])
def test_round_trip_is_exact(tmp_path, uv, normals):
    mesh = random_mesh(uv=uv, normals=normals)
    path = write_obj(tmp_path, mesh)
    back, textures = read_obj(path)
    assert torch.equal(back.v_pos, mesh.v_pos) and torch.equal(back.t_pos_idx, mesh.t_pos_idx)
    for values, index in (("v_tex", "t_tex_idx"), ("v_nrm", "t_nrm_idx")):
        if getattr(mesh, values) is None:
            assert getattr(back, values) is None
        else:
            assert torch.equal(getattr(back, values), getattr(mesh, values))
            assert torch.equal(getattr(back, index), getattr(mesh, index))
    assert set(textures) == {"kd", "ks"}  # the default material's constants


def test_textures_round_trip_with_their_file_encodings(tmp_path):
    mesh, textures = random_mesh(), random_textures()
    write_obj(tmp_path, mesh, textures, name="thing")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "thing.mtl",
        "thing.obj",
        "thing_kd.png",
        "thing_ks.png",
        "thing_metallic.png",
        "thing_normal.png",
        "thing_roughness.png",
    ]
    # kd is sRGB on disk, ks linear, normal n * 0.5 + 0.5.
    assert (
        np.abs(read_image(tmp_path / "thing_kd.png")[..., :3] - linear_to_srgb(textures["kd"][..., :3]).numpy()).max()
        <= 0.5 / 255 + 1e-6
    )
    assert np.abs(read_image(tmp_path / "thing_ks.png") - textures["ks"].numpy()).max() <= 0.5 / 255 + 1e-6
    _, back = read_obj(tmp_path / "thing.obj")
    assert set(back) == {"kd", "ks", "normal"}
    kd_srgb = linear_to_srgb(back["kd"][..., :3]) - linear_to_srgb(textures["kd"][..., :3])
    assert kd_srgb.abs().max() <= 0.5 / 255 + 1e-5
    assert torch.abs(back["kd"][..., 3] - textures["kd"][..., 3]).max() <= 0.5 / 255 + 1e-6
    assert torch.abs(back["ks"] - textures["ks"]).max() <= 0.5 / 255 + 1e-6
    assert torch.abs(back["normal"] - textures["normal"]).max() <= 1 / 255 + 1e-6


def test_writing_is_atomic_and_checks_before_writing(tmp_path):
    mesh = random_mesh()
    write_obj(tmp_path, mesh, random_textures())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or "tmp" in p.name]
    bad = random_textures()
    bad["ks"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="texture 'ks' holds non-finite"):
        write_obj(tmp_path / "other", mesh, bad)
    assert not (tmp_path / "other").exists()
    with pytest.raises(ValueError, match="no UVs"):
        write_obj(tmp_path / "other", random_mesh(uv=False), random_textures())
    with pytest.raises(ValueError, match="unknown texture key 'albedo'"):
        write_obj(tmp_path / "other", mesh, {"albedo": torch.zeros(2, 2, 3)})
    with pytest.raises(ValueError, match="write_obj: t_pos_idx holds indices outside"):
        write_obj(tmp_path / "other", mesh.copy(t_pos_idx=mesh.t_pos_idx + 100))


def test_empty_mesh_writes_and_reads(tmp_path):
    path = write_obj(tmp_path, Mesh.empty().copy(v_pos=torch.zeros(1, 3)))
    back, _ = read_obj(path)
    assert back.num_faces == 0 and back.t_pos_idx.shape == (0, 3)


def test_spot_and_bob(shared_data):
    spot, tex = read_obj(shared_data / "meshes" / "spot" / "spot.obj")
    assert (spot.num_vertices, spot.num_faces) == (2930, 5856) and spot.v_tex is not None
    assert tex["kd"].shape == (1024, 1024, 3) and 0 <= tex["kd"].min() and tex["kd"].max() <= 1
    assert torch.allclose(tex["ks"].reshape(3), torch.tensor([0.0, 0.25, 0.0]))  # "Ks 0.00 0.25 0.00"
    bob, tex = read_mesh(shared_data / "meshes" / "bob" / "bob_tri.obj")
    assert bob.num_faces == 10688 and tex["kd"].shape[-1] == 3
    bob.validate()


def test_polygons_negative_indices_comments_and_options(tmp_path):
    (tmp_path / "m.mtl").write_text("newmtl a\nKd 1 0 0\nmap_Kd -bm 1.0 tex ture.png # comment\n")
    from dmtrec.io.image import write_png

    write_png(tmp_path / "tex ture.png", np.full((2, 2, 3), 0.5, np.float32))
    (tmp_path / "m.obj").write_text(
        "# quad and pentagon\nmtllib m.mtl\no thing\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0 1.0\nv 0.5 2 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvt 0.5 1 0\nusemtl a\ns off\n"
        "f 1/1 2/2 3/3 4/4\nf -5/-5 -4/-4 -3/-3 -1/-1 -2/-2\n"
    )
    mesh, tex = read_obj(tmp_path / "m.obj")
    assert mesh.num_faces == 2 + 3
    assert torch.equal(mesh.t_pos_idx[:2], torch.tensor([[0, 1, 2], [0, 2, 3]]))
    assert torch.equal(mesh.t_pos_idx[2:], torch.tensor([[0, 1, 2], [0, 2, 4], [0, 4, 3]]))
    assert torch.equal(mesh.t_tex_idx, mesh.t_pos_idx)
    assert tex["kd"].shape == (2, 2, 3)  # the map wins over the constant


@pytest.mark.parametrize(
    "content,message",
    [
        ("v 0 0\n", r"m.obj:1: malformed 'v' line"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", r"m.obj:4: malformed 'f' line \(v index 4 out of range"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1\nf 1 2 3\n", r"m.obj:6: .*mix"),
        ("v a b c\n", r"m.obj:1: malformed 'v'"),
        ("vn 0 0 1\n", r"no vertices"),
        ("mtllib missing.mtl\nv 0 0 0\n", r"m.obj:1: cannot read material library"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, content, message):
    (tmp_path / "m.obj").write_text(content)
    with pytest.raises(ObjReadError, match=message):
        read_obj(tmp_path / "m.obj")


def test_missing_texture_names_the_mtl_line(tmp_path):
    (tmp_path / "m.mtl").write_text("newmtl a\n\nmap_Kd nowhere.png\n")
    (tmp_path / "m.obj").write_text("mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ObjReadError, match=r"m.mtl:3: .*nowhere.png"):
        read_obj(tmp_path / "m.obj")
    with pytest.raises(ObjReadError, match="cannot read OBJ"):
        read_obj(tmp_path / "absent.obj")
    with pytest.raises(ValueError, match="unsupported mesh file type"):
        read_mesh(tmp_path / "m.stl")


def test_mtl_pbr_extension_lines_are_read_back_by_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh, textures = random_mesh(), random_textures()
    write_obj(tmp_path, mesh, textures, name="thing")
    loaded = trimesh.load(tmp_path / "thing.obj", process=False)
    material = loaded.visual.material
    # trimesh keeps the PBR extension keys it does not map as raw values, lower-cased.
    pbr = material.kwargs
    assert pbr["map_pr"] == ["thing_roughness.png"] and pbr["map_pm"] == ["thing_metallic.png"]
    assert pbr["norm"] == ["thing_normal.png"]
    ks = textures["ks"].double().numpy()
    assert float(pbr["pr"][0]) == pytest.approx(ks[..., 1].mean(), abs=1e-5)
    assert float(pbr["pm"][0]) == pytest.approx(ks[..., 2].mean(), abs=1e-5)
    assert material.image is not None and material.image.size == tuple(textures["kd"].shape[1::-1])
    # The maps hold ks's roughness (G) and metallic (B) alone, linear, 8-bit.
    for name, channel in (("thing_roughness.png", 1), ("thing_metallic.png", 2)):
        image = np.asarray(Image.open(tmp_path / name), dtype=np.float64) / 255
        assert image.ndim == 2 and np.abs(image - ks[..., channel]).max() <= 0.5 / 255 + 1e-6
    # The classic lines stay, and dmtrec reads its own file back unchanged.
    mtl = (tmp_path / "thing.mtl").read_text()
    assert "map_Kd thing_kd.png" in mtl and "map_Ks thing_ks.png" in mtl and "bump thing_normal.png" in mtl
    assert set(read_obj(tmp_path / "thing.obj")[1]) == {"kd", "ks", "normal"}
