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
held-out pose whose mean PSNR is lowest), since skinning fails at the extremes. The held-out and
validation references, and the levels judged on them (including the rate candidates at each
halving), are rendered with ``settings.eval_spp`` samples per pixel and axis, the training renders
with ``settings.spp`` (:func:`dmtrec.assets.lod.split_spp`: a 2 x 2 judge aliases on outlines,
which held about nine tenths of the error at 96 px; README, "Skinned characters").
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

from dmtrec.assets.lod import LodScene, decimate, split_spp
from dmtrec.assets.lod_transfer import transfer_textures
from dmtrec.assets.views import render_reference, sample_cameras
from dmtrec.core.mesh import Mesh
from dmtrec.geometry.closest_point import closest_points
from dmtrec.geometry.regularizers import laplacian_loss
from dmtrec.geometry.uv_unwrap import uv_unwrap
from dmtrec.io.gltf_skin import Animation, Skin, check_influences, quaternion_to_matrix, sample_animation
from dmtrec.io.image import linear_to_srgb
from dmtrec.metrics.flip import flip_score
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
LR_CANDIDATES = (3e-5, 1e-4, 3e-4, 1e-3)
"""Default position rates tried per level (bounding-radius units): the best measured rate differs
30x between the benchmark's levels (README, "Skinned characters")."""
MIN_WEIGHT = 1e-3
"""Fitted weights below this are dropped (and the rest renormalised) before writing and scoring."""


