"""Levels of detail of skinned assets, fitted over poses instead of one frame.

Per level:

1. **Bind-pose QEM** (baseline "a"): the bind-pose mesh decimated to the budget
   (:func:`dmtrec.assets.lod.decimate`), UV-unwrapped, textures transferred by closest-surface
   lookup (:func:`dmtrec.assets.lod_transfer.transfer_textures`), and skin weights transferred
   the same way: each new vertex takes the barycentric blend of the influences of the closest
   point on the original surface (:func:`transfer_weights`), its 4 largest kept and renormalised.
2. **Pose-fitted** ("c"): bind positions (an offset in bounding-radius units, with the relative
   Laplacian of :mod:`dmtrec.geometry.regularizers`), weights (a softmax over each vertex's 4
   slots: on the simplex, at most 4 influences) and the kd / ks / normal textures are optimised
   so that PBR renders of the *skinned* level match renders of the skinned original, each step
   one random training pose seen from ``batch`` random views (log-L1 over random backgrounds
   plus an alpha term, nvdiffmodeling's losses as :mod:`dmtrec.assets.lod` uses them).

Poses are the asset's animation frames at random times (:func:`animation_poses`) or, with
``settings.poses = "random"``, random local rotations within the per-joint ranges the
animations use (:func:`random_poses`; +-``max_angle`` when the asset has no animation).
Training and held-out poses and views are disjoint draws. Views frame the bounding sphere of
the original over every pose. A level is scored on held-out poses x held-out views
(PSNR over white in sRGB, nvdiffrec's convention): the mean, and the *worst pose* (the
held-out pose whose mean PSNR is lowest), since skinning fails at the extremes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from dmtrec.assets.lod import LodScene, decimate
from dmtrec.assets.lod_transfer import transfer_textures
from dmtrec.assets.views import render_reference, sample_cameras
from dmtrec.core.mesh import Mesh
from dmtrec.geometry.closest_point import closest_points
from dmtrec.geometry.regularizers import laplacian_loss
from dmtrec.geometry.uv_unwrap import uv_unwrap
from dmtrec.io.gltf_skin import Animation, Skin, check_influences, quaternion_to_matrix, sample_animation
from dmtrec.metrics.image import image_metrics
from dmtrec.render.camera import Cameras
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.skinning import (
    axis_angle_to_matrix,
    simplex_weights,
    skin_vertices,
    skinning_matrices,
    weight_logits,
)

log = logging.getLogger(__name__)

LAPLACE_SHARE = 0.05
"""The relative Laplacian's weight makes it start at this share of the image loss if the initial
Laplacian were the displacement's (the static lod's rule, :mod:`dmtrec.systems.lod`)."""
MIN_WEIGHT = 1e-3
"""Fitted weights below this are dropped (and the rest renormalised) before writing and scoring."""


@dataclass
class SkinnedLodSettings:
    """Settings of the skinned levels (module docstring).

    Attributes:
        res, spp: image size and supersampling of every render (training and evaluation).
        iterations, batch: optimisation steps (one pose each) and views per step.
        lr, weight_lr, texture_lr: Adam rates of the positions (bounding-radius units), the
            weight logits and the textures.
        laplace_weight: weight of the relative Laplacian; None: the automatic rule (LAPLACE_SHARE).
        texture_res: side of each level's textures.
        train_poses, heldout_poses, train_views, heldout_views: the pose and view pools; the
            original's training renders are made per step (a large pool costs nothing up front).
        poses: ``"animation"`` (frames at random times) or ``"random"`` (joint rotations within
            the animations' ranges).
        animation: name of the animation to take poses from (None: all of them).
        max_angle: degrees of the random rotations of an asset without animations.
        fovy, probe_res, seed, xatlas_timeout: as in :class:`dmtrec.assets.lod.LodSettings`.
        skip_train: of "position", "weights", "textures": parameters kept as transferred.
    """

    res: int = 128
    spp: int = 2
    iterations: int = 300
    batch: int = 2
    lr: float = 0.0001
    weight_lr: float = 0.01
    texture_lr: float = 0.003
    laplace_weight: Optional[float] = None
    texture_res: int = 256
    train_poses: int = 256
    heldout_poses: int = 6
    train_views: int = 256
    heldout_views: int = 4
    poses: str = "animation"
    animation: Optional[str] = None
    max_angle: float = 30.0
    fovy: float = 45.0
    probe_res: int = 32
    seed: int = 0
    xatlas_timeout: float = 120.0
    skip_train: list = field(default_factory=list)


# ----------------------------------------------------------------------------- poses


@dataclass
class Poses:
    """``P`` poses of a skeleton: local rotations ``[P, J, 3, 3]``, translations and scales ``[P, J, 3]``,
    with a label each (``"walk@0.250s"``, ``"random3"``)."""

    rotation: Tensor
    translation: Tensor
    scale: Tensor
    labels: list
    times: Optional[list] = None  # seconds into the animation of each pose, for animation frames

    def matrices(self, skin: Skin) -> Tensor:
        """``[P, J, 4, 4]`` skinning matrices."""
        return skinning_matrices(skin, self.rotation, self.translation, self.scale)


def _pick_animations(animations: Sequence[Animation], name: Optional[str], where: str) -> list:
    if name is None:
        return [a for a in animations if a.channels]
    chosen = [a for a in animations if a.name == name]
    if not chosen:
        raise ValueError(f"{where}: no animation named {name!r} (has {[a.name for a in animations]})")
    return chosen


def animation_poses(skin: Skin, animations: Sequence[Animation], n: int, seed: int, name=None, where="asset") -> Poses:
    """``n`` frames of the animations at times drawn uniformly (seeded), animations in turn."""
    chosen = _pick_animations(animations, name, where)
    if not chosen:
        raise ValueError(f"{where}: has no animation to take poses from (use random poses)")
    generator = torch.Generator().manual_seed(int(seed))
    rot, trans, scale, labels, times = [], [], [], [], []
    for k in range(n):
        animation = chosen[k % len(chosen)]
        time_s = float(torch.rand((), generator=generator)) * animation.duration
        t, r, s = sample_animation(skin, animation, time_s)
        rot.append(quaternion_to_matrix(r))
        trans.append(t)
        scale.append(s)
        labels.append(f"{animation.name}@{time_s:.3f}s")
        times.append(time_s)
    return Poses(torch.stack(rot), torch.stack(trans), torch.stack(scale), labels, times)


def _log_rotation(m: Tensor) -> Tensor:
    """Axis-angle vectors ``[..., 3]`` of rotation matrices ``[..., 3, 3]`` (angles below pi)."""
    cos = ((m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    angle = torch.acos(cos)
    skew = torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    scale = torch.where(angle > 1e-6, angle / (2 * torch.sin(angle)).clamp_min(1e-12), torch.full_like(angle, 0.5))
    return skew * scale[..., None]


def random_poses(
    skin: Skin, animations: Sequence[Animation], n: int, seed: int, name=None, max_angle: float = 30.0
) -> Poses:
    """``n`` poses with each joint's rotation (relative to its rest rotation, axis-angle) drawn
    uniformly in the box its animation keys span; every non-root joint within ``max_angle``
    degrees per axis when there are no animations. Translations and scales stay at rest."""
    rest = quaternion_to_matrix(skin.rotation)  # [J, 3, 3]
    lo = torch.zeros(skin.num_joints, 3)
    hi = torch.zeros(skin.num_joints, 3)
    chosen = _pick_animations(animations, name, "asset") if animations else []
    if chosen:
        for animation in chosen:
            for channel in animation.channels:
                if channel.path != "rotation":
                    continue
                keys = channel.values.reshape(channel.times.shape[0], -1, 4)[
                    :, -2 if channel.interpolation == "CUBICSPLINE" else 0
                ]
                rel = _log_rotation(rest[channel.joint].T @ quaternion_to_matrix(keys))
                lo[channel.joint] = torch.minimum(lo[channel.joint], rel.min(0).values)
                hi[channel.joint] = torch.maximum(hi[channel.joint], rel.max(0).values)
    else:
        limit = math.radians(max_angle)
        children = torch.tensor([p >= 0 for p in skin.parents])
        lo[children], hi[children] = -limit, limit
    generator = torch.Generator().manual_seed(int(seed))
    v = lo + (hi - lo) * torch.rand(n, skin.num_joints, 3, generator=generator)
    rotation = rest @ axis_angle_to_matrix(v)
    labels = [f"random{k}" for k in range(n)]
    return Poses(rotation, skin.translation.expand(n, -1, -1), skin.scale.expand(n, -1, -1), labels)


def make_poses(
    skin: Skin, animations: Sequence[Animation], n: int, seed: int, settings: SkinnedLodSettings, where="asset"
):
    """The poses ``settings.poses`` asks for (random ones when the asset has no animations)."""
    if settings.poses == "animation" and any(a.channels for a in animations):
        return animation_poses(skin, animations, n, seed, settings.animation, where)
    if settings.poses not in ("animation", "random"):
        raise ValueError(f"{where}: poses must be 'animation' or 'random', got {settings.poses!r}")
    return random_poses(skin, animations, n, seed, settings.animation, settings.max_angle)


# ----------------------------------------------------------------------------- weight transfer


def transfer_weights(source: Mesh, skin: Skin, points: Tensor) -> tuple[Tensor, Tensor]:
    """``(joints [N, 4], weights [N, 4])`` at ``points`` ``[N, 3]`` from the closest point of ``source``:
    the barycentric blend of its triangle's corner influences, the 4 largest kept, renormalised."""
    surface, _ = closest_points(
        points.detach().cpu().double(), source.v_pos.cpu(), source.t_pos_idx.cpu(), chunk=1 << 16
    )
    corners = source.t_pos_idx.cpu()[surface.face]  # [N, 3]
    bary = surface.bary
    dense = torch.zeros(points.shape[0], skin.num_joints, dtype=torch.float64)
    for c in range(3):
        dense.scatter_add_(1, skin.joints[corners[:, c]], bary[:, c : c + 1] * skin.weights[corners[:, c]].double())
    weights, joints = dense.topk(min(4, skin.num_joints), dim=1)
    if weights.shape[1] < 4:
        pad = 4 - weights.shape[1]
        weights = torch.cat([weights, torch.zeros(len(weights), pad, dtype=weights.dtype)], 1)
        joints = torch.cat([joints, torch.zeros(len(joints), pad, dtype=joints.dtype)], 1)
    weights = weights / weights.sum(1, keepdim=True)
    return check_influences(joints, weights.float(), skin.num_joints, "transfer_weights")


def prune_weights(joints: Tensor, weights: Tensor, num_joints: int, min_weight: float = MIN_WEIGHT):
    """Influences below ``min_weight`` dropped and the rest renormalised (the writer's form)."""
    weights = torch.where(weights < min_weight, torch.zeros_like(weights), weights.detach())
    return check_influences(joints, weights / weights.sum(1, keepdim=True), num_joints, "prune_weights")


# ----------------------------------------------------------------------------- the scene


class SkinnedScene:
    """The skinned original under the light, its pose and view pools and reference renders."""

    def __init__(self, mesh: Mesh, material, skin: Skin, animations, light, rasterizer, settings: SkinnedLodSettings):
        s = settings
        self.mesh = Mesh(mesh.v_pos, mesh.t_pos_idx, v_tex=mesh.v_tex, t_tex_idx=mesh.t_tex_idx)  # bind normals go
        self.material, self.skin, self.light, self.rasterizer, self.settings = material, skin, light, rasterizer, s
        self.poses = {
            "train": make_poses(skin, animations, s.train_poses, s.seed, s),
            "heldout": make_poses(skin, animations, s.heldout_poses, s.seed + 1000, s),
        }
        self.matrices = {k: p.matrices(skin) for k, p in self.poses.items()}
        posed = torch.cat([self.posed(self.mesh.v_pos, skin.joints, skin.weights, m) for m in self.matrices.values()])
        lo, hi = posed.reshape(-1, 3).min(0).values, posed.reshape(-1, 3).max(0).values
        centre = (lo + hi) / 2
        self.radius = float((posed.reshape(-1, 3) - centre).norm(dim=-1).max())
        distance = self.radius * 1.1 / math.sin(math.radians(s.fovy) / 2)
        self.cameras = {
            split: sample_cameras(n, "sphere", distance, s.fovy, s.res, s.seed + offset, target=centre.tolist())
            for split, n, offset in (("train", s.train_views, 0), ("heldout", s.heldout_views, 7))
        }
        # Held-out references once; training ones are rendered per step (fresh poses and views).
        views = self.cameras["heldout"]
        self.references = {
            "heldout": torch.stack([self.reference("heldout", p, views) for p in range(s.heldout_poses)])
        }

    @staticmethod
    def posed(v_pos: Tensor, joints: Tensor, weights: Tensor, matrices: Tensor) -> Tensor:
        return skin_vertices(v_pos, joints, weights, matrices)

    @torch.no_grad()
    def reference(self, split: str, pose: int, cameras: Cameras) -> Tensor:
        """``[V, H, W, 4]`` straight-alpha renders of the original in pose ``pose`` of ``split``."""
        m = self.matrices[split][pose]
        posed = self.mesh.copy(v_pos=self.posed(self.mesh.v_pos, self.skin.joints, self.skin.weights, m))
        return render_reference(posed, self.material, self.light, cameras, self.rasterizer, self.settings.spp)

    # ``[B, H, W, 4]`` PBR render of a (posed) level over ``background``: the static lod's, which
    # reads the same attributes (light, rasterizer, settings.spp).
    render = LodScene.render


# ----------------------------------------------------------------------------- one level


@dataclass
class SkinnedLevel:
    """One level: its bind-pose mesh (with UVs), influences, material and report."""

    budget: int
    mesh: Mesh
    joints: Tensor
    weights: Tensor
    material: TexturedMaterial
    report: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)


