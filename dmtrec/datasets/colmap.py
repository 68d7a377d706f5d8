"""COLMAP captures: a sparse model (``cameras``, ``images``, ``points3D``) beside the photos.

Layout (what ``colmap mapper`` and ``dmtrec poses`` write)::

    folder/images/NAME              the photos, as registered (NAME may hold sub-folders)
    folder/sparse/0/cameras.{bin,txt}
    folder/sparse/0/images.{bin,txt}
    folder/sparse/0/points3D.{bin,txt}   (or directly in folder/sparse/ or folder/)
    folder/masks/NAME.png           optional object masks (or masks/STEM.png; else the photo's alpha)

The sparse model is read by :mod:`dmtrec.io.colmap_model` (poses to OpenGL axes by its
:func:`~dmtrec.io.colmap_model.camera_to_world`). Camera models SIMPLE_PINHOLE, PINHOLE,
SIMPLE_RADIAL, RADIAL and OPENCV are read; distorted photos are undistorted once into the user
cache (:mod:`.colmap_undistort`); other models are rejected. Per-image focal lengths and
principal points go into each view's projection
(:func:`dmtrec.render.camera.perspective_from_intrinsics`). The scene is normalised into the tet
grid by :mod:`.colmap_normalize`; ``center`` and ``radius`` override its estimate of the
object's sphere. Everything is checked when a dataset is built: a broken
folder fails before training with one :class:`DatasetError` line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.atomic import atomic_path
from dmtrec.io.colmap_model import (
    ColmapCamera,
    ColmapImage,
    ColmapModelError,
    camera_to_world,
    find_model,
    read_model,
)
from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.render.camera import Cameras, perspective_from_intrinsics

from .base import (
    ImageViews,
    check_holdout,
    check_view_options,
    evenly_spaced,
    load_rgba,
    read_dataset_image,
    size_text,
    split_frames,
)
from .colmap_normalize import normalization, points_in_masks
from .colmap_undistort import undistort_image, undistorted_cache_path
from .config import ColmapData
from .errors import DatasetError
from .samples import check_background

_INVALID_POINT3D = 2**64 - 1  # COLMAP's kInvalidPoint3DId in images.bin (-1 in images.txt)


# --------------------------------------------------------------------------- readers


# --------------------------------------------------------------------------- writer


# --------------------------------------------------------------------------- poses


# --------------------------------------------------------------------------- normalisation


# --------------------------------------------------------------------------- undistortion


# --------------------------------------------------------------------------- dataset


def find_mask(folder: Path, name: str) -> Optional[Path]:
    """``masks/NAME.png`` (COLMAP's convention) or ``masks/STEM.png`` for image ``NAME``; None if neither exists."""
    for candidate in (folder / "masks" / f"{name}.png", (folder / "masks" / name).with_suffix(".png")):
        if candidate.is_file():
            return candidate
    return None


class ColmapViews(ImageViews):
    """The views of one split of a COLMAP capture, checked and (by default) cached.

    Building it reads the sparse model, locates every registered image (and its mask) and
    decodes the split's images once, checking that each exists, has its camera's size (its
    mask too) and the size of the split's first image; any problem is a :class:`DatasetError`.
    Each sample's ``img`` is the sRGB-decoded photo with the mask (``masks/NAME.png``, first
    channel) or else the photo's alpha as straight alpha.

    Args:
        data: the capture folder (``path``: ``images/``, ``sparse/0/``, optional ``masks/``) and
            its options, as :class:`~dmtrec.datasets.config.ColmapData`: ``downscale``,
            ``holdout``, ``preload`` as for NeRD; ``require_alpha``: an image with neither a mask
            file nor an alpha channel is an error (else it is treated as opaque: only sensible
            where the object fills the frame); ``center``, ``radius``: the object's sphere in the
            model's units, overriding the estimate (see :func:`normalization`).
        split, resolution, background, seed, length, max_frames, near, far: as
            :class:`dmtrec.datasets.nerd.NeRDViews`; frames are the registered images sorted by name.

    Attributes:
        model: the :class:`ColmapModel`; ``normalization``: the :class:`Normalization` applied;
        ``points``: ``[P, 3]`` sparse points in dmtrec's frame.
    """

    def __init__(
        self,
        data: ColmapData,
        split: str = "train",
        resolution: Optional[Sequence[int]] = None,
        background: str = "white",
        seed: int = 0,
        length: Optional[int] = None,
        max_frames: Optional[int] = None,
        near: float = 0.1,
        far: float = 1000.0,
    ):
        folder, downscale, preload, holdout = data.path, data.downscale, data.preload, data.holdout
        require_alpha, center, radius = data.require_alpha, data.center, data.radius
        check_view_options(downscale, resolution, length, max_frames)
        check_holdout(holdout)
        folder = Path(folder)
        self.split = split
        self.background = check_background(background, "background")
        self.seed = int(seed)
        self.require_alpha = require_alpha
        try:
            self.model = read_model(find_model(folder))
        except ColmapModelError as exc:
            raise DatasetError(exc.path, exc.problem) from None

        registered = sorted(self.model.images.values(), key=lambda image: image.name)
        images, masks = [], []
        for image in registered:
            path = folder / "images" / image.name
            if not path.is_file():
                raise DatasetError(
                    path, f"image not found, registered as image {image.id} in {self.model.file('images')}"
                )
            images.append(path)
            masks.append(find_mask(folder, image.name))
        # Sparse points of the background (table, room) would inflate the object's radius: where
        # masks exist, only points seen inside them count (all frames, so every split agrees).
        object_points = None
        if radius is None and (self.model.points.ids.size and any(i.point3d_ids.size for i in registered)):
            object_points = points_in_masks(self.model, self._coverage(registered, images, masks))
            if object_points.sum() < 10:
                object_points = None
        self.normalization = normalization(self.model, center, radius, object_points)
        self.points = self.normalization.points(self.model.points.xyz)
        candidates = split_frames(len(registered), split, holdout)
        if not candidates:
            raise DatasetError(
                self.model.file("images"), f"holdout {holdout} leaves no {split} frames among {len(registered)} images"
            )
        self.frames = evenly_spaced(candidates, max_frames)
        self.entries = [registered[f] for f in self.frames]
        self.image_paths = [images[f] for f in self.frames]
        self.mask_paths = [masks[f] for f in self.frames]
        self.length = length if length is not None else len(self.frames)
        self._decode_all(downscale, resolution, preload, keep_aspect=False)

        cameras = [self.model.cameras[image.camera_id] for image in self.entries]
        fx, fy, cx, cy = (torch.tensor(values, dtype=torch.float64) for values in zip(*(c.intrinsics for c in cameras)))
        width = torch.tensor([c.width for c in cameras], dtype=torch.float64)
        height = torch.tensor([c.height for c in cameras], dtype=torch.float64)
        proj = perspective_from_intrinsics(fx, fy, cx, cy, width, height, near, far)
        self.fovy = (2.0 * torch.atan(height / (2.0 * fy))).float()
        c2w = self.normalization.cameras(np.stack([camera_to_world(image) for image in self.entries]))
        self.cameras = Cameras(c2w=torch.from_numpy(c2w).float(), proj=proj, resolution=self.resolution)

    def _coverage(self, registered: List[ColmapImage], images: List[Path], masks: List[Optional[Path]]):
        """Image id -> ``[H, W]`` mask of the registered images that have a mask file or an alpha channel."""
        coverage = {}
        for image, image_path, mask_path in zip(registered, images, masks):
            if mask_path is not None:
                coverage[image.id] = read_dataset_image(mask_path)[..., 0]
            elif image.point3d_ids.size:
                pixels = read_dataset_image(image_path)
                if pixels.shape[-1] in (2, 4):
                    coverage[image.id] = pixels[..., -1]
        return coverage

    def load(self, slot: int) -> Tensor:
        entry, image_path, mask_path = self.entries[slot], self.image_paths[slot], self.mask_paths[slot]
        camera = self.model.cameras[entry.camera_id]
        sources = [image_path] + ([mask_path] if mask_path is not None else [])
        cached = undistorted_cache_path(camera, sources) if camera.distorted else None
        if cached is not None and cached.is_file():
            return load_rgba(cached, require_alpha=True)
        img = self._load_source(entry, camera, image_path, mask_path)
        if cached is not None:
            img = undistort_image(img, camera)
            with atomic_path(cached) as tmp:
                write_png(tmp, torch.cat([linear_to_srgb(img[..., :3]), img[..., 3:]], dim=-1))
            img = load_rgba(cached, require_alpha=True)  # what later runs read, 8-bit quantisation included
        return img

    def _load_source(self, entry: ColmapImage, camera: ColmapCamera, image_path: Path, mask_path: Optional[Path]):
        if mask_path is None and not self.require_alpha:
            rgba = load_rgba(image_path, require_alpha=False)
        elif mask_path is None:
            try:
                rgba = load_rgba(image_path, require_alpha=True)
            except DatasetError:
                raise DatasetError(
                    image_path,
                    f"no mask (masks/{entry.name}.png) and no alpha channel; add masks "
                    "or set require_alpha: false to train on the whole photo",
                ) from None
        else:
            rgb = load_rgba(image_path, require_alpha=False)[..., :3]
            mask = torch.from_numpy(read_dataset_image(mask_path)[..., :1])
            if mask.shape[:2] != rgb.shape[:2]:
                raise DatasetError(
                    mask_path,
                    f"mask is {size_text(mask.shape)} but its image {image_path.name} is {size_text(rgb.shape)}",
                )
            rgba = torch.cat([rgb, mask], dim=-1).contiguous()
        if tuple(rgba.shape[:2]) != (camera.height, camera.width):
            raise DatasetError(
                image_path,
                f"image is {size_text(rgba.shape)} but its camera {camera.id} in {self.model.file('cameras').name} "
                f"is {camera.width}x{camera.height}",
            )
        return rgba
