"""The normalisation of a COLMAP scene into the tet grid.

The object's centre is the point nearest every camera's optical axis, its radius a high
percentile of the sparse points' distances to it (:func:`estimate_object_sphere`; only points
seen inside the masks where the model has 2D observations, :func:`points_in_masks`, so a table
or room does not count). The world is turned so that the cameras' mean up vector is +Y
(:func:`up_alignment`), shifted and scaled so that this sphere becomes the unit sphere
(:class:`Normalization`; a ``model.dmtet.scale`` of 2.2-2.5 leaves a margin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from dmtrec.io.colmap_model import ColmapModel, camera_to_world

from .base import axes_focus

# The sphere the object is scaled to; DMTet's grid spans a cube of edge model.dmtet.scale.
NORMALIZED_RADIUS = 1.0


@dataclass(frozen=True)
class Normalization:
    """The similarity from COLMAP's world to dmtrec's: ``x' = scale * rotation @ (x - center)``.

    ``center`` and ``radius`` are the object's sphere in COLMAP's units; ``scale`` maps it to
    the sphere of radius :data:`NORMALIZED_RADIUS` at the origin.
    """

    center: np.ndarray
    radius: float
    rotation: np.ndarray

    @property
    def scale(self) -> float:
        return NORMALIZED_RADIUS / self.radius

    @property
    def matrix(self) -> np.ndarray:
        """``[4, 4]`` homogeneous form."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = -self.scale * self.rotation @ self.center
        return m

    def points(self, xyz: np.ndarray) -> np.ndarray:
        """World points ``[N, 3]`` in dmtrec's frame."""
        return (xyz - self.center) @ (self.scale * self.rotation).T

    def cameras(self, c2w: np.ndarray) -> np.ndarray:
        """Camera-to-world ``[N, 4, 4]`` in dmtrec's frame (rotation kept orthonormal)."""
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[:, :3, :3] = self.rotation @ out[:, :3, :3]
        out[:, :3, 3] = self.points(out[:, :3, 3])
        return out


def estimate_object_sphere(c2w: np.ndarray, points: np.ndarray, percentile: float = 95.0) -> Tuple[np.ndarray, float]:
    """``(center [3], radius)`` of the object the cameras ``c2w [N, 4, 4]`` (OpenGL) look at.

    The centre is the point nearest (least squares) every optical axis. The radius is the
    ``percentile`` of the distances to it of the sparse ``points [P, 3]`` that lie nearer than
    the median camera distance (points beyond the cameras are background); with fewer than
    10 such points, the radius of the sphere the narrowest camera cone holds at that distance.
    """
    origins, axes = c2w[:, :3, 3], -c2w[:, :3, 2]
    center = axes_focus(origins, axes)
    distance = float(np.median(np.linalg.norm(origins - center, axis=-1)))
    near = np.linalg.norm(points - center, axis=-1) if len(points) else np.zeros(0)
    near = near[near < distance]
    if len(near) >= 10:
        return center, float(np.percentile(near, percentile))
    return center, distance * 0.4  # ~ a 45 degree cone's inscribed sphere


def up_alignment(c2w: np.ndarray) -> np.ndarray:
    """``[3, 3]`` rotation turning the cameras' mean up vector (OpenGL +Y) to +Y.

    Photos are mostly taken upright, so this makes reconstructions export upright. Where the
    up vectors cancel out (cameras all around, rolled at random) it is the identity.
    """
    up = c2w[:, :3, 1].mean(0)
    norm = np.linalg.norm(up)
    if norm < 0.5:
        return np.eye(3)
    up = up / norm
    target = np.array([0.0, 1.0, 0.0])
    axis, cos = np.cross(up, target), float(up @ target)
    if np.linalg.norm(axis) < 1e-12:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + skew + skew @ skew / (1.0 + cos)


def points_in_masks(model: ColmapModel, coverage: Dict[int, np.ndarray], vote: float = 0.5) -> np.ndarray:
    """``[N]`` bool over ``model.points``: observed inside the object masks in at least ``vote`` of
    the images (of ``coverage``) that see them.

    ``coverage`` maps image ids to ``[H, W]`` masks at the camera's size (the photo as
    registered, distortion included, like the 2D points). Points no masked image sees are kept.
    """
    inside = np.zeros(len(model.points.ids))
    seen = np.zeros(len(model.points.ids))
    row_of = {int(i): row for row, i in enumerate(model.points.ids)}
    for image_id, mask in coverage.items():
        image = model.images[image_id]
        observed = image.point3d_ids >= 0
        if not observed.any():
            continue
        rows = np.array([row_of.get(int(i), -1) for i in image.point3d_ids[observed]])
        xy = np.floor(image.xys[observed]).astype(np.int64)
        u, v = np.clip(xy[:, 0], 0, mask.shape[1] - 1), np.clip(xy[:, 1], 0, mask.shape[0] - 1)
        known = rows >= 0
        np.add.at(seen, rows[known], 1.0)
        np.add.at(inside, rows[known], (mask[v, u] > 0.5)[known].astype(np.float64))
    return (seen == 0) | (inside >= vote * seen)


def normalization(
    model: ColmapModel,
    center: Optional[Sequence[float]] = None,
    radius: Optional[float] = None,
    object_points: Optional[np.ndarray] = None,
) -> Normalization:
    """The :class:`Normalization` of ``model``; ``center`` / ``radius`` (COLMAP units) override the
    estimate, which uses the sparse points selected by the bool ``object_points [N]`` (default all)."""
    c2w = np.stack([camera_to_world(image) for image in model.images.values()])
    xyz = model.points.xyz if object_points is None else model.points.xyz[object_points]
    estimated_center, estimated_radius = estimate_object_sphere(c2w, xyz)
    center = estimated_center if center is None else np.asarray(center, dtype=np.float64)
    if center.shape != (3,) or not np.isfinite(center).all():
        raise ValueError(f"center: expected three finite numbers, got {center.tolist()}")
    radius = estimated_radius if radius is None else float(radius)
    if not radius > 0 or not math.isfinite(radius):
        raise ValueError(f"radius: must be positive, got {radius}")
    return Normalization(center=center, radius=radius, rotation=up_alignment(c2w))
