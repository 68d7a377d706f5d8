"""Pinhole cameras in the NeRF-synthetic (Blender/OpenGL) convention.

A camera-to-world matrix ``c2w [4, 4]`` places the camera; it looks down its local -Z axis with
+Y up. The projection is OpenGL's with the y axis flipped, so that image row 0 (clip-space
y = -1, where nvdiffrast starts) is the *top* of the picture, as in image files. Where cameras
are placed (orbits, random views, the reference-mesh cameras) is :mod:`.camera_distributions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor


def perspective(fovy: Union[float, Tensor], aspect: float, near: float = 0.1, far: float = 1000.0) -> Tensor:
    """OpenGL perspective projection with flipped y: ``[4, 4]`` (or ``[B, 4, 4]`` for a ``[B]`` fovy).

    Args:
        fovy: vertical field of view in radians.
        aspect: width / height.
    """
    fovy = torch.as_tensor(fovy, dtype=torch.float32)
    y = torch.tan(fovy / 2)
    proj = torch.zeros(fovy.shape + (4, 4), dtype=torch.float32, device=fovy.device)
    proj[..., 0, 0] = 1.0 / (y * aspect)
    proj[..., 1, 1] = -1.0 / y
    proj[..., 2, 2] = -(far + near) / (far - near)
    proj[..., 2, 3] = -(2 * far * near) / (far - near)
    proj[..., 3, 2] = -1.0
    return proj


def perspective_from_intrinsics(
    fx: Tensor,
    fy: Tensor,
    cx: Tensor,
    cy: Tensor,
    width: Tensor,
    height: Tensor,
    near: float = 0.1,
    far: float = 1000.0,
) -> Tensor:
    """The projection of :func:`perspective` for pinhole intrinsics in pixels: ``[B, 4, 4]`` from ``[B]`` each.

    Pixel coordinates are OpenCV/COLMAP's: x right, y down, ``(0.5, 0.5)`` the centre of the
    top-left pixel, so a camera-space point ``(X, Y, Z)`` (OpenCV axes) lands at
    ``u = fx X / Z + cx``, ``v = fy Y / Z + cy``. An off-centre principal point shifts the
    frustum (``proj[0, 2]``, ``proj[1, 2]``); ``cx = W / 2, cy = H / 2`` gives :func:`perspective`.
    Only ratios to ``width``/``height`` matter, so images may be resampled to any size.
    """
    fx, fy, cx, cy, width, height = (torch.as_tensor(v, dtype=torch.float64) for v in (fx, fy, cx, cy, width, height))
    proj = torch.zeros(fx.shape + (4, 4), dtype=torch.float64)
    proj[..., 0, 0] = 2.0 * fx / width
    proj[..., 0, 2] = 1.0 - 2.0 * cx / width
    proj[..., 1, 1] = -2.0 * fy / height
    proj[..., 1, 2] = 1.0 - 2.0 * cy / height
    proj[..., 2, 2] = -(far + near) / (far - near)
    proj[..., 2, 3] = -(2 * far * near) / (far - near)
    proj[..., 3, 2] = -1.0
    return proj.float()


def look_at(eye: Tensor, target: Tensor, up: Optional[Tensor] = None) -> Tensor:
    """Camera-to-world ``[..., 4, 4]`` for cameras at ``eye [..., 3]`` looking at ``target [..., 3]``.

    ``up`` defaults to +Y; where the view direction is parallel to it, +Z is used instead.
    """
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.as_tensor(target, dtype=torch.float32, device=eye.device).expand_as(eye)
    if up is None:
        up = torch.tensor([0.0, 1.0, 0.0], device=eye.device)
    up = torch.as_tensor(up, dtype=torch.float32, device=eye.device).expand_as(eye)
    back = torch.nn.functional.normalize(eye - target, dim=-1)  # camera +Z points away from the target
    right = torch.linalg.cross(up, back, dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    alt_up = torch.tensor([0.0, 0.0, 1.0], device=eye.device).expand_as(eye)
    right = torch.where(degenerate, torch.linalg.cross(alt_up, back, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    true_up = torch.linalg.cross(back, right, dim=-1)
    c2w = torch.zeros(eye.shape[:-1] + (4, 4), dtype=torch.float32, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = right, true_up, back, eye
    c2w[..., 3, 3] = 1.0
    return c2w


@dataclass
class Cameras:
    """A batch of pinhole cameras sharing one image resolution.

    Attributes:
        c2w: ``[B, 4, 4]`` camera-to-world (NeRF-synthetic convention).
        proj: ``[B, 4, 4]`` projection (see :func:`perspective`).
        resolution: ``(H, W)`` in pixels.
    """

    c2w: Tensor
    proj: Tensor
    resolution: Tuple[int, int]

    @classmethod
    def from_fov(
        cls, c2w: Tensor, fovy: Union[float, Tensor], resolution: Sequence[int], near: float = 0.1, far: float = 1000.0
    ) -> "Cameras":
        """Cameras from camera-to-world ``[B, 4, 4]`` (or ``[4, 4]``) and a vertical fov in radians."""
        c2w = torch.as_tensor(c2w, dtype=torch.float32)
        if c2w.dim() == 2:
            c2w = c2w[None]
        if c2w.shape[-2:] != (4, 4):
            raise ValueError(f"c2w must be [B, 4, 4], got {tuple(c2w.shape)}")
        height, width = int(resolution[0]), int(resolution[1])
        fovy = torch.as_tensor(fovy, dtype=torch.float32).expand(c2w.shape[0])
        proj = perspective(fovy, width / height, near, far).to(c2w.device)
        return cls(c2w=c2w, proj=proj, resolution=(height, width))

    @staticmethod
    def fovy_from_fovx(fovx: float, resolution: Sequence[int]) -> float:
        """NeRF-synthetic stores the horizontal ``camera_angle_x``; convert for ``from_fov``."""
        height, width = resolution
        return 2.0 * math.atan(math.tan(fovx / 2.0) * height / width)

    @property
    def batch_size(self) -> int:
        return int(self.c2w.shape[0])

    @property
    def mv(self) -> Tensor:
        """``[B, 4, 4]`` world-to-camera (view) matrices."""
        return torch.linalg.inv(self.c2w)

    @property
    def mvp(self) -> Tensor:
        """``[B, 4, 4]`` world-to-clip matrices."""
        return self.proj @ self.mv

    @property
    def campos(self) -> Tensor:
        """``[B, 3]`` camera centres in world space."""
        return self.c2w[:, :3, 3]

    def project(self, points: Tensor) -> Tensor:
        """World points ``[V, 3]`` (or ``[B, V, 3]``) to clip space ``[B, V, 4]``."""
        homogeneous = torch.nn.functional.pad(points, (0, 1), value=1.0)
        if homogeneous.dim() == 2:
            homogeneous = homogeneous[None].expand(self.batch_size, -1, -1)
        return homogeneous @ self.mvp.transpose(1, 2)

    def to(self, device: Union[str, torch.device]) -> "Cameras":
        return Cameras(self.c2w.to(device), self.proj.to(device), self.resolution)

    def __getitem__(self, index) -> "Cameras":
        c2w, proj = self.c2w[index], self.proj[index]
        if c2w.dim() == 2:
            c2w, proj = c2w[None], proj[None]
        return Cameras(c2w, proj, self.resolution)
