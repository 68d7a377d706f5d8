"""glTF skins and their animations, read and written alongside :mod:`dmtrec.io.gltf`'s meshes.

A :class:`Skin` is what linear blend skinning needs: the joints (glTF nodes listed by the
skin, in the skin's order, which ``JOINTS_0`` indexes), each joint's parent among them, its
rest-pose local transform (translation, rotation as an ``xyzw`` quaternion, scale: glTF's TRS),
the inverse bind matrices, and per position vertex up to 4 joint indices with their weights.
Non-joint nodes above the root joints (an "armature" node) fold into one constant matrix,
:attr:`Skin.root`. An :class:`Animation` holds glTF's TRS channels on joints with their
samplers (``LINEAR``, ``STEP``, ``CUBICSPLINE``); :func:`sample_animation` evaluates one at a
time (quaternions are slerped for ``LINEAR``, as glTF specifies).

Conventions. glTF matrices are column-major in the file; here they are the usual row-major
maths (``p' = M @ p``). Unused influence slots are joint 0 with weight 0 (the Khronos validator
warns on a joint listed with weight 0 anywhere else). glTF ignores the transform of a skinned
mesh's node, so does the reader (:func:`dmtrec.io.gltf.read_glb`).

Rigs the reader refuses, with one line naming the file (:class:`~dmtrec.io.gltf.GltfReadError`):
more than 4 influences (a ``JOINTS_1`` set with any non-zero weight), a skin without inverse bind
matrices, weights whose sum is off 1 by more than :data:`WEIGHT_SUM_TOLERANCE` (within it they
are renormalised: 8-bit weights cannot sum to 1 exactly), joints whose hierarchy passes through
a non-joint node, or primitives skinned by different skins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh
from dmtrec.core.types import PathLike

from .gltf import GltfReadError, _AccessorReader, _GlbBuilder, _mesh_instances, _node_matrix, _parse_glb, read_glb

log = logging.getLogger(__name__)

MAX_INFLUENCES = 4
WEIGHT_SUM_TOLERANCE = 0.01
"""Per-vertex weight sums within this of 1 are renormalised; further off, the file is refused."""
INTERPOLATIONS = ("LINEAR", "STEP", "CUBICSPLINE")
PATHS = {"translation": 3, "rotation": 4, "scale": 3}
_UBYTE, _USHORT, _FLOAT = 5121, 5123, 5126


@dataclass
class Skin:
    """A skeleton with its rest pose and the skin weights of one mesh's position vertices.

    Attributes:
        names: ``[J]`` joint names.
        parents: ``[J]`` index of each joint's parent joint, -1 for a root.
        translation, rotation, scale: ``[J, 3]``, ``[J, 4]`` (``xyzw``), ``[J, 3]`` rest-pose
            local transforms (relative to the parent joint, or to :attr:`root`).
        inverse_bind: ``[J, 4, 4]`` row-major inverse bind matrices (mesh space -> joint space).
        joints: ``[V, 4]`` int64 joint indices per position vertex (``mesh.v_pos``).
        weights: ``[V, 4]`` float32 weights, each row summing to 1 (0 in unused slots).
        root: ``[4, 4]`` world transform of the nodes above the root joints.
    """

    names: list
    parents: list
    translation: Tensor
    rotation: Tensor
    scale: Tensor
    inverse_bind: Tensor
    joints: Tensor
    weights: Tensor
    root: Tensor = field(default_factory=lambda: torch.eye(4))

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def order(self) -> list:
        """Joint indices with every parent before its children (forward kinematics' order)."""
        return topological_order(self.parents)

    def with_vertices(self, joints: Tensor, weights: Tensor) -> "Skin":
        """The same skeleton with another mesh's influences (``[V, 4]`` each)."""
        return Skin(
            self.names,
            self.parents,
            self.translation,
            self.rotation,
            self.scale,
            self.inverse_bind,
            joints,
            weights,
            self.root,
        )


@dataclass
class Channel:
    """One animated property of one joint.

    Attributes:
        joint: index into the skin's joints.
        path: ``"translation"``, ``"rotation"`` (``xyzw``) or ``"scale"``.
        interpolation: ``"LINEAR"``, ``"STEP"`` or ``"CUBICSPLINE"``.
        times: ``[K]`` increasing key times in seconds.
        values: ``[K, C]``, or ``[3K, C]`` for ``CUBICSPLINE`` (in-tangent, value, out-tangent per key).
    """

    joint: int
    path: str
    interpolation: str
    times: Tensor
    values: Tensor


@dataclass
class Animation:
    name: str
    channels: list

    @property
    def duration(self) -> float:
        return max((float(c.times[-1]) for c in self.channels), default=0.0)


def topological_order(parents: Sequence[int]) -> list:
    """Indices of a forest given by ``parents`` (-1 = root) with each parent before its children."""
    children: dict = {}
    for j, p in enumerate(parents):
        children.setdefault(int(p), []).append(j)
    out, stack = [], list(reversed(children.get(-1, [])))
    while stack:
        j = stack.pop()
        out.append(j)
        stack.extend(reversed(children.get(j, [])))
    if len(out) != len(parents):
        raise ValueError(f"joint hierarchy has a cycle or a parent out of range: {list(parents)}")
    return out


# ----------------------------------------------------------------------------- quaternions (xyzw)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """``[..., 3, 3]`` rotation matrices of ``[..., 4]`` quaternions ``xyzw`` (normalised first)."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z, w = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """``xyzw`` quaternion (w >= 0) of a ``[3, 3]`` rotation matrix (Shepperd's method)."""
    t = np.trace(m)
    if t > 0:
        s = 2.0 * np.sqrt(1.0 + t)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-300))
        q = [0.0] * 4
        q[i], q[j], q[k], q[3] = 0.25 * s, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s, (m[k, j] - m[j, k]) / s
    q = np.array(q)
    return q * (1.0 if q[3] >= 0 else -1.0) / np.linalg.norm(q)


