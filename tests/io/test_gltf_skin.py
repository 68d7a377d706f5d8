"""glTF skins and animations: round trip, file structure (pygltflib), the Khronos validator, sampling, bad rigs."""

import json
import math
import struct

import numpy as np
import pytest
import torch
from node_tools import validate_glb

from dmtrec.core.mesh import Mesh
from dmtrec.io.gltf import GltfReadError, read_glb, write_glb
from dmtrec.io.gltf_skin import (
    Animation,
    Channel,
    Skin,
    has_skin,
    quaternion_to_matrix,
    read_skinned_glb,
    sample_animation,
    sample_channel,
)

pygltflib = pytest.importorskip("pygltflib")


def _tube(around: int = 8, rings: int = 7, length: float = 2.0) -> Mesh:
    """An open tube along +Y with per-corner UVs (a seam where u wraps)."""
    k = torch.arange(around)
    y = torch.linspace(0, length, rings)
    ang = 2 * math.pi * k / around
    pos = torch.stack(
        [
            0.3 * torch.cos(ang)[None].expand(rings, -1),
            y[:, None].expand(-1, around),
            0.3 * torch.sin(ang)[None].expand(rings, -1),
        ],
        -1,
    ).reshape(-1, 3)
    i, j = torch.meshgrid(torch.arange(rings - 1), k, indexing="ij")
    a, b, c, d = (
        i * around + j,
        i * around + (j + 1) % around,
        (i + 1) * around + (j + 1) % around,
        (i + 1) * around + j,
    )
    faces = torch.cat([torch.stack([a, c, b], -1), torch.stack([a, d, c], -1)]).reshape(-1, 3)
    uv_grid = torch.stack(
        torch.meshgrid(torch.arange(rings) / (rings - 1), torch.arange(around + 1) / around, indexing="ij"), -1
    )
    uv = uv_grid[..., [1, 0]].reshape(-1, 2)
    ta, tb = i * (around + 1) + j, i * (around + 1) + j + 1
    tc, td = (i + 1) * (around + 1) + j + 1, (i + 1) * (around + 1) + j
    t_tex = torch.cat([torch.stack([ta, tc, tb], -1), torch.stack([ta, td, tc], -1)]).reshape(-1, 3)
    return Mesh(pos.float(), faces, v_tex=uv.float(), t_tex_idx=t_tex)


def _skin(mesh: Mesh, root: torch.Tensor = None) -> Skin:
    """Three joints up the tube (the last one's rest pose given as a rotation), weights from
    hat functions of the height: 1 to 2 non-zero influences per vertex, slots 3-4 unused."""
    heights = torch.tensor([0.0, 0.8, 1.6])
    translation = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.8, 0.0], [0.0, 0.8, 0.0]])
    half = math.sqrt(0.5)
    rotation = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, half, 0.0, half]])
    world = torch.eye(4).repeat(3, 1, 1)
    world[:, 1, 3] = heights
    world[2, :3, :3] = quaternion_to_matrix(rotation[2])
    hat = (1 - (mesh.v_pos[:, 1:2] - heights[None]).abs() / 0.8).clamp_min(0)
    hat = hat / hat.sum(1, keepdim=True)
    weights, joints = hat.sort(1, descending=True)
    weights = torch.cat([weights, torch.zeros(len(weights), 1)], 1)
    joints = torch.cat([joints, torch.zeros(len(joints), 1, dtype=torch.long)], 1)
    joints = torch.where(weights > 0, joints, 0)  # glTF's form: unused slots are joint 0
    return Skin(
        names=["base", "mid", "tip"],
        parents=[-1, 0, 1],
        translation=translation,
        rotation=rotation,
        scale=torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 2.0, 1.0]]),
        inverse_bind=torch.linalg.inv(world),
        joints=joints,
        weights=weights,
        root=torch.eye(4) if root is None else root,
    )


def _animations() -> list:
    times = torch.tensor([0.0, 0.5, 1.0])
    s = math.sin(math.pi / 8)
    bend = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, s, math.cos(math.pi / 8)], [0.0, 0.0, 0.0, 1.0]])
    cubic = torch.tensor(
        [[0.0, 0.0, 0.0], [0.0, 0.8, 0.0], [0.1, 0.0, 0.0]] + [[0.0, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, 0.0]] * 2
    )
    return [
        Animation(
            "bend",
            [
                Channel(1, "rotation", "LINEAR", times, bend),
                Channel(2, "scale", "STEP", times, torch.ones(3, 3) * torch.tensor([1.0, 1.5, 2.0])[:, None]),
            ],
        ),
        Animation("stretch", [Channel(1, "translation", "CUBICSPLINE", times[:2], cubic[:6])]),
    ]


