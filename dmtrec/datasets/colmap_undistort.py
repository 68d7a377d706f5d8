"""Lens distortion of COLMAP's SIMPLE_RADIAL, RADIAL and OPENCV cameras, and the undistorted-photo cache.

A distorted photo is resampled once to a pinhole image of the same size and focal lengths
(:func:`undistort_image`) and kept in the user cache (:func:`dmtrec.core.cache.cache_dir`
``/colmap``, keyed by :func:`undistorted_cache_path`); :func:`distort_image` is the inverse,
used to write distorted test captures.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence, Tuple

import torch
from torch import Tensor

from dmtrec.core.cache import cache_dir
from dmtrec.io.colmap_model import ColmapCamera

_UNDISTORT_VERSION = 1


def distort(camera: ColmapCamera, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
    """COLMAP's distortion of normalised image coordinates ``(x, y) = ((u - cx) / fx, (v - cy) / fy)``."""
    k = camera.distortion
    r2 = x * x + y * y
    if camera.model == "SIMPLE_RADIAL":
        radial = k[0] * r2
        return x + x * radial, y + y * radial
    if camera.model == "RADIAL":
        radial = k[0] * r2 + k[1] * r2 * r2
        return x + x * radial, y + y * radial
    if camera.model == "OPENCV":
        k1, k2, p1, p2 = k
        radial = k1 * r2 + k2 * r2 * r2
        xy = x * y
        return (
            x + x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x * x),
            y + y * radial + 2 * p2 * xy + p1 * (r2 + 2 * y * y),
        )
    return x, y


def _normalized_pixel_grid(camera: ColmapCamera, height: int, width: int) -> Tuple[Tensor, Tensor]:
    """Normalised coordinates ``(x, y)`` ``[H, W]`` float64 of the pixel centres of ``camera``."""
    fx, fy, cx, cy = camera.intrinsics
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5, torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij"
    )
    return (u - cx) / fx, (v - cy) / fy


def _sample_at(img: Tensor, camera: ColmapCamera, x: Tensor, y: Tensor) -> Tensor:
    """Bilinear samples of ``img [H, W, C]`` at normalised coordinates ``(x, y) [H, W]``, border repeated."""
    height, width = img.shape[:2]
    fx, fy, cx, cy = camera.intrinsics
    # grid_sample's align_corners=False grid: -1 and 1 are the outer edges of the border pixels.
    grid = torch.stack([2.0 * (x * fx + cx) / width - 1.0, 2.0 * (y * fy + cy) / height - 1.0], -1)
    out = torch.nn.functional.grid_sample(
        img.permute(2, 0, 1)[None].double(), grid[None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0].permute(1, 2, 0).to(img.dtype).contiguous()


def undistort_image(img: Tensor, camera: ColmapCamera) -> Tensor:
    """``[H, W, C]`` photo of ``camera`` (its size) resampled (bilinear) to the pinhole camera with
    the same size, focal lengths and principal point. Pixels whose source falls outside the photo
    repeat its border (COLMAP's undistorter would crop; keeping the size keeps the intrinsics)."""
    x, y = _normalized_pixel_grid(camera, img.shape[0], img.shape[1])
    return _sample_at(img, camera, *distort(camera, x, y))


def distort_image(img: Tensor, camera: ColmapCamera, iterations: int = 30) -> Tensor:
    """The inverse of :func:`undistort_image`: a pinhole ``[H, W, C]`` image resampled to what
    ``camera`` would see (for synthetic distorted captures). Each output pixel's undistorted
    position is found by fixed-point iteration of :func:`distort` (converges for the mild
    distortion of real lenses)."""
    xd, yd = _normalized_pixel_grid(camera, img.shape[0], img.shape[1])
    x, y = xd.clone(), yd.clone()
    for _ in range(iterations):
        dx, dy = distort(camera, x, y)
        x, y = x - (dx - xd), y - (dy - yd)
    return _sample_at(img, camera, x, y)


def undistorted_cache_path(camera: ColmapCamera, sources: Sequence[Path]) -> Path:
    """Where the undistorted RGBA of ``sources`` (photo, mask) is cached: keyed by the files' paths,
    sizes and times and by the camera, so an edited photo or model is undistorted afresh."""
    key = hashlib.sha1(repr((_UNDISTORT_VERSION, camera.model, camera.params, camera.width, camera.height)).encode())
    for path in sources:
        stat = path.stat()
        key.update(repr((str(path.resolve()), stat.st_size, stat.st_mtime_ns)).encode())
    return cache_dir() / "colmap" / f"{key.hexdigest()}.png"