def slerp(a: Tensor, b: Tensor, s: Tensor) -> Tensor:
    """Spherical interpolation of ``[..., 4]`` unit quaternions along the shorter arc at ``s`` ``[...]``."""
    dot = (a * b).sum(-1, keepdim=True)
    b = torch.where(dot < 0, -b, b)
    dot = dot.abs().clamp(max=1.0)
    s = s[..., None]
    theta = torch.acos(dot)
    sin = torch.sin(theta)
    near = sin < 1e-6  # nearly equal: lerp (and normalise) avoids 0 / 0
    wa = torch.where(near, 1 - s, torch.sin((1 - s) * theta) / sin.clamp_min(1e-12))
    wb = torch.where(near, s, torch.sin(s * theta) / sin.clamp_min(1e-12))
    out = wa * a + wb * b
    return out / out.norm(dim=-1, keepdim=True)


# ----------------------------------------------------------------------------- animation sampling


def sample_channel(channel: Channel, time: float) -> Tensor:
    """The channel's ``[C]`` value at ``time`` seconds (clamped to its key range)."""
    times, values = channel.times.double(), channel.values.double()
    k = times.shape[0]
    if channel.interpolation == "CUBICSPLINE":
        values = values.reshape(k, 3, -1)  # in-tangent, value, out-tangent
        points = values[:, 1]
    else:
        points = values
    if k == 1 or time <= float(times[0]):
        out = points[0]
    elif time >= float(times[-1]):
        out = points[-1]
    else:
        i = int(torch.searchsorted(times, torch.tensor([time], dtype=torch.float64), right=True)[0]) - 1
        span = float(times[i + 1] - times[i])
        s = (time - float(times[i])) / span
        if channel.interpolation == "STEP":
            out = points[i]
        elif channel.interpolation == "LINEAR":
            if channel.path == "rotation":
                out = slerp(points[i], points[i + 1], torch.tensor(s, dtype=torch.float64))
            else:
                out = (1 - s) * points[i] + s * points[i + 1]
        else:  # glTF's cubic Hermite spline, tangents scaled by the key spacing
            s2, s3 = s * s, s * s * s
            out = (
                (2 * s3 - 3 * s2 + 1) * points[i]
                + span * (s3 - 2 * s2 + s) * values[i, 2]
                + (-2 * s3 + 3 * s2) * points[i + 1]
                + span * (s3 - s2) * values[i + 1, 0]
            )
    if channel.path == "rotation":
        out = out / out.norm().clamp_min(1e-12)
    return out.float()


