import json
import struct

import numpy as np
import pytest
import torch

from dmtrec.geometry import Mesh, compute_normals, compute_tangents
from dmtrec.io.gltf import GltfReadError, read_glb, write_glb
from dmtrec.io.mesh_files import read_mesh

trimesh = pytest.importorskip("trimesh")
pygltflib = pytest.importorskip("pygltflib")


def uv_sphere_like() -> Mesh:
    """A closed mesh with a UV seam (UV indices differ from position indices)."""
    ico = trimesh.creation.icosphere(subdivisions=2)
    v = torch.tensor(ico.vertices, dtype=torch.float32)
    f = torch.tensor(ico.faces, dtype=torch.int64)
    # Per-corner UVs from the face's longitude: seams where faces disagree.
    corner = v[f]
    uv = torch.stack([torch.atan2(corner[..., 1], corner[..., 0]) / (2 * np.pi) + 0.5, corner[..., 2] * 0.5 + 0.5], -1)
    return Mesh(v, f, v_tex=uv.reshape(-1, 2), t_tex_idx=torch.arange(3 * len(f)).reshape(-1, 3))


def textures(seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = torch.randn(8, 8, 3, generator=gen) + torch.tensor([0, 0, 2.0])
    return {
        "kd": torch.rand(16, 8, 3, generator=gen),
        "ks": torch.rand(8, 16, 3, generator=gen),
        "normal": n / n.norm(dim=-1, keepdim=True),
    }


def test_round_trip(tmp_path):
    mesh, tex = uv_sphere_like(), textures()
    path = write_glb(tmp_path / "m.glb", mesh, tex)
    back, back_tex = read_glb(path)
    # Positions are welded back exactly; per-corner UVs survive the v flip to within float32.
    assert torch.equal(back.v_pos, mesh.v_pos) and torch.equal(back.t_pos_idx, mesh.t_pos_idx)
    assert torch.allclose(back.v_tex[back.t_tex_idx], mesh.v_tex[mesh.t_tex_idx], atol=1e-7)
    # Smooth normals were added (glTF would shade flat otherwise): outward on the sphere.
    n = back.v_nrm[back.t_nrm_idx]
    assert (torch.nn.functional.cosine_similarity(n, back.v_pos[back.t_pos_idx], dim=-1) > 0.95).all()
    assert torch.abs(back_tex["ks"] - tex["ks"]).max() <= 0.5 / 255 + 1e-6  # occlusion amount too
    assert torch.abs(back_tex["normal"] - tex["normal"]).max() <= 1 / 255 + 1e-6
    from dmtrec.io.image import linear_to_srgb

    assert torch.abs(linear_to_srgb(back_tex["kd"]) - linear_to_srgb(tex["kd"])).max() <= 0.5 / 255 + 1e-5
    assert read_mesh(path)[0].num_faces == mesh.num_faces
    # The normal map comes with the tangent frame it is meant for: MikkTSpace with the sign in w
    # (the same frame render_mesh computes from the mesh), per corner.
    expected = compute_tangents(compute_normals(mesh))
    assert back.v_tng.shape[1] == 4 and set(back.v_tng[:, 3].tolist()) <= {-1.0, 1.0}
    assert torch.allclose(back.v_tng[back.t_tng_idx], expected.v_tng[expected.t_tng_idx], atol=1e-6)


def test_mainstream_readers_see_geometry_and_pbr_material(tmp_path):
    mesh, tex = uv_sphere_like(), textures()
    path = write_glb(tmp_path / "m.glb", mesh, tex)
    scene = trimesh.load(path)
    (loaded,) = scene.geometry.values()
    assert len(loaded.faces) == mesh.num_faces
    assert np.allclose(loaded.area, trimesh.creation.icosphere(subdivisions=2).area, rtol=1e-6)
    material = loaded.visual.material
    assert isinstance(material, trimesh.visual.material.PBRMaterial)
    assert material.baseColorTexture.size == (8, 16)  # PIL size is (W, H)
    assert material.metallicRoughnessTexture is not None and material.normalTexture is not None

    gltf = pygltflib.GLTF2().load(str(path))
    assert gltf.asset.version == "2.0"
    pbr = gltf.materials[0].pbrMetallicRoughness
    # ORM packing: one image serves occlusion (R), roughness (G) and metallic (B); glTF's
    # occlusion is a visibility (1 = unoccluded), dmtrec's ks.R an amount: the file holds 1 - R.
    assert gltf.materials[0].occlusionTexture.index == pbr.metallicRoughnessTexture.index
    orm = np.asarray(material.metallicRoughnessTexture.convert("RGB"), dtype=np.float64) / 255
    assert np.abs(orm[..., 0] - (1 - tex["ks"][..., 0].double().numpy())).max() <= 0.5 / 255 + 1e-6
    assert np.abs(orm[..., 1:] - tex["ks"][..., 1:].double().numpy()).max() <= 0.5 / 255 + 1e-6
    position = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    assert np.allclose(position.min, mesh.v_pos.min(0).values.tolist()) and position.max is not None


def test_occlusion_can_be_left_unbound(tmp_path):
    path = write_glb(tmp_path / "m.glb", uv_sphere_like(), textures(), occlusion=False)
    gltf = pygltflib.GLTF2().load(str(path))
    assert gltf.materials[0].occlusionTexture is None
    _, back = read_glb(path)
    assert (back["ks"][..., 0] == 0).all()  # no occlusion map reads as unoccluded (amount 0)


def test_untextured_mesh_gets_a_plain_material(tmp_path):
    mesh = uv_sphere_like()
    back, tex = read_glb(write_glb(tmp_path / "m.glb", Mesh(mesh.v_pos, mesh.t_pos_idx)))
    assert back.v_tex is None and back.num_faces == mesh.num_faces
    assert torch.allclose(tex["kd"].reshape(3), torch.full((3,), 0.5))
    assert tex["ks"].reshape(3)[2] == 0  # not metallic


def test_reads_a_trimesh_export_with_a_node_transform(tmp_path):
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    scene = trimesh.Scene()
    transform = trimesh.transformations.rotation_matrix(0.3, [0, 1, 0])
    transform[:3, 3] = [5.0, 0.0, -1.0]
    scene.add_geometry(box, transform=transform)
    path = tmp_path / "box.glb"
    path.write_bytes(scene.export(file_type="glb"))
    mesh, _ = read_glb(path)
    expected = trimesh.transform_points(box.vertices, transform)
    assert mesh.num_faces == len(box.faces)
    got = mesh.v_pos.double().numpy()
    assert np.abs(np.sort(got, axis=0) - np.sort(expected, axis=0)).max() < 1e-5
    assert abs(trimesh.Trimesh(got, mesh.t_pos_idx.numpy()).volume - 6.0) < 1e-4


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(GltfReadError, match="missing.glb"):
        read_glb(tmp_path / "missing.glb")
    (tmp_path / "text.glb").write_bytes(b"hello world, not a glb file")
    with pytest.raises(GltfReadError, match="text.glb: not a binary glTF"):
        read_glb(tmp_path / "text.glb")
    good = write_glb(tmp_path / "good.glb", uv_sphere_like()).read_bytes()
    (tmp_path / "cut.glb").write_bytes(good[: len(good) // 2])
    with pytest.raises(GltfReadError, match="cut.glb: truncated"):
        read_glb(tmp_path / "cut.glb")
    doc = json.dumps(
        {
            "asset": {"version": "2.0"},
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "accessors": [{"componentType": 5126, "count": 3, "type": "VEC3", "sparse": {}}],
        }
    ).encode()
    doc += b" " * (-len(doc) % 4)
    (tmp_path / "sparse.glb").write_bytes(
        struct.pack("<III", 0x46546C67, 2, 20 + len(doc)) + struct.pack("<II", len(doc), 0x4E4F534A) + doc
    )
    with pytest.raises(GltfReadError, match="sparse accessors"):
        read_glb(tmp_path / "sparse.glb")
    with pytest.raises(ValueError, match="no faces"):
        write_glb(tmp_path / "empty.glb", Mesh.empty())
