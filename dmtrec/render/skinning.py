"""Linear blend skinning in torch, differentiable in the vertices, the weights and the pose.

A pose is every joint's local transform (relative to its parent joint): a translation, a
rotation (``xyzw`` quaternions ``[..., J, 4]``, axis-angle vectors ``[..., J, 3]`` or matrices
``[..., J, 3, 3]``) and a scale, by default the skin's rest pose. Forward kinematics composes
them down the hierarchy (:func:`forward_kinematics`); a joint's skinning matrix is its world
matrix times its inverse bind matrix, and a vertex moves to the weighted sum of its (up to 4)
joints' skinning matrices applied to its bind position (:func:`skin_vertices`), which is what
glTF viewers compute.

Weights to be optimised stay on the simplex with the 4 joints of each vertex fixed: they are the
softmax of 4 logits per vertex (:func:`simplex_weights`, :func:`weight_logits`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dmtrec.io.gltf_skin import Skin, quaternion_to_matrix, topological_order


def axis_angle_to_matrix(v: Tensor) -> Tensor:
    """``[..., 3, 3]`` rotations of ``[..., 3]`` axis-angle vectors (Rodrigues; smooth at 0)."""
    theta2 = (v * v).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    theta = theta2.clamp_min(1e-24).sqrt()
    small = theta2 < 1e-8
    # sin(t)/t and (1 - cos t)/t^2 by their Taylor series near 0, where the quotients lose precision.
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-24))
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*v.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def rotation_matrices(rotation: Tensor) -> Tensor:
    """``[..., 3, 3]`` from quaternions ``[..., 4]`` (xyzw), axis-angle ``[..., 3]`` or matrices ``[..., 3, 3]``."""
    if rotation.shape[-2:] == (3, 3):
        return rotation
    if rotation.shape[-1] == 4:
        return quaternion_to_matrix(rotation)
    if rotation.shape[-1] == 3:
        return axis_angle_to_matrix(rotation)
    raise ValueError(f"rotation_matrices: expected [..., 4], [..., 3] or [..., 3, 3], got {tuple(rotation.shape)}")


def trs_matrices(translation: Tensor, rotation: Tensor, scale: Tensor) -> Tensor:
    """``[..., 4, 4]`` matrices ``T @ R @ S`` (glTF's order) of ``[..., 3]``, a rotation (any form), ``[..., 3]``."""
    r = rotation_matrices(rotation)
    translation, scale = torch.broadcast_tensors(translation, scale)
    batch = torch.broadcast_shapes(r.shape[:-2], translation.shape[:-1])
    upper = torch.cat(
        [r.expand(*batch, 3, 3) * scale.expand(*batch, 3)[..., None, :], translation.expand(*batch, 3)[..., None]], -1
    )
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=upper.dtype, device=upper.device).expand(*batch, 1, 4)
    return torch.cat([upper, bottom], -2)


def forward_kinematics(parents, local: Tensor, root: Optional[Tensor] = None) -> Tensor:
    """World matrices ``[..., J, 4, 4]`` of local ones ``[..., J, 4, 4]`` down the hierarchy ``parents``
    (``[J]``, -1 for roots); ``root`` ``[4, 4]`` places the roots (default identity)."""
    world: list = [None] * len(parents)
    for j in topological_order(parents):
        p = int(parents[j])
        if p >= 0:
            world[j] = world[p] @ local[..., j, :, :]
        else:
            world[j] = local[..., j, :, :] if root is None else root.to(local) @ local[..., j, :, :]
    return torch.stack(world, -3)


def skinning_matrices(
    skin: Skin,
    rotation: Optional[Tensor] = None,
    translation: Optional[Tensor] = None,
    scale: Optional[Tensor] = None,
) -> Tensor:
    """``[..., J, 4, 4]`` world @ inverse-bind matrices of a pose; parts not given are the rest pose's.

    Args:
        rotation: local rotations ``[..., J, 4]`` (xyzw), ``[..., J, 3]`` (axis-angle) or ``[..., J, 3, 3]``.
        translation, scale: local ``[..., J, 3]``.
    """
    rotation = skin.rotation if rotation is None else rotation
    translation = skin.translation if translation is None else translation
    scale = skin.scale if scale is None else scale
    local = trs_matrices(translation, rotation, scale)
    world = forward_kinematics(skin.parents, local, skin.root)
    return world @ skin.inverse_bind.to(world)


def skin_vertices(v_pos: Tensor, joints: Tensor, weights: Tensor, matrices: Tensor) -> Tensor:
    """Linear blend skinning: ``[..., V, 3]`` posed positions.

    Args:
        v_pos: ``[V, 3]`` bind-pose positions.
        joints: ``[V, K]`` int64 joint indices; weights: ``[V, K]`` (rows summing to 1).
        matrices: ``[..., J, 4, 4]`` skinning matrices (:func:`skinning_matrices`).
    """
    blended = (matrices[..., joints, :, :] * weights[..., None, None]).sum(-3)  # [..., V, 4, 4]
    return (blended[..., :3, :3] @ v_pos[..., None])[..., 0] + blended[..., :3, 3]


def simplex_weights(logits: Tensor) -> Tensor:
    """``[V, K]`` weights on the simplex: the softmax of ``[V, K]`` logits."""
    return torch.softmax(logits, -1)


def weight_logits(weights: Tensor, floor: float = 1e-4) -> Tensor:
    """Logits whose softmax is ``weights`` ``[V, K]``, an unused slot (weight 0) held at ``floor`` of the row."""
    return weights.clamp_min(floor).log()