def sample_animation(skin: Skin, animation: Optional[Animation], time: float) -> tuple[Tensor, Tensor, Tensor]:
    """Local ``(translation [J, 3], rotation [J, 4] xyzw, scale [J, 3])`` of every joint at ``time``:
    the animation's channels where it has them, the rest pose elsewhere."""
    trs = {"translation": skin.translation.clone(), "rotation": skin.rotation.clone(), "scale": skin.scale.clone()}
    for channel in animation.channels if animation is not None else []:
        trs[channel.path][channel.joint] = sample_channel(channel, time)
    return trs["translation"], trs["rotation"], trs["scale"]


# ----------------------------------------------------------------------------- checks


def check_influences(joints: Tensor, weights: Tensor, num_joints: int, where: str) -> tuple[Tensor, Tensor]:
    """``(joints, weights)`` ``[V, 4]`` in the writer's form: rows renormalised (sums within
    :data:`WEIGHT_SUM_TOLERANCE` of 1, else ``ValueError``), unused slots joint 0 weight 0."""
    if joints.shape != weights.shape or joints.ndim != 2 or joints.shape[1] != MAX_INFLUENCES:
        raise ValueError(
            f"{where}: joints and weights must both be [V, 4], got {tuple(joints.shape)}, {tuple(weights.shape)}"
        )
    if joints.numel() and (int(joints.min()) < 0 or int(joints.max()) >= num_joints):
        raise ValueError(f"{where}: joint indices outside [0, {num_joints})")
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError(f"{where}: negative or non-finite skin weights")
    sums = weights.double().sum(1)
    bad = (sums - 1).abs() > WEIGHT_SUM_TOLERANCE
    if bool(bad.any()):
        worst = float(sums[bad][(sums[bad] - 1).abs().argmax()])
        raise ValueError(
            f"{where}: skin weights of {int(bad.sum())} vertices do not sum to 1 (e.g. {worst:.4f}; "
            f"tolerance {WEIGHT_SUM_TOLERANCE})"
        )
    weights = (weights.double() / sums[:, None]).float()
    joints = torch.where(weights > 0, joints.long(), torch.zeros_like(joints, dtype=torch.long))
    return joints, weights


# ----------------------------------------------------------------------------- reading