def _assert_skins_equal(a: Skin, b: Skin) -> None:
    assert a.names == b.names and a.parents == b.parents
    for name in ("translation", "rotation", "scale", "inverse_bind", "joints", "root"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=2e-7)


@pytest.mark.parametrize("armature", [False, True], ids=["roots_in_scene", "armature_node"])
def test_round_trip(tmp_path, armature):
    mesh = _tube()
    root = torch.tensor([[1.0, 0, 0, 0.5], [0, 0, -1, 0], [0, 1, 0, 0.25], [0, 0, 0, 1]]) if armature else None
    skin, animations = _skin(mesh, root), _animations()
    path = write_glb(tmp_path / "skinned.glb", mesh, {"kd": torch.rand(4, 4, 3)}, skin=skin, animations=animations)
    assert has_skin(path)
    back, textures, back_skin, back_anims = read_skinned_glb(path)
    assert torch.equal(back.v_pos, mesh.v_pos) and torch.equal(back.t_pos_idx, mesh.t_pos_idx)
    _assert_skins_equal(skin, back_skin)
    assert [a.name for a in back_anims] == ["bend", "stretch"]
    for got, want in zip(back_anims, animations):
        for c, d in zip(got.channels, want.channels):
            assert (c.joint, c.path, c.interpolation) == (d.joint, d.path, d.interpolation)
            assert torch.equal(c.times, d.times) and torch.equal(c.values, d.values)
    # The static reader sees the same bind-pose mesh (a skinned node's transform is ignored).
    assert torch.equal(read_glb(path)[0].v_pos, mesh.v_pos)


def test_file_structure_with_pygltflib(tmp_path):
    mesh = _tube()
    skin = _skin(mesh)
    path = write_glb(tmp_path / "skinned.glb", mesh, skin=skin, animations=_animations())
    gltf = pygltflib.GLTF2().load(str(path))
    (gskin,) = gltf.skins
    assert [gltf.nodes[j].name for j in gskin.joints] == ["base", "mid", "tip"]
    mesh_node = next(n for n in gltf.nodes if n.mesh is not None)
    assert mesh_node.skin == 0 and mesh_node.matrix is None
    # Hierarchy by children lists; the root joint is a scene root beside the mesh node.
    assert gltf.nodes[gskin.joints[0]].children == [gskin.joints[1]]
    assert gskin.joints[0] in gltf.scenes[0].nodes
    attrs = gltf.meshes[0].primitives[0].attributes
    joints_acc, weights_acc = gltf.accessors[attrs.JOINTS_0], gltf.accessors[attrs.WEIGHTS_0]
    assert (joints_acc.componentType, joints_acc.type) == (5121, "VEC4")  # unsigned byte
    assert (weights_acc.componentType, weights_acc.type) == (5126, "VEC4")
    ibm = gltf.accessors[gskin.inverseBindMatrices]
    assert (ibm.type, ibm.count) == ("MAT4", 3)
    # Column-major in the file: the translation of the mid joint's IBM is at elements 12-14.
    blob = gltf.binary_blob()
    view = gltf.bufferViews[ibm.bufferView]
    raw = np.frombuffer(blob[view.byteOffset : view.byteOffset + view.byteLength], dtype="<f4").reshape(3, 16)
    assert np.allclose(raw[1, 12:15], [0.0, -0.8, 0.0])
    assert [s.interpolation for a in gltf.animations for s in a.samplers] == ["LINEAR", "STEP", "CUBICSPLINE"]
    times = gltf.accessors[gltf.animations[0].samplers[0].input]
    assert (times.min, times.max) == ([0.0], [1.0])  # glTF requires bounds on sampler inputs