@dataclass
class SkinnedLodSettings:
    """Settings of the skinned levels (module docstring).

    Attributes:
        res, spp: image size and supersampling per axis of the training renders.
        eval_spp: supersampling per axis of the validation and held-out renders (references and
            the levels judged on them); None: ``spp`` (:func:`dmtrec.assets.lod.split_spp`).
        iterations, batch: optimisation steps (one pose each) and views per step.
        lr, weight_lr, texture_lr: Adam rates of the positions (bounding-radius units), the
            weight logits and the textures.
        lr_candidates: position rates tried per level (None: ``[lr]``); they train together
            and the better half on the validation poses x views goes on at each of
            :func:`selection_steps` (successive halving), so one is left at the end.
        lr_final: factor of every rate at the last step (exponential decay); None:
            nvdiffmodeling's ``10 ** (-0.0002 it)``.
        loss: ``"logl1"`` (log-L1 of the tonemapped colour, nvdiffmodeling's) or ``"srgb_l2"``
            (the squared sRGB error the held-out PSNR measures).
        keep_best: (c) is the state with the best validation PSNR among the candidates at every
            selection step and the survivor at the end, not only the survivor at the end.
        average: the level takes exponential moving averages of the trained tensors with this
            decay per step (Polyak averaging: the steps' noise averages out) instead of their
            last values; None: the last values.
        laplace_weight: weight of the relative Laplacian; None: the automatic rule (LAPLACE_SHARE).
        texture_res: side of each level's textures.
        train_poses, heldout_poses, train_views, heldout_views: the pose and view pools; the
            original's training renders are made per step (a large pool costs nothing up front).
        validation_poses, validation_views: poses x views (disjoint from the training and the
            held-out ones) that choose the position rate and whether a level keeps its start.
        poses: ``"animation"`` (frames at random times) or ``"random"`` (joint rotations within
            the animations' ranges).
        animation: name of the animation to take poses from (None: all of them).
        max_angle: degrees of the random rotations of an asset without animations.
        fovy, probe_res, seed, xatlas_timeout: as in :class:`dmtrec.assets.lod.LodSettings`.
        skip_train: of "position", "weights", "textures": parameters kept as transferred.
    """

    res: int = 128
    spp: int = 2
    eval_spp: Optional[int] = None
    iterations: int = 300
    batch: int = 2
    lr: float = 0.0001
    lr_candidates: Optional[list] = field(default_factory=lambda: list(LR_CANDIDATES))
    lr_final: Optional[float] = None
    average: Optional[float] = 0.95
    loss: str = "logl1"
    keep_best: bool = False
    weight_lr: float = 0.01
    texture_lr: float = 0.003
    laplace_weight: Optional[float] = None
    texture_res: int = 256
    train_poses: int = 256
    heldout_poses: int = 6
    train_views: int = 256
    heldout_views: int = 4
    validation_poses: int = 4
    validation_views: int = 4
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
    """The skinned original under the light, its pose and view pools and reference renders.

    Three disjoint splits of poses and views: ``train`` (references rendered per step),
    ``validation`` (chooses a level's position rate and whether it keeps its start; never
    reported as its score) and ``heldout`` (the reported scores)."""

    SPLIT_SEEDS = {"train": (0, 0), "heldout": (1000, 7), "validation": (2000, 14)}
    """Seed offsets ``(poses, views)`` of each split."""

    def __init__(self, mesh: Mesh, material, skin: Skin, animations, light, rasterizer, settings: SkinnedLodSettings):
        s = settings
        self.mesh = Mesh(mesh.v_pos, mesh.t_pos_idx, v_tex=mesh.v_tex, t_tex_idx=mesh.t_tex_idx)  # bind normals go
        self.material, self.skin, self.light, self.rasterizer, self.settings = material, skin, light, rasterizer, s
        counts = {
            "train": (s.train_poses, s.train_views),
            "heldout": (s.heldout_poses, s.heldout_views),
            "validation": (s.validation_poses, s.validation_views),
        }
        self.poses = {
            split: make_poses(skin, animations, counts[split][0], s.seed + self.SPLIT_SEEDS[split][0], s)
            for split in counts
        }
        self.matrices = {k: p.matrices(skin) for k, p in self.poses.items()}
        # The frame: the original over the training and held-out poses (the 256 training frames
        # cover an animation; validation poses are left out so the held-out views stay as they were).
        framed = (self.matrices["train"], self.matrices["heldout"])
        posed = torch.cat([self.posed(self.mesh.v_pos, skin.joints, skin.weights, m) for m in framed])
        lo, hi = posed.reshape(-1, 3).min(0).values, posed.reshape(-1, 3).max(0).values
        centre = (lo + hi) / 2
        self.radius = float((posed.reshape(-1, 3) - centre).norm(dim=-1).max())
        distance = self.radius * 1.1 / math.sin(math.radians(s.fovy) / 2)
        self.cameras = {
            split: sample_cameras(
                counts[split][1],
                "sphere",
                distance,
                s.fovy,
                s.res,
                s.seed + self.SPLIT_SEEDS[split][1],
                target=centre.tolist(),
            )  # fmt: skip
            for split in counts
        }
        # Held-out and validation references once; training ones are rendered per step (fresh poses and views).
        self.references = {
            split: torch.stack([self.reference(split, p, self.cameras[split]) for p in range(counts[split][0])])
            for split in ("heldout", "validation")
        }

    @staticmethod
    def posed(v_pos: Tensor, joints: Tensor, weights: Tensor, matrices: Tensor) -> Tensor:
        return skin_vertices(v_pos, joints, weights, matrices)

    @torch.no_grad()
    def reference(self, split: str, pose: int, cameras: Cameras) -> Tensor:
        """``[V, H, W, 4]`` straight-alpha renders of the original in pose ``pose`` of ``split``."""
        m = self.matrices[split][pose]
        posed = self.mesh.copy(v_pos=self.posed(self.mesh.v_pos, self.skin.joints, self.skin.weights, m))
        spp = split_spp(self.settings, split)
        return render_reference(posed, self.material, self.light, cameras, self.rasterizer, spp)

    # ``[B, H, W, 4]`` PBR render of a (posed) level over ``background``, supersampled as ``split``'s
    # references are: the static lod's, which reads the same attributes (light, rasterizer, settings).
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