def read_skinned_glb(path: PathLike) -> tuple[Mesh, dict, Optional[Skin], list]:
    """:func:`~dmtrec.io.gltf.read_glb`'s ``(mesh, textures)``, the skin of its skinned
    primitives (None if none is skinned) and the animations of the skin's joints.

    The skin's influences follow the welded position vertices (a welded vertex takes those of
    the first glTF vertex at its position).

    Raises:
        GltfReadError: one line naming the file (module docstring).
    """
    path = Path(path)
    mesh, textures = read_glb(path)
    doc, blob = _parse_glb(path)
    reader = _AccessorReader(path, doc, blob)
    nodes = doc.get("nodes", [])
    skin_of_mesh = {n["mesh"]: n.get("skin") for n in nodes if "mesh" in n}
    primitives = [
        (prim, skin_of_mesh.get(index))
        for index, _ in _mesh_instances(doc)
        for prim in doc["meshes"][index].get("primitives", [])
        if prim.get("mode", 4) == 4
    ]
    skins = {s for _, s in primitives}
    if skins == {None}:
        return mesh, textures, None, []
    if len(skins) > 1:
        raise GltfReadError(
            f"{path}: primitives are skinned by different skins (or some not at all): {sorted(skins, key=str)}"
        )
    skin_index = skins.pop()
    positions, joints, weights = [], [], []
    for prim, _ in primitives:
        attrs = prim["attributes"]
        if "JOINTS_0" not in attrs or "WEIGHTS_0" not in attrs:
            raise GltfReadError(f"{path}: a skinned primitive has no JOINTS_0 / WEIGHTS_0")
        for extra in range(1, 8):
            if f"WEIGHTS_{extra}" in attrs and bool(np.any(reader.read(attrs[f"WEIGHTS_{extra}"]) > 0)):
                raise GltfReadError(
                    f"{path}: more than {MAX_INFLUENCES} joint influences per vertex (WEIGHTS_{extra} is used); "
                    "dmtrec skins with at most 4"
                )
        positions.append(reader.read(attrs["POSITION"]).astype(np.float32))
        joints.append(reader.read(attrs["JOINTS_0"]).astype(np.int64).reshape(-1, MAX_INFLUENCES))
        weights.append(reader.read(attrs["WEIGHTS_0"]).astype(np.float32).reshape(-1, MAX_INFLUENCES))
        if not positions[-1].shape[0] == joints[-1].shape[0] == weights[-1].shape[0]:
            raise GltfReadError(f"{path}: JOINTS_0 / WEIGHTS_0 counts differ from POSITION's")
    # read_glb's weld (first occurrence of each position, in order of first use), repeated here.
    _, first = np.unique(np.concatenate(positions), axis=0, return_index=True)
    first = np.sort(first)
    skin = _read_skin(path, doc, reader, skin_index, np.concatenate(joints)[first], np.concatenate(weights)[first])
    if skin.joints.shape[0] != mesh.num_vertices:
        raise GltfReadError(f"{path}: {skin.joints.shape[0]} skinned vertices for {mesh.num_vertices} positions")
    return mesh, textures, skin, _read_animations(path, doc, reader, skin_index)


def has_skin(path: PathLike) -> bool:
    """Whether a ``.glb`` file has a skinned mesh node (cheap: reads the JSON chunk only)."""
    doc, _ = _parse_glb(Path(path))
    return any("skin" in node and "mesh" in node for node in doc.get("nodes", []))


def _read_skin(
    path: Path, doc: dict, reader: _AccessorReader, index: int, joints: np.ndarray, weights: np.ndarray
) -> Skin:
    try:
        spec = doc["skins"][index]
        joint_nodes = [int(j) for j in spec["joints"]]
    except (KeyError, IndexError, TypeError) as exc:
        raise GltfReadError(f"{path}: skin {index} is malformed ({exc!r})") from None
    if "inverseBindMatrices" not in spec:
        raise GltfReadError(f"{path}: skin {index} has no inverse bind matrices")
    ibm = reader.read(spec["inverseBindMatrices"]).astype(np.float64)
    if ibm.shape != (len(joint_nodes), 16):
        raise GltfReadError(
            f"{path}: skin {index} has {ibm.shape[0]} inverse bind matrices for {len(joint_nodes)} joints"
        )
    nodes = doc["nodes"]
    parent_of = {c: p for p, node in enumerate(nodes) for c in node.get("children", [])}
    slot = {node: j for j, node in enumerate(joint_nodes)}
    parents, above = [], {}
    for node in joint_nodes:
        p = parent_of.get(node)
        if p in slot:
            parents.append(slot[p])
            continue
        world = np.eye(4)  # non-joint ancestors: allowed above the roots only
        while p is not None:
            if p in slot:
                raise GltfReadError(f"{path}: joint node {node} hangs below a non-joint node {parent_of[node]}")
            world = _node_matrix(nodes[p]) @ world
            p = parent_of.get(p)
        parents.append(-1)
        above[node] = world
    roots = list(above.values())
    if any(not np.allclose(r, roots[0], atol=1e-6) for r in roots[1:]):
        raise GltfReadError(f"{path}: the root joints of skin {index} sit under differently transformed nodes")
    trs = [_node_trs(nodes[node]) for node in joint_nodes]
    try:
        joints_t, weights_t = check_influences(
            torch.from_numpy(joints), torch.from_numpy(weights), len(joint_nodes), str(path)
        )
    except ValueError as exc:
        raise GltfReadError(str(exc)) from None
    return Skin(
        names=[nodes[node].get("name", f"joint{j}") for j, node in enumerate(joint_nodes)],
        parents=parents,
        translation=torch.tensor(np.array([t for t, _, _ in trs]), dtype=torch.float32),
        rotation=torch.tensor(np.array([r for _, r, _ in trs]), dtype=torch.float32),
        scale=torch.tensor(np.array([s for _, _, s in trs]), dtype=torch.float32),
        inverse_bind=torch.from_numpy(ibm.reshape(-1, 4, 4).transpose(0, 2, 1).copy()).float(),  # column-major
        joints=joints_t,
        weights=weights_t,
        root=torch.from_numpy(roots[0] if roots else np.eye(4)).float(),
    )