def test_validator_reports_nothing(tmp_path):
    mesh = _tube()
    root = torch.tensor([[1.0, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    path = write_glb(
        tmp_path / "skinned.glb", mesh, {"kd": torch.rand(4, 4, 3)}, skin=_skin(mesh, root), animations=_animations()
    )
    issues = validate_glb(path)["issues"]
    messages = [(m["code"], m["severity"], m.get("pointer")) for m in issues["messages"] if m["severity"] <= 1]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, messages


def test_unused_slots_are_joint_zero_weight_zero(tmp_path):
    mesh = _tube()
    skin = _skin(mesh)
    skin.joints[:, 3] = 2  # a joint listed with zero weight: written as joint 0
    _, _, back, _ = read_skinned_glb(write_glb(tmp_path / "s.glb", mesh, skin=skin))
    assert bool((back.joints[back.weights == 0] == 0).all())
    assert torch.allclose(back.weights.double().sum(1), torch.ones(mesh.num_vertices, dtype=torch.float64), atol=1e-6)


def test_sampling_interpolations():
    times = torch.tensor([0.0, 1.0])
    linear = Channel(0, "translation", "LINEAR", times, torch.tensor([[0.0, 0, 0], [2.0, 4, 6]]))
    assert torch.allclose(sample_channel(linear, 0.25), torch.tensor([0.5, 1.0, 1.5]))
    assert torch.equal(sample_channel(linear, -1.0), torch.zeros(3))  # clamped before the first key
    step = Channel(0, "translation", "STEP", times, linear.values)
    assert torch.equal(sample_channel(step, 0.99), torch.zeros(3))
    # Slerp halfway between identity and 90 degrees about Z is 45 degrees about Z.
    quarter = torch.tensor([[0.0, 0, 0, 1], [0, 0, math.sqrt(0.5), math.sqrt(0.5)]])
    half = sample_channel(Channel(0, "rotation", "LINEAR", times, quarter), 0.5)
    assert torch.allclose(half, torch.tensor([0, 0, math.sin(math.pi / 8), math.cos(math.pi / 8)]), atol=1e-6)
    # Slerp at a third is 30 degrees, where a normalised lerp would give about 33.7.
    third = sample_channel(Channel(0, "rotation", "LINEAR", times, quarter), 1 / 3)
    assert abs(2 * math.degrees(math.atan2(float(third[2]), float(third[3]))) - 30.0) < 1e-4
    # Hermite with zero tangents is smoothstep 3s^2 - 2s^3; with a unit out-tangent at key 0 and
    # key spacing 2, the h10 term adds 2 (s^3 - 2s^2 + s).
    values = torch.tensor([[0.0], [0.0], [1.0], [0.0], [1.0], [0.0]]).repeat(1, 3)
    cubic = Channel(0, "scale", "CUBICSPLINE", torch.tensor([0.0, 2.0]), values)
    s = 0.3
    expected = 3 * s**2 - 2 * s**3 + 2 * (s**3 - 2 * s**2 + s)
    assert torch.allclose(sample_channel(cubic, 0.6), torch.full((3,), expected), atol=1e-6)


def test_sample_animation_keeps_rest_pose_elsewhere():
    skin = _skin(_tube())
    t, r, s = sample_animation(skin, _animations()[0], 0.5)
    assert torch.equal(t, skin.translation) and torch.equal(r[[0, 2]], skin.rotation[[0, 2]])
    assert torch.allclose(r[1], torch.tensor([0.0, 0.0, math.sin(math.pi / 8), math.cos(math.pi / 8)]))
    assert torch.equal(s[2], torch.tensor([1.5, 1.5, 1.5]))


# ----------------------------------------------------------------------------- bad rigs


def _rewrite(path, edit):
    """Apply ``edit(doc, blob) -> blob`` to a GLB's JSON (in place) and binary chunk, repacked."""
    data = path.read_bytes()
    jlen = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + jlen])
    blen = struct.unpack_from("<I", data, 20 + jlen)[0]
    blob = bytearray(data[28 + jlen : 28 + jlen + blen])
    blob = edit(doc, blob)
    blob += b"\0" * (-len(blob) % 4)
    doc["buffers"][0]["byteLength"] = len(blob)
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    total = 28 + len(text) + len(blob)
    path.write_bytes(
        struct.pack("<IIIII", 0x46546C67, 2, total, len(text), 0x4E4F534A)
        + text
        + struct.pack("<II", len(blob), 0x004E4942)
        + bytes(blob)
    )


def _append_accessor(doc, blob, array, kind):
    offset = len(blob) + (-len(blob) % 4)
    blob = blob + b"\0" * (offset - len(blob)) + array.astype("<f4").tobytes()
    doc["bufferViews"].append({"buffer": 0, "byteOffset": offset, "byteLength": array.nbytes})
    doc["accessors"].append(
        {"bufferView": len(doc["bufferViews"]) - 1, "componentType": 5126, "count": len(array), "type": kind}
    )
    return blob, len(doc["accessors"]) - 1


@pytest.fixture
def skinned_file(tmp_path):
    mesh = _tube()
    return write_glb(tmp_path / "rig.glb", mesh, skin=_skin(mesh)), mesh.num_vertices


def test_more_than_four_influences_is_one_line(skinned_file):
    path, _ = skinned_file

    def edit(doc, blob):
        attrs = doc["meshes"][0]["primitives"][0]["attributes"]
        attrs["JOINTS_1"], attrs["WEIGHTS_1"] = attrs["JOINTS_0"], attrs["WEIGHTS_0"]
        return blob

    _rewrite(path, edit)
    with pytest.raises(
        GltfReadError, match=rf"^{path}: more than 4 joint influences per vertex \(WEIGHTS_1 is used\)"
    ) as err:
        read_skinned_glb(path)
    assert "\n" not in str(err.value)


def test_missing_inverse_bind_matrices_is_one_line(skinned_file):
    path, _ = skinned_file
    _rewrite(path, lambda doc, blob: (doc["skins"][0].pop("inverseBindMatrices"), blob)[1])
    with pytest.raises(GltfReadError, match=rf"^{path}: skin 0 has no inverse bind matrices$"):
        read_skinned_glb(path)


def test_weights_off_one_are_refused_and_slightly_off_renormalised(skinned_file):
    path, count = skinned_file
    original = read_skinned_glb(path)[2].weights

    def scaled(factor):
        def edit(doc, blob):
            attrs = doc["meshes"][0]["primitives"][0]["attributes"]
            view = doc["bufferViews"][doc["accessors"][attrs["WEIGHTS_0"]]["bufferView"]]
            raw = np.frombuffer(bytes(blob[view["byteOffset"] : view["byteOffset"] + view["byteLength"]]), "<f4")
            weights = raw.reshape(-1, 4) * factor
            blob, index = _append_accessor(doc, blob, weights, "VEC4")
            doc["meshes"][0]["primitives"][0]["attributes"]["WEIGHTS_0"] = index
            return blob

        return edit

    _rewrite(path, scaled(1.004))  # within the tolerance (8-bit weights' rounding): renormalised
    torch.testing.assert_close(read_skinned_glb(path)[2].weights, original, rtol=0, atol=1e-6)
    _rewrite(path, scaled(0.9 / 1.004))  # of the file's current (scaled) weights
    with pytest.raises(
        GltfReadError, match=rf"^{path}: skin weights of {count} vertices do not sum to 1 \(e\.g\. 0\.9000"
    ):
        read_skinned_glb(path)


def test_static_glb_has_no_skin(tmp_path):
    path = write_glb(tmp_path / "static.glb", _tube())
    assert not has_skin(path)
    assert read_skinned_glb(path)[2:] == (None, [])


def test_skinned_lod_chain_validates_and_reads_back(tmp_path):
    from dmtrec.io.gltf_lod import write_lod_glb

    fine, coarse = _tube(8, 7), _tube(6, 4)
    skins = [_skin(fine), _skin(coarse)]
    path = write_lod_glb(
        tmp_path / "lods.glb",
        [(fine, {"kd": torch.rand(4, 4, 3)}), (coarse, {"kd": torch.rand(4, 4, 3)})],
        screen_coverage=[0.5, 0.0],
        skins=skins,
        animations=_animations(),
    )
    issues = validate_glb(path)["issues"]
    messages = [(m["code"], m["severity"], m.get("pointer")) for m in issues["messages"] if m["severity"] <= 1]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, messages
    gltf = pygltflib.GLTF2().load(str(path))
    # Both levels skinned by the one skeleton: two skins over the same joint nodes.
    assert [n.skin for n in gltf.nodes[:2]] == [0, 1] and gltf.skins[0].joints == gltf.skins[1].joints
    assert gltf.nodes[0].extensions["MSFT_lod"]["ids"] == [1]
    mesh, _, skin, animations = read_skinned_glb(path)  # viewers without MSFT_lod: level 0
    assert torch.equal(mesh.v_pos, fine.v_pos)
    _assert_skins_equal(skins[0], skin)
    assert [a.name for a in animations] == ["bend", "stretch"]
    with pytest.raises(ValueError, match="2 levels but 1 skins"):
        write_lod_glb(tmp_path / "x.glb", [(fine, None), (coarse, None)], [0.5, 0.0], skins=skins[:1])
