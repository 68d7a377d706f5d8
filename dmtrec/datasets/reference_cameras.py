"""The cameras nvdiffrec's reference-mesh experiments (spot, bob, ...) render from.

Training views: the object gets a uniformly random rotation and a translation jitter in
``[-jitter, jitter]^3``, then is pushed ``cam_radius`` in front of the camera
(nvdiffrec's ``DatasetMesh._random_scene``). Validation views: a fixed orbit at 0.4 rad
elevation looking at the origin (``DatasetMesh._rotate_scene``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from dmtrec.render.camera import orbit_c2w

ORBIT_ELEVATION = 0.4


def random_rotation(generator: torch.Generator, count: Optional[int] = None) -> Tensor:
    """A ``[3, 3]`` (or ``[count, 3, 3]``) float64 rotation, uniform over SO(3) (Haar measure).

    A normalized 4D Gaussian is a uniform unit quaternion, whose rotation is uniform.
    """
    w, x, y, z = torch.nn.functional.normalize(
        torch.randn((count or 1, 4), generator=generator, dtype=torch.float64), dim=-1
    ).unbind(-1)
    rotation = torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    return rotation if count is not None else rotation[0]


def random_view_c2w(generator: torch.Generator, cam_radius: float, translation_jitter: float) -> Tensor:
    """``[4, 4]`` float32 camera-to-world of one random training view.

    The world-to-camera transform is ``translate(0, 0, -cam_radius) @ [R | t]``: the object
    rotated by ``R`` and shifted by ``t`` sits ``cam_radius`` down the camera's -Z axis.
    """
    object_to_view = torch.eye(4, dtype=torch.float64)
    object_to_view[:3, :3] = random_rotation(generator)
    object_to_view[:3, 3] = (torch.rand(3, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * translation_jitter
    object_to_view[2, 3] -= cam_radius
    return torch.linalg.inv(object_to_view).float()


def orbit_view_c2w(views: int, cam_radius: float, phase: float = 0.0) -> Tensor:
    """``[views, 4, 4]`` cameras evenly spaced on the validation orbit.

    ``phase`` (in steps) shifts the azimuths, e.g. 0.5 puts test views between validation views.
    """
    steps = torch.arange(views, dtype=torch.float32) + phase
    azimuth = -2.0 * math.pi * steps / views
    return orbit_c2w(azimuth, torch.full_like(azimuth, ORBIT_ELEVATION), cam_radius)
