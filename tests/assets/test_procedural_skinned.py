"""The procedural skinned assets: closed meshes, valid rigs, animations that move them, clean GLBs."""

import math

import pytest
import torch
from node_tools import validate_glb

from dmtrec.assets.procedural_skinned import FIGURE_JOINTS, skinned_figure, skinned_limb, write_skinned_asset
from dmtrec.io.gltf_skin import read_skinned_glb, sample_animation
from dmtrec.metrics.topology import mesh_topology
from dmtrec.render.skinning import skin_vertices, skinning_matrices


def _posed(skin, mesh, animation, time):
    t, r, s = sample_animation(skin, animation, time)
    return skin_vertices(mesh.v_pos, skin.joints, skin.weights, skinning_matrices(skin, r, t, s))


@pytest.mark.parametrize("kind", ["limb", "figure"])
def test_rig_is_closed_and_weights_are_on_the_simplex(kind):
    mesh, skin, (animation,) = skinned_limb(24, 40) if kind == "limb" else skinned_figure(8)
    topo = mesh_topology(mesh.v_pos, mesh.t_pos_idx)
    assert topo["edge_manifold"] and topo["boundary_edges"] == 0
    assert mesh.num_faces == (2 * 24 * 40 if kind == "limb" else 40 * 8**2)
    assert torch.allclose(skin.weights.double().sum(1), torch.ones(mesh.num_vertices, dtype=torch.float64), atol=1e-6)
    assert skin.weights.shape[1] == 4 and bool((skin.joints[skin.weights == 0] == 0).all())
    # Every joint moves some vertex, and the bind pose (the rest pose here) leaves the mesh in place.
    assert set(skin.joints[skin.weights > 0.5].tolist()) == set(range(skin.num_joints))
    rest = skin_vertices(mesh.v_pos, skin.joints, skin.weights, skinning_matrices(skin))
    assert torch.allclose(rest, mesh.v_pos, atol=1e-5)
    # Animated: a quarter-cycle in, the mesh has moved.
    moved = (_posed(skin, mesh, animation, animation.duration / 4) - mesh.v_pos).norm(dim=-1)
    assert float(moved.max()) > 0.3


def test_limb_bends_at_its_joints():
    mesh, skin, (animation,) = skinned_limb(24, 40)
    # The cycle starts at the rest pose.
    assert torch.allclose(_posed(skin, mesh, animation, 0.0), mesh.v_pos, atol=1e-5)
    # At a quarter of the cycle joint 1 (y = 0.5) turns 50 degrees about Z: the root bone's
    # vertices (below y = 0.3, where joint 1's blend starts) stay, the tip swings towards -x.
    posed = _posed(skin, mesh, animation, 0.5)
    low = mesh.v_pos[:, 1] < 0.28
    assert torch.allclose(posed[low], mesh.v_pos[low], atol=1e-5)
    tip = mesh.v_pos[:, 1].argmax()
    assert float(posed[tip, 0]) < -0.8
    # The tip follows joint 3 alone, rigidly: it stays 0.6 from joint 3's posed position.
    t, r, s = sample_animation(skin, animation, 0.5)
    m = skinning_matrices(skin, r, t, s)[3]
    joint3 = m[:3, :3] @ torch.tensor([0.0, 1.5, 0.0]) + m[:3, 3]
    assert abs(float((posed[tip] - joint3).norm()) - 0.6) < 1e-4


def test_figure_has_the_parts_and_a_cyclic_walk():
    mesh, skin, (walk,) = skinned_figure(8)
    assert skin.num_joints >= 15 and skin.names == FIGURE_JOINTS
    assert mesh_topology(mesh.v_pos, mesh.t_pos_idx)["components"] == 6  # torso, head, 2 arms, 2 legs
    assert walk.name == "walk" and math.isclose(walk.duration, 1.0)
    start, end = _posed(skin, mesh, walk, 0.0), _posed(skin, mesh, walk, 1.0)
    assert torch.allclose(start, end, atol=1e-5)
    # Left and right feet move in opposition a quarter-stride in.
    quarter = _posed(skin, mesh, walk, 0.25)
    feet = [skin.joints[:, 0] == FIGURE_JOINTS.index(name) for name in ("l_foot", "r_foot")]
    dz = [float((quarter[f] - mesh.v_pos[f])[:, 2].mean()) for f in feet]
    assert dz[0] * dz[1] < 0 and min(abs(d) for d in dz) > 0.1


@pytest.mark.parametrize("kind", ["limb", "figure"])
def test_written_glb_round_trips_and_validates(tmp_path, kind):
    shape = {"around": 16, "rings": 24} if kind == "limb" else {"detail": 6}
    path = write_skinned_asset(tmp_path / f"{kind}.glb", kind, texture_res=64, **shape)
    mesh, skin, animations = (skinned_limb if kind == "limb" else skinned_figure)(**shape)
    back, textures, back_skin, back_animations = read_skinned_glb(path)
    assert torch.equal(back.v_pos, mesh.v_pos) and set(textures) == {"kd", "ks", "normal"}
    assert torch.equal(back_skin.joints, skin.joints) and torch.allclose(back_skin.weights, skin.weights, atol=2e-7)
    assert [a.name for a in back_animations] == [a.name for a in animations]
    issues = validate_glb(path)["issues"]
    messages = [(m["code"], m.get("pointer")) for m in issues["messages"] if m["severity"] <= 1]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, messages