def evaluate(
    scene: SkinnedScene, mesh: Mesh, joints: Tensor, weights: Tensor, material, split: str = "heldout", flip=False
) -> dict:
    """Poses x views PSNR of ``split`` (sRGB over white): ``{"psnr", "worst_pose_psnr", "worst_pose",
    "worst_view_psnr", "per_pose", "worst_index"}``, ``"flip"`` (mean over poses and views, when
    ``flip`` and ``flip-evaluator`` is installed) and ``images``, the worst pose's renders ``[V, H, W, 3]``."""
    cams = scene.cameras[split]
    white = torch.ones(cams.batch_size, *cams.resolution, 3)
    per_pose, renders, flips = [], [], []
    with torch.no_grad():
        for p, m in enumerate(scene.matrices[split]):
            posed = mesh.copy(v_pos=scene.posed(mesh.v_pos, joints, weights, m))
            pred = scene.render(posed, material, cams, white, split)[..., :3]
            ref = scene.references[split][p]
            per_pose.append(image_metrics(pred, ref, background=1.0)["psnr"])
            renders.append(pred)
            if flip:
                flips.append(flip_score(pred, torch.lerp(white, ref[..., :3], ref[..., 3:4])))
    table = torch.stack(per_pose)  # [P, V]
    worst = int(table.mean(1).argmin())
    out = {
        "psnr": float(table.mean()),
        "worst_pose_psnr": float(table.mean(1)[worst]),
        "worst_pose": scene.poses[split].labels[worst],
        "worst_view_psnr": float(table.min()),
        "per_pose": [round(float(x), 3) for x in table.mean(1)],
        "images": renders[worst],
        "worst_index": worst,
    }
    if flips and flips[0] is not None:
        out["flip"] = float(np.mean(flips))
    return out


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


def lr_factor(settings: SkinnedLodSettings, it: int) -> float:
    """The rates' decay at step ``it``: ``lr_final ** (it / iterations)``, or nvdiffmodeling's
    ``10 ** (-0.0002 it)`` when ``lr_final`` is None."""
    if settings.lr_final is None:
        return 10 ** (-0.0002 * it)
    return settings.lr_final ** (it / max(1, settings.iterations))