def evaluate(scene: SkinnedScene, mesh: Mesh, joints: Tensor, weights: Tensor, material) -> dict:
    """Held-out poses x held-out views PSNR (sRGB over white): ``{"psnr", "worst_pose_psnr",
    "worst_pose", "per_pose"}`` and ``images``, the worst pose's renders ``[V, H, W, 3]``."""
    split = "heldout"
    cams = scene.cameras[split]
    white = torch.ones(cams.batch_size, *cams.resolution, 3)
    per_pose, renders = [], []
    with torch.no_grad():
        for p, m in enumerate(scene.matrices[split]):
            posed = mesh.copy(v_pos=scene.posed(mesh.v_pos, joints, weights, m))
            pred = scene.render(posed, material, cams, white)[..., :3]
            per_pose.append(image_metrics(pred, scene.references[split][p], background=1.0)["psnr"])
            renders.append(pred)
    table = torch.stack(per_pose)  # [P, V]
    worst = int(table.mean(1).argmin())
    return {
        "psnr": float(table.mean()),
        "worst_pose_psnr": float(table.mean(1)[worst]),
        "worst_pose": scene.poses[split].labels[worst],
        "worst_view_psnr": float(table.min()),
        "per_pose": [round(float(x), 3) for x in table.mean(1)],
        "images": renders[worst],
        "worst_index": worst,
    }


