"""Procedural skinned test assets, written as GLB by dmtrec: a textured limb and a small figure.

Both are made of closed, edge-manifold tubes (rings of vertices between two pole vertices,
rounded at the ends, with bumps the decimation loses), each along a chain of bones: a vertex's
weights follow its position along the tube's axis, 1 on the bone whose span holds it, blended
with the neighbouring bone over ``blend`` around each joint (a smoothstep, at most 4
influences). UVs give each tube a rectangle of the atlas; kd, ks and normal maps are
:func:`dmtrec.assets.procedural.procedural_textures`. Everything follows from the arguments.

* :func:`skinned_limb`: a cylinder along +Y with 4 joints and a 2 s ``bend_twist`` animation
  (bends of up to 50 degrees per joint, a 40 degree twist in the middle);
* :func:`skinned_figure`: torso, head, two arms, two legs on 19 joints in a T-pose, with a 1 s
  ``walk`` cycle (legs and arms swing in opposition, knees and elbows bend, hips bob, spine twists).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from dmtrec.assets.procedural import procedural_textures
from dmtrec.core.mesh import Mesh
from dmtrec.core.types import PathLike
from dmtrec.io.gltf import write_glb
from dmtrec.io.gltf_skin import Animation, Channel, Skin, check_influences, matrix_to_quaternion


@dataclass
class Tube:
    """One body part: a rounded tube from ``start`` along ``direction`` (``length``), radius profile
    ``radius(s)`` for ``s`` in [0, length], over the bones ``(joint, s_start, s_end)``, mapped to
    the UV rectangle ``uv = (u0, v0, u1, v1)``."""

    start: Sequence[float]
    direction: Sequence[float]
    length: float
    radius: Callable[[np.ndarray], np.ndarray]
    bones: Sequence[tuple]
    uv: Sequence[float]
    around: int
    rings: int
    blend: float


def _frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    e1 = np.cross(direction, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(direction, e1)


def _tube_mesh(tube: Tube, bumps: float):
    """``(positions [N, 3], faces [F, 3], uvs [T, 2], uv faces [F, 3], s [N])`` of one closed tube."""
    d = np.asarray(tube.direction, dtype=np.float64)
    d /= np.linalg.norm(d)
    e1, e2 = _frame(d)
    n, m, length = tube.around, tube.rings, tube.length
    s = length * np.arange(1, m + 1) / (m + 1)
    theta = 2 * np.pi * np.arange(n) / n
    cap = min(float(tube.radius(np.array([0.0]))[0]), float(tube.radius(np.array([length]))[0]), length / 2)
    ends = np.clip(np.minimum(s, length - s) / cap, 0, 1)
    profile = tube.radius(s) * np.sqrt(1 - (1 - ends) ** 2)  # hemispherical ends
    bump = 1 + bumps * np.sin(theta[None] * 9) * np.sin(s[:, None] / length * 2 * np.pi * 7)
    r = profile[:, None] * bump
    ring = np.cos(theta)[None, :, None] * e1 + np.sin(theta)[None, :, None] * e2  # [1, n, 3]
    pos = np.asarray(tube.start)[None, None] + s[:, None, None] * d + r[..., None] * ring
    pos = np.concatenate([pos.reshape(-1, 3), [np.asarray(tube.start)], [np.asarray(tube.start) + length * d]])
    south, north = m * n, m * n + 1
    i, k = np.meshgrid(np.arange(m - 1), np.arange(n), indexing="ij")
    a, b, c, e = i * n + k, i * n + (k + 1) % n, (i + 1) * n + (k + 1) % n, (i + 1) * n + k
    kk = np.arange(n)
    faces = np.concatenate(
        [
            np.stack([a, b, c], -1).reshape(-1, 3),
            np.stack([a, c, e], -1).reshape(-1, 3),
            np.stack([np.full(n, south), (kk + 1) % n, kk], -1),
            np.stack([np.full(n, north), (m - 1) * n + kk, (m - 1) * n + (kk + 1) % n], -1),
        ]
    )
    # UVs: (n + 1) columns per ring (a seam where theta wraps), one pole corner per fan triangle.
    u0, v0, u1, v1 = tube.uv
    cols = n + 1
    uu = u0 + (u1 - u0) * np.arange(cols) / n
    vv = v0 + (v1 - v0) * s / length
    uvs = np.stack(np.meshgrid(vv, uu, indexing="ij")[::-1], -1).reshape(-1, 2)
    mid = u0 + (u1 - u0) * (kk + 0.5) / n
    uvs = np.concatenate([uvs, np.stack([mid, np.full(n, v0)], -1), np.stack([mid, np.full(n, v1)], -1)])
    ta, tb, tc, te = i * cols + k, i * cols + k + 1, (i + 1) * cols + k + 1, (i + 1) * cols + k
    t_tex = np.concatenate(
        [
            np.stack([ta, tb, tc], -1).reshape(-1, 3),
            np.stack([ta, tc, te], -1).reshape(-1, 3),
            np.stack([m * cols + kk, kk + 1, kk], -1),
            np.stack([m * cols + n + kk, (m - 1) * cols + kk, (m - 1) * cols + kk + 1], -1),
        ]
    )
    tri = pos[faces]
    if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() < 0:  # outward, counter-clockwise
        faces, t_tex = faces[:, [0, 2, 1]], t_tex[:, [0, 2, 1]]
    return pos, faces, uvs, t_tex, np.concatenate([s.repeat(n), [0.0, length]])


def _tube_weights(tube: Tube, s: np.ndarray, num_joints: int) -> np.ndarray:
    """``[N, J]`` dense weights along the tube's bones (module docstring)."""
    dense = np.zeros((s.shape[0], num_joints))
    for joint, s0, s1 in tube.bones:
        dist = np.maximum(np.maximum(s0 - s, s - s1), 0.0)
        x = np.clip(1 - dist / tube.blend, 0, 1)
        dense[:, joint] += x * x * (3 - 2 * x)
    return dense / dense.sum(1, keepdims=True)


