"""Linear blend skinning: a 2-bone chain against closed-form positions, gradients against finite differences."""

import math

import pytest
import torch

from dmtrec.io.gltf_skin import Skin
from dmtrec.render.skinning import (
    axis_angle_to_matrix,
    forward_kinematics,
    simplex_weights,
    skin_vertices,
    skinning_matrices,
    trs_matrices,
    weight_logits,
)

QUARTER_Z = [0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)]  # 90 degrees about +Z, xyzw


def _chain(dtype=torch.float32) -> Skin:
    """Joint 0 at the origin, joint 1 one unit up +Y (its child); bind pose = rest pose."""
    bind = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    bind[1, 1, 3] = 1.0
    return Skin(
        names=["upper", "lower"],
        parents=[-1, 0],
        translation=torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype),
        rotation=torch.tensor([[0.0, 0.0, 0.0, 1.0]] * 2, dtype=dtype),
        scale=torch.ones(2, 3, dtype=dtype),
        inverse_bind=torch.linalg.inv(bind),
        joints=torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]]),
        weights=torch.tensor([[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0]], dtype=dtype),
    )


VERTICES = torch.tensor([[0.0, 1.5, 0.0], [0.0, 1.0, 0.0], [0.2, 1.0, 0.0]])


def test_two_bone_chain_closed_form():
    skin = _chain()
    rest = skin_vertices(VERTICES, skin.joints, skin.weights, skinning_matrices(skin))
    assert torch.allclose(rest, VERTICES, atol=1e-6)  # the bind pose leaves the mesh where it is
    # Both joints turned 90 degrees about Z (quaternions): the lower bone ends up pointing -Y.
    # Vertex 0 (lower bone, 0.5 along it): joint 1 at (-1, 0, 0), its bone turned 180 -> (-1, -0.5, 0).
    # Vertex 1 (on joint 1, split 50/50): both joints take it to (-1, 0, 0).
    # Vertex 2 (0.2 off joint 1, 50/50): joint 0 gives Rz90 (0.2, 1) = (-1, 0.2); joint 1 gives
    # (-1, 0) + Rz180 (0.2, 0) = (-1.2, 0); the blend is (-1.1, 0.1).
    posed = skin_vertices(VERTICES, skin.joints, skin.weights, skinning_matrices(skin, torch.tensor([QUARTER_Z] * 2)))
    assert torch.allclose(posed, torch.tensor([[-1.0, -0.5, 0.0], [-1.0, 0.0, 0.0], [-1.1, 0.1, 0.0]]), atol=1e-6)
    # The same pose as axis-angle vectors and as matrices.
    for rotation in (
        torch.tensor([[0.0, 0.0, math.pi / 2]] * 2),
        axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]] * 2)),
    ):
        again = skin_vertices(VERTICES, skin.joints, skin.weights, skinning_matrices(skin, rotation))
        assert torch.allclose(again, posed, atol=1e-6)


def test_batched_poses_and_root():
    skin = _chain()
    skin.root = torch.tensor([[1.0, 0, 0, 2.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    # The IBMs were of the unshifted bind pose: the root's shift moves every vertex by +2 in x.
    rotations = torch.stack([skin.rotation, torch.tensor([QUARTER_Z, [0.0, 0, 0, 1]])])  # [2, J, 4]
    posed = skin_vertices(VERTICES, skin.joints, skin.weights, skinning_matrices(skin, rotations))
    assert posed.shape == (2, 3, 3)
    assert torch.allclose(posed[0], VERTICES + torch.tensor([2.0, 0, 0]), atol=1e-6)
    # Joint 0 alone at 90 degrees rotates everything rigidly: (x, y) -> (-y, x).
    assert torch.allclose(posed[1], torch.stack([-VERTICES[:, 1] + 2, VERTICES[:, 0], VERTICES[:, 2]], -1), atol=1e-6)


def test_axis_angle_matches_rodrigues_and_is_smooth_at_zero():
    v = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    theta = float(v.norm())
    k = v / theta
    cross = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    expected = torch.eye(3, dtype=torch.float64) + math.sin(theta) * cross + (1 - math.cos(theta)) * cross @ cross
    assert torch.allclose(axis_angle_to_matrix(v), expected, atol=1e-12)
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (axis_angle_to_matrix(zero) * torch.arange(9.0, dtype=torch.float64).reshape(3, 3)).sum().backward()
    assert torch.isfinite(zero.grad).all()
    # d R / d v at 0 is the cross-product matrix: sum(R * M) has gradient (M21 - M12, M02 - M20, M10 - M01).
    assert torch.allclose(zero.grad, torch.tensor([7.0 - 5.0, 2.0 - 6.0, 3.0 - 1.0], dtype=torch.float64))


def test_fk_composes_parent_before_child_in_any_storage_order():
    local = trs_matrices(
        torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0, 0.5], [0.0, 0, 0]]), torch.ones(2, 3)
    )
    world = forward_kinematics([1, -1], local)  # joint 0 is the child of joint 1
    assert torch.allclose(world[0], local[1] @ local[0])
    assert torch.allclose(world[1], local[1])


def test_simplex_weights_round_trip():
    weights = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    back = simplex_weights(weight_logits(weights))
    assert torch.allclose(back.sum(1), torch.ones(2))
    assert torch.allclose(back, weights, atol=3e-4)  # unused slots held at the 1e-4 floor


@pytest.mark.parametrize("rotation_kind", ["quaternion", "axis_angle"])
def test_gradients_match_finite_differences(rotation_kind):
    skin = _chain(torch.float64)
    gen = torch.Generator().manual_seed(0)
    v_pos = (VERTICES.double() + 0.1 * torch.randn(3, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    logits = torch.randn(3, 4, generator=gen, dtype=torch.float64).requires_grad_()
    if rotation_kind == "quaternion":
        rotation = torch.randn(2, 2, 4, generator=gen, dtype=torch.float64).requires_grad_()
    else:
        rotation = torch.randn(2, 2, 3, generator=gen, dtype=torch.float64).requires_grad_()
    joints = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 0]])

    def posed(v, lg, rot):
        return skin_vertices(v, joints, simplex_weights(lg), skinning_matrices(skin, rot))

    assert torch.autograd.gradcheck(posed, (v_pos, logits, rotation), eps=1e-6, atol=1e-7)
