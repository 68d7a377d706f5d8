"""Where cameras are placed: every camera distribution of dmtrec, in one module.

* :func:`orbit_c2w`, :func:`random_orbit_c2w`: cameras on a sphere looking at a target, at
  given angles or uniformly over the sphere's area (within an elevation band).
* :func:`sample_cameras` (``"sphere"``, ``"hemisphere"``) and :func:`orbit_cameras`: the views
  an asset is baked and judged from (``dmtrec bake``, ``dmtrec lod``, figures).
* :func:`random_view_c2w`, :func:`orbit_view_c2w`: the cameras nvdiffrec's reference-mesh
  experiments (spot, bob, ...) render from. Training views: the object gets a uniformly random
  rotation (:func:`random_rotation`) and a translation jitter in ``[-jitter, jitter]^3``, then
  is pushed ``cam_radius`` in front of the camera (nvdiffrec's ``DatasetMesh._random_scene``).
  Validation views: a fixed orbit at :data:`ORBIT_ELEVATION` rad looking at the origin
  (``DatasetMesh._rotate_scene``).

All follow :mod:`dmtrec.render.camera`'s convention (``c2w [..., 4, 4]``, looking down -Z, +Y up).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .camera import Cameras, look_at

ORBIT_ELEVATION = 0.4

DISTRIBUTIONS = ("sphere", "hemisphere")
"""Named view distributions of :func:`sample_cameras`."""

_ELEVATIONS = {"sphere": (-math.pi / 2, math.pi / 2), "hemisphere": (0.0, math.pi / 2)}


def orbit_c2w(
    azimuth: Tensor, elevation: Tensor, radius: Union[float, Tensor], target: Optional[Tensor] = None
) -> Tensor:
    """Cameras on a sphere around ``target`` looking at it: ``[N, 4, 4]`` from ``[N]`` angles in radians.

    Azimuth turns about +Y starting from +Z; elevation lifts towards +Y.
    """
    azimuth = torch.as_tensor(azimuth, dtype=torch.float32)
    elevation = torch.as_tensor(elevation, dtype=torch.float32, device=azimuth.device)
    direction = torch.stack(
        [torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation), torch.cos(elevation) * torch.cos(azimuth)], -1
    )
    target = torch.zeros(3, device=azimuth.device) if target is None else torch.as_tensor(target, dtype=torch.float32)
    return look_at(target + direction * radius, target)


def random_orbit_c2w(
    n: int,
    radius: float,
    generator: torch.Generator,
    elevation_range: Tuple[float, float] = (-math.pi / 2, math.pi / 2),
) -> Tensor:
    """``n`` cameras uniformly distributed over the sphere's area (within ``elevation_range``) looking at the origin."""
    lo, hi = (math.sin(e) for e in elevation_range)
    u = torch.rand(n, 2, generator=generator)
    elevation = torch.asin(lo + (hi - lo) * u[:, 0])
    azimuth = 2 * math.pi * u[:, 1]
    return orbit_c2w(azimuth, elevation, radius)


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


def sample_cameras(
    n: int,
    distribution: str = "sphere",
    radius: float = 3.0,
    fovy: float = 45.0,
    resolution: Union[int, Sequence[int]] = 256,
    seed: int = 0,
    target: Optional[Sequence[float]] = None,
    near: float = 0.1,
    far: float = 1000.0,
) -> Cameras:
    """``n`` cameras drawn from a named distribution, looking at ``target`` (default the origin).

    Args:
        n: number of views (>= 1).
        distribution: ``"sphere"`` (uniform over the sphere's area) or ``"hemisphere"`` (upper half).
        radius: distance from ``target``.
        fovy: vertical field of view in **degrees**.
        resolution: ``H = W`` or ``(H, W)``.
        seed: the same seed gives the same cameras; use different seeds for held-out views.
        target: ``[3]`` point the cameras look at (e.g. :func:`mesh_bounds`'s centre).

    Returns:
        :class:`Cameras` with ``c2w [n, 4, 4]``.
    """
    if distribution not in _ELEVATIONS:
        raise ValueError(f"sample_cameras: unknown distribution {distribution!r}; choose one of {DISTRIBUTIONS}")
    if n < 1:
        raise ValueError(f"sample_cameras: n must be >= 1, got {n}")
    generator = torch.Generator().manual_seed(int(seed))
    c2w = random_orbit_c2w(int(n), float(radius), generator, _ELEVATIONS[distribution])
    if target is not None:
        c2w[:, :3, 3] += torch.as_tensor(target, dtype=torch.float32)
    return Cameras.from_fov(c2w, math.radians(fovy), size_hw(resolution), near, far)


def orbit_cameras(
    n: int,
    radius: float = 3.0,
    fovy: float = 45.0,
    resolution: Union[int, Sequence[int]] = 256,
    target: Optional[Sequence[float]] = None,
    elevation: float = ORBIT_ELEVATION,
) -> Cameras:
    """``n`` cameras evenly spaced on an orbit at ``elevation`` radians (for figures and turntables)."""
    azimuth = -2.0 * math.pi * torch.arange(n, dtype=torch.float32) / n
    target_t = None if target is None else torch.as_tensor(target, dtype=torch.float32)
    c2w = orbit_c2w(azimuth, torch.full_like(azimuth, elevation), float(radius), target_t)
    return Cameras.from_fov(c2w, math.radians(fovy), size_hw(resolution))


def size_hw(resolution: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """``(H, W)`` of ``H = W`` or ``(H, W)``."""
    if isinstance(resolution, int):
        return resolution, resolution
    height, width = (int(r) for r in resolution)
    return height, width