def _assemble(tubes: Sequence[Tube], num_joints: int, bumps: float):
    pos, faces, uvs, t_tex, dense = [], [], [], [], []
    for tube in tubes:
        p, f, uv, tf, s = _tube_mesh(tube, bumps)
        faces.append(f + sum(len(x) for x in pos))
        t_tex.append(tf + sum(len(x) for x in uvs))
        pos.append(p)
        uvs.append(uv)
        dense.append(_tube_weights(tube, s, num_joints))
    dense = np.concatenate(dense)
    order = np.argsort(-dense, 1)[:, :4]
    weights = np.take_along_axis(dense, order, 1)
    weights /= weights.sum(1, keepdims=True)
    mesh = Mesh(
        torch.tensor(np.concatenate(pos), dtype=torch.float32),
        torch.tensor(np.concatenate(faces), dtype=torch.int64),
        v_tex=torch.tensor(np.concatenate(uvs), dtype=torch.float32),
        t_tex_idx=torch.tensor(np.concatenate(t_tex), dtype=torch.int64),
    )
    joints, weights = check_influences(
        torch.from_numpy(order), torch.from_numpy(weights).float(), num_joints, "procedural"
    )
    return mesh, joints, weights


def _rest_skin(names, parents, positions: np.ndarray, joints, weights) -> Skin:
    """Joints at world ``positions`` with identity rest rotations; inverse bind = the inverse translations."""
    parents = list(parents)
    local = np.array([positions[j] - (positions[p] if p >= 0 else 0) for j, p in enumerate(parents)])
    ibm = np.tile(np.eye(4), (len(names), 1, 1))
    ibm[:, :3, 3] = -positions
    return Skin(
        names=list(names),
        parents=parents,
        translation=torch.tensor(local, dtype=torch.float32),
        rotation=torch.tensor([[0.0, 0.0, 0.0, 1.0]] * len(names)),
        scale=torch.ones(len(names), 3),
        inverse_bind=torch.tensor(ibm, dtype=torch.float32),
        joints=joints,
        weights=weights,
    )


def _quaternion(*rotations: tuple) -> list:
    """xyzw quaternion of the product of axis-angle rotations ``(axis, degrees)``, first applied last."""
    m = np.eye(3)
    for axis, degrees in rotations:
        axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        a = math.radians(degrees)
        m = m @ (np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k)
    return matrix_to_quaternion(m).tolist()