class PoseFit:
    """One pose-fitted candidate (c) of a level at one position rate: its parameters and their
    Adam groups (the level's :class:`LevelFit` steps all its candidates with one optimizer).

    Every candidate of a level draws the same poses, views and backgrounds at step ``it`` (seeded
    by ``(seed, it)``), so candidates differ only by their rate, and a resumed fit repeats an
    uninterrupted one."""

    def __init__(self, scene: SkinnedScene, level: SkinnedLevel, lr: float, laplace_weight: float):
        s = scene.settings
        self.scene, self.level, self.lr, self.laplace_weight = scene, level, float(lr), float(laplace_weight)
        self.offset = torch.zeros_like(level.mesh.v_pos).requires_grad_("position" not in s.skip_train)
        self.logits = weight_logits(level.weights).clone().requires_grad_("weights" not in s.skip_train)
        self.material = _material_from(level.material.to_tensors(), "textures" not in s.skip_train)
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.seconds = 0.0
        self.steps = 0
        # Exponential moving averages of the parameters (settings.average), from zero, debiased on read.
        self.averages = [torch.zeros_like(p) for p in self.trained()] if s.average else []

    def trained(self) -> list:
        """The tensors the fit changes: the offset, the logits, the textures (in a fixed order)."""
        return [self.offset, self.logits, *self.material.parameters()]

    def groups(self) -> list:
        """Adam parameter groups of the trained parameters (``base_lr``: the rate before decay)."""
        s = self.scene.settings
        groups = [
            {"params": [self.offset], "lr": self.lr},
            {"params": [self.logits], "lr": s.weight_lr},
            {"params": list(self.material.parameters()), "lr": s.texture_lr},
        ]
        return [dict(g, base_lr=g["lr"]) for g in groups if g["params"] and all(p.requires_grad for p in g["params"])]

    def v_pos(self) -> Tensor:
        return self.level.mesh.v_pos + self.offset * self.scene.radius

    def loss(self, draw: StepDraw) -> Tensor:
        """A step's loss: the image loss of its draw (:func:`step_draw`) plus the relative Laplacian."""
        image = step_loss(self.scene, self.level, self.v_pos(), simplex_weights(self.logits), self.material, draw)
        return image + self.laplace_weight * laplacian_loss(self.offset, self.level.mesh.t_pos_idx)

    def stepped(self, loss: float, seconds: float) -> None:
        """After the optimizer's step: textures back in range, the loss and time recorded."""
        self.material.clamp_()
        self.last = loss
        self.first = loss if self.first is None else self.first
        self.seconds += seconds
        self.steps += 1
        decay = self.scene.settings.average
        with torch.no_grad():
            for average, value in zip(self.averages, self.trained()):
                average.mul_(decay).add_(value.detach(), alpha=1 - decay)

    def current(self) -> list:
        """The trained tensors the level takes: their debiased averages, or their last values."""
        if not self.averages or self.steps == 0:
            return [p.detach() for p in self.trained()]
        debias = 1 - self.scene.settings.average**self.steps
        return [a / debias for a in self.averages]

    def result(self) -> SkinnedLevel:
        """The candidate as a level (weights pruned to the writer's form)."""
        offset, logits, *textures = self.current()
        num_joints = self.scene.skin.num_joints
        joints, weights = prune_weights(self.level.joints, simplex_weights(logits), num_joints)
        mesh = self.level.mesh.copy(v_pos=self.level.mesh.v_pos + offset * self.scene.radius)
        material = _material_from(self.material.to_tensors(), False)
        with torch.no_grad():
            for param, value in zip(material.parameters(), textures):
                param.copy_(value)
        out = SkinnedLevel(self.level.budget, mesh, joints, weights, material)
        out.report = {
            "lr": self.lr,
            "laplace_weight": self.laplace_weight,
            "train_loss": {"first": self.first, "last": self.last},
            "seconds_optimise": self.seconds,
        }
        return out

    def state_dict(self) -> dict:
        return {
            "offset": self.offset.detach().clone(),
            "logits": self.logits.detach().clone(),
            "material": {k: v.detach().clone() for k, v in self.material.state_dict().items()},
            "loss": (self.first, self.last, self.seconds),
            "steps": self.steps,
            "averages": [a.clone() for a in self.averages],
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.offset.copy_(state["offset"])
            self.logits.copy_(state["logits"])
        self.material.load_state_dict(state["material"])
        self.first, self.last, self.seconds = state["loss"]
        self.steps, self.averages = state["steps"], [a.clone() for a in state["averages"]]


@dataclass
class StepDraw:
    """What step ``it`` trains on: a training pose, ``batch`` training views, random backgrounds
    ``[B, H, W, 3]`` and the original's renders ``[B, H, W, 4]`` (shared by a level's candidates)."""

    pose: int
    pick: Tensor
    background: Tensor
    reference: Tensor


def step_draw(scene: SkinnedScene, it: int) -> StepDraw:
    """Step ``it``'s draw, seeded by ``(seed, it)``."""
    s, cams = scene.settings, scene.cameras["train"]
    generator = torch.Generator().manual_seed(s.seed + 17 + 104729 * it)
    pose = int(torch.randint(0, s.train_poses, (), generator=generator))
    pick = torch.randperm(cams.batch_size, generator=generator)[: s.batch]
    bg = torch.rand(pick.numel(), s.res, s.res, 3, generator=generator)
    return StepDraw(pose, pick, bg, scene.reference("train", pose, cams[pick]))


def step_loss(scene: SkinnedScene, level: SkinnedLevel, v_pos: Tensor, weights: Tensor, material, draw: StepDraw):
    """The image loss (log-L1 over the draw's backgrounds plus the alpha MSE) of the level with bind
    positions ``v_pos`` and ``weights`` in the draw's pose and views."""
    posed = scene.posed(v_pos, level.joints, weights, scene.matrices["train"][draw.pose])
    pred = scene.render(level.mesh.copy(v_pos=posed), material, scene.cameras["train"][draw.pick], draw.background)
    ref = draw.reference
    ref_rgb = torch.lerp(draw.background, ref[..., :3], ref[..., 3:4])
    if scene.settings.loss == "srgb_l2":  # the held-out metric's squared error
        color = (linear_to_srgb(pred[..., :3].clamp(0, 1)) - linear_to_srgb(ref_rgb.clamp(0, 1))).square().mean()
    else:
        color = (_tonemap(pred[..., :3]) - _tonemap(ref_rgb)).abs().mean()
    alpha = (pred[..., 3:] - ref[..., 3:]).square().mean()
    return color + alpha


def automatic_laplace_weight(scene: SkinnedScene, level: SkinnedLevel) -> float:
    """``settings.laplace_weight``, or the rule of :data:`LAPLACE_SHARE` with the level's measured
    image loss over its first steps' poses and views."""
    s = scene.settings
    if s.laplace_weight is not None:
        return float(s.laplace_weight)
    with torch.no_grad():
        losses = [
            float(step_loss(scene, level, level.mesh.v_pos, level.weights, level.material, step_draw(scene, it)))
            for it in range(2)
        ]
    lap = float(laplacian_loss(level.mesh.v_pos / scene.radius, level.mesh.t_pos_idx))
    return LAPLACE_SHARE * float(np.mean(losses)) / max(lap, 1e-12)


def selection_steps(settings: SkinnedLodSettings) -> list:
    """Steps after which the rate candidates are halved (the better half on validation goes on):
    ``R = ceil(log2 K)`` rounds at ``iterations * r / (R + 1)``, r = 1..R (none for one candidate)."""
    rounds = math.ceil(math.log2(len(candidate_rates(settings)))) if len(candidate_rates(settings)) > 1 else 0
    return [settings.iterations * r // (rounds + 1) for r in range(1, rounds + 1)]


def candidate_rates(settings: SkinnedLodSettings) -> list:
    """The position rates tried per level: ``lr_candidates``, or ``[lr]``."""
    return [float(x) for x in settings.lr_candidates] if settings.lr_candidates else [float(settings.lr)]


def validation_psnr(scene: SkinnedScene, level: SkinnedLevel) -> dict:
    """Mean and worst-pose PSNR on the validation poses x views (choices, never reported as a score)."""
    scores = evaluate(scene, level.mesh, level.joints, level.weights, level.material, split="validation")
    return {"psnr": scores["psnr"], "worst_pose_psnr": scores["worst_pose_psnr"]}


class LevelFit:
    """One level from start to end: the baseline (a) with its scores, the rate candidates (c)
    stepped together and halved on validation at :func:`selection_steps`, and the never-worse
    choice between the survivor and the start. Stepped by :meth:`step` (the benchmark's loop, or
    the command's Trainer); :meth:`state_dict` / :meth:`load_state_dict` carry it across a resume."""

    def __init__(self, scene: SkinnedScene, budget: int, flip: bool = False, saved: Optional[dict] = None):
        """``saved``: a :meth:`state_dict` to resume (its baseline is taken, not rebuilt)."""
        self.scene, self.flip = scene, flip
        if saved is None:
            start = time.perf_counter()
            self.baseline = prepare_level(scene, budget)
            self.seconds_prepare = time.perf_counter() - start
            self.baseline.report = _scores(scene, self.baseline, flip)
            self.baseline.report["validation"] = validation_psnr(scene, self.baseline)
            self.laplace_weight = automatic_laplace_weight(scene, self.baseline)
        else:
            self.baseline = level_from_state(saved["baseline"])
            self.seconds_prepare, self.laplace_weight = saved["seconds_prepare"], saved["laplace_weight"]
        rates = candidate_rates(scene.settings)
        self.candidates = [PoseFit(scene, self.baseline, lr, self.laplace_weight) for lr in rates]
        groups = [dict(g, candidate=k) for k, c in enumerate(self.candidates) for g in c.groups()]
        # One Adam over every candidate's groups (disjoint parameters: a candidate out of the
        # running gets no gradient, and Adam skips it).
        self.optimizer = torch.optim.Adam(groups) if groups else None
        self.active = list(range(len(self.candidates)))
        self.selection: list = []  # per round: {"step", "validation_psnr": {lr: psnr}, "kept_lr": [lr]}
        self.best: Optional[dict] = None  # keep_best: the best state seen at a selection step
        self.iteration = 0
        if saved is not None:
            self.load_state_dict(saved)

    @property
    def done(self) -> bool:
        return self.iteration >= self.scene.settings.iterations or self.optimizer is None

    def loss(self) -> Tensor:
        """The summed losses of the active candidates at this step, the rates decayed for it."""
        self._start = time.perf_counter()
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(self.scene.settings, self.iteration)
        draw = step_draw(self.scene, self.iteration)  # the original rendered once for all candidates
        self._losses = [self.candidates[k].loss(draw) for k in self.active]
        return torch.stack(self._losses).sum()

    def stepped(self) -> None:
        """After the optimizer's step: candidates record it; the candidates are halved at a selection step."""
        seconds = (time.perf_counter() - self._start) / len(self.active)
        for k, loss in zip(self.active, self._losses):
            self.candidates[k].stepped(float(loss.detach()), seconds)
        self.iteration += 1
        if self.iteration in selection_steps(self.scene.settings):
            self._halve()

    def step(self) -> float:
        """One step of every active candidate (:meth:`loss`, backward, Adam, :meth:`stepped`)."""
        loss = self.loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.stepped()
        return float(loss.detach())

    def _halve(self) -> None:
        results = {k: self.candidates[k].result() for k in self.active}
        scores = {k: validation_psnr(self.scene, level)["psnr"] for k, level in results.items()}
        top = max(scores, key=scores.get)
        if self.scene.settings.keep_best and (self.best is None or scores[top] > self.best["validation_psnr"]):
            results[top].report["step"] = self.iteration
            self.best = {"validation_psnr": scores[top], "level": level_state(results[top])}
        ranked = sorted(self.active, key=lambda k: -scores[k])
        self.active = sorted(ranked[: max(1, math.ceil(len(ranked) / 2))])
        self.selection.append(
            {
                "step": self.iteration,
                "validation_psnr": {self.candidates[k].lr: round(v, 3) for k, v in scores.items()},
                "kept_lr": [self.candidates[k].lr for k in self.active],
            }
        )
        log.info("skinned level: after %d steps kept position rates %s (validation %s)", self.iteration,
                 self.selection[-1]["kept_lr"], self.selection[-1]["validation_psnr"])  # fmt: skip

    def finish(self) -> tuple:
        """``(baseline, fitted, final)``: the survivor's result (c) scored, and the level written,
        the better of (a) and (c) on validation (never worse); ``final.report`` holds the choice."""
        s = self.scene.settings
        while len(self.active) > 1:  # no training (iterations 0 or all skipped): choose now
            self._halve()
        fitted = self.candidates[self.active[0]].result()
        fitted.report["step"] = self.iteration
        validation = validation_psnr(self.scene, fitted)
        if self.best is not None and self.best["validation_psnr"] > validation["psnr"]:
            # keep_best: an earlier state of a candidate scored higher on validation than the end.
            fitted = level_from_state(self.best["level"])
            validation = validation_psnr(self.scene, fitted)
        fitted.report.update(_scores(self.scene, fitted, self.flip))
        fitted.report["validation"] = validation
        fitted.report["seconds_prepare"] = self.seconds_prepare
        fitted.report["lr_selection"] = self.selection
        fitted.report["seconds_optimise"] = sum(c.seconds for c in self.candidates)
        kept = (
            "pose_fitted"
            if fitted.report["validation"]["psnr"] > self.baseline.report["validation"]["psnr"]
            else "start"
        )
        final = fitted if kept == "pose_fitted" else self.baseline
        final.report = dict(final.report, kept=kept)
        log.info(
            "skinned level %d triangles (%d steps, position rate %g): held-out PSNR %.2f dB (bind-pose QEM %.2f dB), "
            "worst pose %.2f dB (%.2f dB); kept the %s",
            self.baseline.mesh.num_faces, s.iterations, fitted.report["lr"], fitted.report["psnr"],
            self.baseline.report["psnr"], fitted.report["worst_pose_psnr"], self.baseline.report["worst_pose_psnr"],
            kept,
        )  # fmt: skip
        return self.baseline, fitted, final

    def state_dict(self) -> dict:
        return {
            "baseline": level_state(self.baseline),
            "seconds_prepare": self.seconds_prepare,
            "laplace_weight": self.laplace_weight,
            "iteration": self.iteration,
            "active": list(self.active),
            "selection": list(self.selection),
            "candidates": [c.state_dict() for c in self.candidates],
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "best": self.best,
        }

    def load_state_dict(self, state: dict) -> None:
        self.iteration, self.active = int(state["iteration"]), list(state["active"])
        self.selection, self.best = list(state["selection"]), state["best"]
        for candidate, saved in zip(self.candidates, state["candidates"]):
            candidate.load_state_dict(saved)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])


