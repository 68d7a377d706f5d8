"""NeRF-synthetic folders: ``transforms_{train,val,test}.json`` plus RGBA images.

Layout (Mildenhall et al. 2020, as nvdiffrec reads it)::

    folder/transforms_train.json   {"camera_angle_x": fovx_radians,
                                    "frames": [{"file_path": "./train/r_0",
                                                "transform_matrix": [[4 x 4 camera-to-world]]}, ...]}
    folder/train/r_0.png           RGBA, sRGB-encoded colour, alpha = object mask

``file_path`` may carry the extension or not (then ``<file_path>.png`` or any other
``<file_path>.*`` is used). It is resolved relative to the folder and must stay inside it.
Everything is checked when a dataset is built, so a broken folder fails before training
with one :class:`DatasetError` line naming the file.
"""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.types import PathLike
from dmtrec.render.camera import Cameras

from .base import ImageViews, check_view_options, evenly_spaced, load_rgba
from .config import NeRFSyntheticData
from .errors import DatasetError
from .samples import (
    SPLIT_STREAMS,
    check_background,
)

WORLD_UPS = ("y", "z")
# Blender's NeRF-synthetic scenes are Z-up; nvdiffrec turns them Y-up (x rotated by -90 deg)
# so that reconstructions export upright.
Z_UP_TO_Y_UP = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Transforms:
    """A parsed and checked ``transforms_<split>.json``.

    Attributes:
        path: the JSON file.
        camera_angle_x: horizontal field of view in radians.
        images: one existing image file per frame.
        c2w: ``[N, 4, 4]`` float32 camera-to-world matrices as stored.
    """

    path: Path
    camera_angle_x: float
    images: Tuple[Path, ...]
    c2w: Tensor


def transforms_path(folder: PathLike, split: str) -> Path:
    """The transforms file of ``split``; ``val`` and ``test`` stand in for each other when one is missing."""
    folder = Path(folder)
    if split not in SPLIT_STREAMS:
        raise ValueError(f"split: unknown split {split!r}; choose one of {', '.join(SPLIT_STREAMS)}")
    if not folder.is_dir():
        raise DatasetError(folder, "dataset folder not found")
    candidates = {"train": ["train"], "val": ["val", "test"], "test": ["test", "val"]}[split]
    for name in candidates:
        path = folder / f"transforms_{name}.json"
        if path.is_file():
            return path
    tried = " nor ".join(f"transforms_{name}.json" for name in candidates)
    raise DatasetError(folder, f"no {tried} in the dataset folder")