def _node_trs(node: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(translation, rotation xyzw, scale)`` of a node; a ``matrix`` is decomposed (no shear)."""
    if "matrix" not in node:
        return (
            np.array(node.get("translation", [0.0, 0.0, 0.0])),
            np.array(node.get("rotation", [0.0, 0.0, 0.0, 1.0])),
            np.array(node.get("scale", [1.0, 1.0, 1.0])),
        )
    m = _node_matrix(node)
    scale = np.linalg.norm(m[:3, :3], axis=0)
    if np.linalg.det(m[:3, :3]) < 0:
        scale[0] = -scale[0]
    return m[:3, 3].copy(), matrix_to_quaternion(m[:3, :3] / scale[None, :]), scale


def _read_animations(path: Path, doc: dict, reader: _AccessorReader, skin_index: int) -> list:
    slot = {int(node): j for j, node in enumerate(doc["skins"][skin_index]["joints"])}
    out = []
    for a, spec in enumerate(doc.get("animations", [])):
        channels = []
        for c in spec.get("channels", []):
            target = c.get("target", {})
            node, prop = target.get("node"), target.get("path")
            if prop not in PATHS or node not in slot:
                log.warning(
                    "%s: animation %d: skipping a channel on %s of node %s (not a joint's TRS)", path, a, prop, node
                )
                continue
            try:
                sampler = spec["samplers"][c["sampler"]]
            except (KeyError, IndexError) as exc:
                raise GltfReadError(f"{path}: animation {a} has a channel without a valid sampler ({exc!r})") from None
            interpolation = sampler.get("interpolation", "LINEAR")
            if interpolation not in INTERPOLATIONS:
                raise GltfReadError(f"{path}: animation {a}: unknown interpolation {interpolation!r}")
            times = reader.read(sampler["input"]).astype(np.float32).reshape(-1)
            values = reader.read(sampler["output"]).astype(np.float32).reshape(-1, PATHS[prop])
            expected = times.shape[0] * (3 if interpolation == "CUBICSPLINE" else 1)
            if values.shape[0] != expected or times.shape[0] == 0:
                raise GltfReadError(f"{path}: animation {a}: {values.shape[0]} output values for {times.shape[0]} keys")
            channels.append(Channel(slot[node], prop, interpolation, torch.from_numpy(times), torch.from_numpy(values)))
        out.append(Animation(spec.get("name", f"animation{a}"), channels))
    return out


# ----------------------------------------------------------------------------- writing


def influence_attributes(skin: Skin) -> dict:
    """``JOINTS_0`` (uint16 or uint8) and ``WEIGHTS_0`` (float32) per position vertex, for
    :func:`dmtrec.io.gltf._vertex_streams`. Slots are checked and put in the writer's form."""
    joints, weights = check_influences(skin.joints, skin.weights, skin.num_joints, "skin")
    weights = weights.numpy().astype(np.float32)
    # Float32 rounding: the largest weight takes up the rest, so each row sums to 1 in float32.
    big = weights.argmax(1)
    rows = np.arange(weights.shape[0])
    weights[rows, big] = 0.0
    weights[rows, big] = np.float32(1.0) - weights.sum(1, dtype=np.float32)
    dtype = np.uint8 if skin.num_joints <= 256 else np.uint16
    return {"JOINTS_0": joints.numpy().astype(dtype), "WEIGHTS_0": weights}


def add_skin(builder: _GlbBuilder, skin: Skin, animations: Sequence[Animation], mesh_nodes: Sequence[int]) -> None:
    """Append ``skin``'s joint nodes, one glTF skin per node of ``mesh_nodes`` (sharing the joints and
    the inverse bind matrices), and ``animations``, to a document whose scene is ``scenes[0]``.

    The mesh nodes must be scene roots without transforms (glTF ignores a skinned node's transform).
    """
    doc = builder.doc
    nodes, base = doc["nodes"], len(doc["nodes"])
    for j in range(skin.num_joints):
        node: dict = {"name": str(skin.names[j])}
        t, r, s = (x[j].tolist() for x in (skin.translation, skin.rotation, skin.scale))
        if any(v != 0 for v in t):
            node["translation"] = t
        if r != [0.0, 0.0, 0.0, 1.0]:
            node["rotation"] = r
        if s != [1.0, 1.0, 1.0]:
            node["scale"] = s
        children = [base + c for c, p in enumerate(skin.parents) if p == j]
        if children:
            node["children"] = children
        nodes.append(node)
    roots = [base + j for j, p in enumerate(skin.parents) if p == -1]
    if not torch.equal(skin.root, torch.eye(4)):
        nodes.append({"name": "armature", "matrix": skin.root.T.reshape(-1).tolist(), "children": roots})
        roots = [len(nodes) - 1]
    doc["scenes"][0]["nodes"] = list(doc["scenes"][0]["nodes"]) + roots
    ibm = skin.inverse_bind.double().numpy().transpose(0, 2, 1).reshape(-1, 16).astype(np.float32)
    ibm_accessor = _accessor(builder, ibm, "MAT4")
    skins = doc.setdefault("skins", [])
    for node in mesh_nodes:
        skins.append({"joints": list(range(base, base + skin.num_joints)), "inverseBindMatrices": ibm_accessor})
        nodes[node]["skin"] = len(skins) - 1
    for animation in animations:
        samplers, channels = [], []
        for channel in animation.channels:
            times = channel.times.double().numpy().astype(np.float32)
            values = channel.values.double().numpy().astype(np.float32)
            if channel.path == "rotation" and channel.interpolation != "CUBICSPLINE":
                norm = np.linalg.norm(values.astype(np.float64), axis=1, keepdims=True)
                # glTF wants unit keys; unit ones (to float32 rounding) are kept bit for bit.
                values = np.where(np.abs(norm - 1) > 1e-6, values / norm, values).astype(np.float32)
            samplers.append(
                {
                    "input": _accessor(builder, times, "SCALAR", bounds=True),
                    "output": _accessor(builder, values, {3: "VEC3", 4: "VEC4"}[values.shape[1]]),
                    "interpolation": channel.interpolation,
                }
            )
            channels.append(
                {"sampler": len(samplers) - 1, "target": {"node": base + channel.joint, "path": channel.path}}
            )
        doc.setdefault("animations", []).append({"name": animation.name, "samplers": samplers, "channels": channels})


def _accessor(builder: _GlbBuilder, data: np.ndarray, kind: str, bounds: bool = False) -> int:
    """A float32 accessor of ``data`` outside any vertex buffer (animation keys, inverse bind matrices)."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    acc = {
        "bufferView": builder.view(data.tobytes()),
        "componentType": _FLOAT,
        "count": int(data.shape[0]),
        "type": kind,
    }
    if bounds:
        flat = data.reshape(data.shape[0], -1)
        acc["min"], acc["max"] = flat.min(0).tolist(), flat.max(0).tolist()
    builder.doc["accessors"].append(acc)
    return len(builder.doc["accessors"]) - 1