def _material_from(textures: dict, trainable: bool) -> TexturedMaterial:
    material = TexturedMaterial.from_tensors(**{k: v.detach().clone() for k, v in textures.items()})
    material.requires_grad_(trainable)
    return material


def _tonemap(x: Tensor) -> Tensor:
    return torch.log1p(x.clamp(0.0, 65535.0))


def prepare_level(scene: SkinnedScene, budget: int) -> SkinnedLevel:
    """Baseline (a): bind-pose QEM, unwrapped, textures and weights transferred."""
    s = scene.settings
    unwrap = uv_unwrap(decimate(scene.mesh, budget), timeout_s=s.xatlas_timeout, texture_res=s.texture_res)
    mesh = unwrap.mesh
    textures = transfer_textures(scene.mesh, scene.material, mesh, s.texture_res, scene.rasterizer)
    joints, weights = transfer_weights(scene.mesh, scene.skin, mesh.v_pos)
    mesh = Mesh(mesh.v_pos, mesh.t_pos_idx, v_tex=mesh.v_tex, t_tex_idx=mesh.t_tex_idx)
    return SkinnedLevel(budget, mesh, joints, weights, _material_from(textures, False))


def fit_level(scene: SkinnedScene, level: SkinnedLevel) -> SkinnedLevel:
    """Pose-fitted (c): positions, weights and textures optimised over the training poses."""
    s = scene.settings
    radius = scene.radius
    base = level.mesh.v_pos.detach()
    faces = level.mesh.t_pos_idx
    offset = torch.zeros_like(base, requires_grad="position" not in s.skip_train)
    logits = weight_logits(level.weights).clone().requires_grad_("weights" not in s.skip_train)
    material = _material_from(level.material.to_tensors(), "textures" not in s.skip_train)
    groups = [
        {"params": [offset], "lr": s.lr},
        {"params": [logits], "lr": s.weight_lr},
        {"params": list(material.parameters()), "lr": s.texture_lr},
    ]
    groups = [g for g in groups if all(p.requires_grad for p in g["params"]) and g["params"]]
    optimizer = torch.optim.Adam(groups) if groups else None
    for g in optimizer.param_groups if optimizer else []:
        g["base_lr"] = g["lr"]
    cams = scene.cameras["train"]
    generator = torch.Generator().manual_seed(s.seed + 17)

    def step_loss(pose: int, pick: Tensor, bg: Tensor):
        v_pos = base + offset * radius
        posed = scene.posed(v_pos, level.joints, simplex_weights(logits), scene.matrices["train"][pose])
        pred = scene.render(level.mesh.copy(v_pos=posed), material, cams[pick], bg)
        ref = scene.reference("train", pose, cams[pick])
        ref_rgb = torch.lerp(bg, ref[..., :3], ref[..., 3:4])
        color = (_tonemap(pred[..., :3]) - _tonemap(ref_rgb)).abs().mean()
        alpha = (pred[..., 3:] - ref[..., 3:]).square().mean()
        return color + alpha

    laplace_weight = s.laplace_weight
    if laplace_weight is None:
        views = torch.arange(min(s.batch, cams.batch_size))
        grey = torch.full((views.numel(), s.res, s.res, 3), 0.5)
        with torch.no_grad():  # the measured initial image loss, as the static lod measures it
            image = float(np.mean([float(step_loss(p, views, grey)) for p in range(min(4, s.train_poses))]))
        laplace_weight = LAPLACE_SHARE * image / max(float(laplacian_loss(base / radius, faces)), 1e-12)
    start = time.perf_counter()
    first = last = None
    for it in range(s.iterations if optimizer else 0):
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * 10 ** (-0.0002 * it)
        pose = int(torch.randint(0, s.train_poses, (), generator=generator))
        pick = torch.randperm(cams.batch_size, generator=generator)[: s.batch]
        bg = torch.rand(pick.numel(), s.res, s.res, 3, generator=generator)
        loss = step_loss(pose, pick, bg) + laplace_weight * laplacian_loss(offset, faces)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        material.clamp_()
        last = float(loss.detach())
        first = last if first is None else first
    joints, weights = prune_weights(level.joints, simplex_weights(logits.detach()), scene.skin.num_joints)
    mesh = level.mesh.copy(v_pos=(base + offset.detach() * radius))
    fitted = SkinnedLevel(level.budget, mesh, joints, weights, _material_from(material.to_tensors(), False))
    fitted.report = {
        "laplace_weight": laplace_weight,
        "train_loss": {"first": first, "last": last},
        "seconds_optimise": time.perf_counter() - start,
    }
    return fitted