def read_transforms(path: PathLike) -> Transforms:
    """Parse and check a transforms JSON; image files are located but not read."""
    path = Path(path)
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DatasetError(path, "transforms file not found") from None
    except OSError as exc:
        raise DatasetError(path, f"cannot read transforms file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DatasetError(path, "malformed JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(path, f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise DatasetError(path, f"expected a JSON object at the top level, got {type(data).__name__}")

    fovx = data.get("camera_angle_x")
    if isinstance(fovx, bool) or not isinstance(fovx, (int, float)) or not 0.0 < fovx < math.pi:
        problem = (
            "missing 'camera_angle_x'"
            if fovx is None
            else f"'camera_angle_x' must be an angle in (0, pi) radians, got {fovx!r}"
        )
        raise DatasetError(path, problem)
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(path, "missing 'frames'" if frames is None else "'frames' must be a non-empty list")

    root = path.parent
    images, matrices = [], []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise DatasetError(path, f"frames[{i}] must be an object, got {type(frame).__name__}")
        images.append(_locate_image(root, frame.get("file_path"), path, i))
        matrices.append(_camera_to_world(frame.get("transform_matrix"), path, i))
    c2w = torch.from_numpy(np.stack(matrices)).float()
    return Transforms(path=path, camera_angle_x=float(fovx), images=tuple(images), c2w=c2w)


def _locate_image(root: Path, file_path, json_path: Path, i: int) -> Path:
    where = f"frames[{i}].file_path"
    if not isinstance(file_path, str) or not file_path.strip():
        raise DatasetError(json_path, f"{where} must be a non-empty string, got {file_path!r}")
    # Lexical check (no symlink resolution): '..' or absolute paths must not escape the folder.
    base = os.path.abspath(root)
    target = os.path.normpath(os.path.join(base, file_path))
    if os.path.isabs(file_path) or os.path.commonpath([base, target]) != base:
        raise DatasetError(json_path, f"{where} {file_path!r} points outside the dataset folder")
    target = Path(target)
    if target.is_file():
        return target
    matches = sorted(p for p in target.parent.glob(glob.escape(target.name) + ".*") if p.is_file())
    if not matches:
        raise DatasetError(target, f"image not found (nor {target.name}.*), named by {where} in {json_path.name}")
    pngs = [p for p in matches if p.suffix.lower() == ".png"]
    return (pngs or matches)[0]


def _camera_to_world(matrix, json_path: Path, i: int) -> np.ndarray:
    where = f"frames[{i}].transform_matrix"
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        m = None
    if matrix is None or m is None or m.shape != (4, 4) or not np.isfinite(m).all():
        raise DatasetError(json_path, f"{where} must be a 4x4 matrix of finite numbers")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6) or abs(np.linalg.det(m[:3, :3])) < 1e-8:
        raise DatasetError(json_path, f"{where} is not an invertible rigid camera-to-world transform")
    return m


class NeRFSyntheticViews(ImageViews):
    """The views of one split of a NeRF-synthetic folder, checked and (by default) cached.

    Building it reads the transforms and decodes every image once, checking that each exists,
    is readable, has an alpha channel where ``require_alpha`` and has the size of the split's
    first image; any problem is a :class:`DatasetError`.

    Args:
        data: the folder (``path``) and its options (``downscale``: integer factor to shrink
            images by, area averaging; ``require_alpha``; ``preload``; ``world_up``), as
            :class:`~dmtrec.datasets.config.NeRFSyntheticData`.
        split: ``"train"``, ``"val"`` or ``"test"`` (see :func:`transforms_path`).
        resolution: ``(H, W)`` working resolution instead of ``downscale``; same aspect as the images.
        background: see :func:`dmtrec.datasets.samples.make_background`.
        seed: seeds the random backgrounds.
        length: samples per epoch; frames repeat cyclically (default: one per frame).
        max_frames: use only this many evenly spaced frames of the split (default all);
            the others are located but not decoded.
        near, far: clip planes of the projection.

    Samples follow :mod:`dmtrec.datasets.samples`.
    """

    def __init__(
        self,
        data: NeRFSyntheticData,
        split: str = "train",
        resolution: Optional[Sequence[int]] = None,
        background: str = "white",
        seed: int = 0,
        length: Optional[int] = None,
        max_frames: Optional[int] = None,
        near: float = 0.1,
        far: float = 1000.0,
    ):
        folder, downscale, preload = data.path, data.downscale, data.preload
        require_alpha, world_up = data.require_alpha, data.world_up
        check_view_options(downscale, resolution, length, max_frames)
        if world_up not in WORLD_UPS:
            raise ValueError(f"world_up: must be one of {', '.join(WORLD_UPS)}, got {world_up!r}")
        self.split = split
        self.background = check_background(background, "background")
        self.seed = int(seed)
        self.require_alpha = require_alpha
        self.transforms = read_transforms(transforms_path(folder, split))
        self.frames = evenly_spaced(range(len(self.transforms.images)), max_frames)
        self.image_paths = [self.transforms.images[f] for f in self.frames]
        self.length = length if length is not None else len(self.frames)

        self._decode_all(downscale, resolution, preload)

        c2w = self.transforms.c2w[self.frames]
        if world_up == "z":
            c2w = Z_UP_TO_Y_UP @ c2w
        self.fovy = Cameras.fovy_from_fovx(self.transforms.camera_angle_x, self.resolution)
        self.cameras = Cameras.from_fov(c2w, self.fovy, self.resolution, near, far)

    def load(self, slot: int) -> Tensor:
        return load_rgba(self.image_paths[slot], self.require_alpha)