def _channel(joint: int, times: np.ndarray, values: list, path: str = "rotation") -> Channel:
    return Channel(
        joint, path, "LINEAR", torch.tensor(times, dtype=torch.float32), torch.tensor(values, dtype=torch.float32)
    )


# ----------------------------------------------------------------------------- the limb

LIMB_JOINTS = ["limb_root", "limb_1", "limb_2", "limb_3"]


def skinned_limb(around: int = 96, rings: int = 160, radius: float = 0.25, bumps: float = 0.04):
    """``(mesh, skin, [bend_twist animation])``: a 2-unit cylinder along +Y on 4 joints 0.5 apart
    (``2 * around * rings`` triangles)."""
    heights = [0.0, 0.5, 1.0, 1.5]
    tube = Tube(
        start=(0.0, -0.1, 0.0),
        direction=(0.0, 1.0, 0.0),
        length=2.2,
        radius=lambda s: radius * (1.0 - 0.15 * s / 2.2),
        bones=[(0, -1.0, 0.6), (1, 0.6, 1.1), (2, 1.1, 1.6), (3, 1.6, 3.0)],
        uv=(0.0, 0.0, 1.0, 1.0),
        around=around,
        rings=rings,
        blend=0.2,
    )
    mesh, joints, weights = _assemble([tube], 4, bumps)
    positions = np.array([[0.0, h, 0.0] for h in heights])
    skin = _rest_skin(LIMB_JOINTS, [-1, 0, 1, 2], positions, joints, weights)
    times = np.linspace(0.0, 2.0, 9)
    phase = 2 * np.pi * times / 2.0
    channels = [
        _channel(1, times, [_quaternion(((0, 0, 1), 50 * math.sin(p))) for p in phase]),
        _channel(2, times, [_quaternion(((0, 1, 0), 40 * math.sin(p)), ((0, 0, 1), 35 * math.sin(p))) for p in phase]),
        _channel(3, times, [_quaternion(((1, 0, 0), 45 * math.sin(2 * p))) for p in phase]),
    ]
    return mesh, skin, [Animation("bend_twist", channels)]


# ----------------------------------------------------------------------------- the figure

FIGURE_JOINTS = [
    "hips", "spine", "chest", "neck", "head",
    "l_shoulder", "l_upper_arm", "l_forearm", "l_hand",
    "r_shoulder", "r_upper_arm", "r_forearm", "r_hand",
    "l_thigh", "l_shin", "l_foot", "r_thigh", "r_shin", "r_foot",
]  # fmt: skip
FIGURE_PARENTS = [-1, 0, 1, 2, 3, 2, 5, 6, 7, 2, 9, 10, 11, 0, 13, 14, 0, 16, 17]


def _figure_joint_positions() -> np.ndarray:
    left = [[0.08, 1.5, 0.0], [0.2, 1.5, 0.0], [0.45, 1.5, 0.0], [0.68, 1.5, 0.0]]
    right = [[-x, y, z] for x, y, z in left]
    legs = [[0.1, 0.95, 0.0], [0.1, 0.52, 0.0], [0.1, 0.1, 0.0]]
    return np.array(
        [[0, 1.0, 0], [0, 1.15, 0], [0, 1.35, 0], [0, 1.55, 0], [0, 1.65, 0]]
        + left
        + right
        + legs
        + [[-x, y, z] for x, y, z in legs],
        dtype=np.float64,
    )