def skinned_lod(scene: SkinnedScene, budgets: Sequence[int]) -> list:
    """Every level (finest first) as ``(baseline, fitted)`` :class:`SkinnedLevel` pairs with their reports."""
    out = []
    for budget in budgets:
        start = time.perf_counter()
        baseline = prepare_level(scene, budget)
        prep = time.perf_counter() - start
        baseline.report = _scores(scene, baseline)
        fitted = fit_level(scene, baseline)
        fitted.report.update(_scores(scene, fitted))
        fitted.report["seconds_prepare"] = prep
        log.info(
            "skinned level %d triangles: held-out PSNR %.2f dB (bind-pose QEM %.2f dB), worst pose %.2f dB (%.2f dB)",
            baseline.mesh.num_faces,
            fitted.report["psnr"],
            baseline.report["psnr"],
            fitted.report["worst_pose_psnr"],
            baseline.report["worst_pose_psnr"],
        )
        out.append((baseline, fitted))
    return out


def _scores(scene: SkinnedScene, level: SkinnedLevel) -> dict:
    scores = evaluate(scene, level.mesh, level.joints, level.weights, level.material)
    level.images = {"worst_pose": scores.pop("images")}
    scores["triangles"] = level.mesh.num_faces
    return scores


def level_skin(skin: Skin, level: SkinnedLevel) -> Skin:
    """The original's skeleton with the level's influences (for :func:`dmtrec.io.gltf.write_glb`)."""
    return skin.with_vertices(level.joints, level.weights)


def posed_mesh(scene: SkinnedScene, level: SkinnedLevel, split: str, pose: int) -> Mesh:
    """The level skinned into pose ``pose`` of ``split`` (figures)."""
    m = scene.matrices[split][pose]
    return level.mesh.copy(v_pos=scene.posed(level.mesh.v_pos, level.joints, level.weights, m))


__all__ = [
    "Poses",
    "SkinnedLevel",
    "SkinnedLodSettings",
    "SkinnedScene",
    "animation_poses",
    "evaluate",
    "fit_level",
    "level_skin",
    "prepare_level",
    "prune_weights",
    "random_poses",
    "skinned_lod",
    "transfer_weights",
]