def level_state(level: SkinnedLevel) -> dict:
    """A level as plain tensors and its report (checkpoints)."""
    mesh = level.mesh
    return {
        "budget": level.budget,
        "mesh": {"v_pos": mesh.v_pos, "t_pos_idx": mesh.t_pos_idx, "v_tex": mesh.v_tex, "t_tex_idx": mesh.t_tex_idx},
        "joints": level.joints,
        "weights": level.weights,
        "textures": level.material.to_tensors(),
        "report": level.report,
    }


def level_from_state(state: dict) -> SkinnedLevel:
    """The level :func:`level_state` saved."""
    mesh = Mesh(**{k: v.clone() for k, v in state["mesh"].items()})
    textures = _material_from(state["textures"], False)
    level = SkinnedLevel(state["budget"], mesh, state["joints"], state["weights"], textures)
    level.report = dict(state["report"])
    return level


def fit_level(scene: SkinnedScene, level: SkinnedLevel) -> SkinnedLevel:
    """Pose-fitted (c) of ``level`` at the position rate ``settings.lr`` (no candidates, no choice)."""
    fit = PoseFit(scene, level, scene.settings.lr, automatic_laplace_weight(scene, level))
    groups = fit.groups()
    optimizer = torch.optim.Adam(groups) if groups else None
    for it in range(scene.settings.iterations if optimizer else 0):
        start = time.perf_counter()
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(scene.settings, it)
        loss = fit.loss(step_draw(scene, it))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        fit.stepped(float(loss.detach()), time.perf_counter() - start)
    return fit.result()


def skinned_lod(scene: SkinnedScene, budgets: Sequence[int], flip: bool = False) -> list:
    """Every level (finest first) as ``(baseline, fitted, final)`` :class:`SkinnedLevel` triples
    with their reports (:meth:`LevelFit.finish`)."""
    out = []
    for budget in budgets:
        fit = LevelFit(scene, budget, flip)
        while not fit.done:
            fit.step()
        out.append(fit.finish())
    return out


def _scores(scene: SkinnedScene, level: SkinnedLevel, flip: bool = False) -> dict:
    scores = evaluate(scene, level.mesh, level.joints, level.weights, level.material, flip=flip)
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
    "level_from_state",
    "level_state",
    "level_skin",
    "prepare_level",
    "prune_weights",
    "random_poses",
    "LevelFit",
    "PoseFit",
    "skinned_lod",
    "transfer_weights",
]