def skinned_figure(detail: int = 48, bumps: float = 0.03):
    """``(mesh, skin, [walk animation])``: a T-posed figure 1.87 units tall on 19 joints
    (``40 * detail**2`` triangles, in 6 closed parts)."""
    d = detail
    torso_bones = [(0, -1, 0.29), (1, 0.29, 0.49), (2, 0.49, 0.69), (3, 0.69, 2)]  # along the torso from y = 0.86
    tubes = [
        Tube((0, 0.86, 0), (0, 1, 0), 0.72, lambda s: 0.12 + 0.03 * np.sin(np.pi * s / 0.72), torso_bones,
             (0.0, 0.0, 0.3, 0.5), 2 * d, 2 * d, 0.08),
        Tube((0, 1.52, 0), (0, 1, 0), 0.35, lambda s: 0.05 + 0.06 * np.clip((s - 0.08) / 0.08, 0, 1),
             [(3, -1, 0.1), (4, 0.1, 2)], (0.3, 0.0, 0.6, 0.5), 2 * d, d, 0.06),  # neck and head
    ]  # fmt: skip
    for sign, base, u in ((1.0, 5, 0.6), (-1.0, 9, 0.8)):  # arms
        bones = [(base, -1, 0.14), (base + 1, 0.14, 0.39), (base + 2, 0.39, 0.62), (base + 3, 0.62, 2)]
        radius = lambda s: 0.05 - 0.015 * s / 0.74  # noqa: E731
        tubes.append(
            Tube((sign * 0.06, 1.5, 0), (sign, 0, 0), 0.74, radius, bones, (u, 0.0, u + 0.2, 0.5), d, 3 * d, 0.06)
        )
    for sign, base, u in ((1.0, 13, 0.0), (-1.0, 16, 0.5)):  # legs
        bones = [(base, -1, 0.48), (base + 1, 0.48, 0.9), (base + 2, 0.9, 2)]
        radius = lambda s: 0.075 - 0.03 * s  # noqa: E731
        tubes.append(Tube((sign * 0.1, 1.0, 0), (0, -1, 0), 1.0, radius, bones, (u, 0.5, u + 0.5, 1.0), d, 4 * d, 0.07))
    mesh, joints, weights = _assemble(tubes, len(FIGURE_JOINTS), bumps)
    skin = _rest_skin(FIGURE_JOINTS, FIGURE_PARENTS, _figure_joint_positions(), joints, weights)
    return mesh, skin, [walk_cycle()]


def walk_cycle(duration: float = 1.0, keys: int = 9) -> Animation:
    """The figure's walk: one stride per ``duration`` seconds sampled at ``keys`` times (LINEAR)."""
    times = np.linspace(0.0, duration, keys)
    phase = 2 * np.pi * times / duration
    x, y, z = (1, 0, 0), (0, 1, 0), (0, 0, 1)
    sin = np.sin
    channels = [
        _channel(0, times, [[0.0, 1.0 + 0.025 * math.cos(2 * p), 0.0] for p in phase], "translation"),
        _channel(1, times, [_quaternion((y, 10 * sin(p))) for p in phase]),
        _channel(4, times, [_quaternion((x, 8 * sin(2 * p))) for p in phase]),
    ]
    for base, sign, swing in ((5, 1, 1), (9, -1, -1)):
        # Arms down from the T-pose (about Z), swinging forward and back opposite the legs.
        channels.append(
            _channel(base + 1, times, [_quaternion((y, -sign * 25 * swing * sin(p)), (z, -sign * 70)) for p in phase])
        )
        channels.append(_channel(base + 2, times, [_quaternion((y, sign * (25 + 20 * swing * sin(p)))) for p in phase]))
    for base, swing in ((13, 1), (16, -1)):
        channels.append(_channel(base, times, [_quaternion((x, -30 * swing * sin(p))) for p in phase]))
        channels.append(
            _channel(base + 1, times, [_quaternion((x, 30 + 30 * swing * sin(p + math.pi / 2))) for p in phase])
        )
        channels.append(_channel(base + 2, times, [_quaternion((x, -15 * swing * sin(p))) for p in phase]))
    return Animation("walk", channels)


def write_skinned_asset(path: PathLike, kind: str = "limb", texture_res: int = 512, **shape) -> Path:
    """Write :func:`skinned_limb` (``kind="limb"``) or :func:`skinned_figure` (``"figure"``) with its
    textures and animation to the ``.glb`` file ``path``; ``shape`` goes to the builder."""
    mesh, skin, animations = procedural_skinned(kind, **shape)
    return write_glb(path, mesh, procedural_textures(texture_res), skin=skin, animations=animations)


def procedural_skinned(kind: str = "limb", **shape) -> tuple:
    """``(mesh, skin, animations)`` of an asset by name (``"limb"`` or ``"figure"``)."""
    builders = {"limb": skinned_limb, "figure": skinned_figure}
    if kind not in builders:
        raise ValueError(f"procedural_skinned: kind must be one of {sorted(builders)}, got {kind!r}")
    return builders[kind](**shape)
