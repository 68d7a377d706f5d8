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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dmtrec.core.types import PathLike
from dmtrec.io.image import ImageReadError, read_image, srgb_to_linear
from dmtrec.render.camera import Cameras

from .errors import DatasetError
from .samples import (
    SPLIT_STREAMS,
    STREAM_BACKGROUND,
    as_resolution,
    check_background,
    make_background,
    resize_rgba,
    sample_generator,
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


def read_dataset_image(path: PathLike) -> np.ndarray:
    """:func:`dmtrec.io.image.read_image` (values as stored), failing with a :class:`DatasetError`."""
    path = Path(path)
    try:
        return read_image(path)
    except ImageReadError as exc:
        message = str(exc)
        raise DatasetError(path, message[len(f"{path}: ") :] if message.startswith(f"{path}: ") else message) from None


def load_rgba(path: PathLike, require_alpha: bool = True) -> Tensor:
    """Read an image as ``[H, W, 4]`` float32 linear RGB with straight alpha.

    LDR files are sRGB-decoded; ``.hdr`` files are linear already. Grayscale is repeated to
    RGB. Without an alpha channel the image is a :class:`DatasetError` if ``require_alpha``,
    else fully opaque.
    """
    path = Path(path)
    img = torch.from_numpy(read_dataset_image(path))
    channels = img.shape[-1]
    colour, alpha = (img[..., :-1], img[..., -1:]) if channels in (2, 4) else (img, None)
    if colour.shape[-1] == 1:
        colour = colour.expand(-1, -1, 3)
    if path.suffix.lower() != ".hdr":
        colour = srgb_to_linear(colour)
    if alpha is None:
        if require_alpha:
            raise DatasetError(
                path,
                "image has no alpha channel, but object masks are required "
                "(set require_alpha: false to treat images as opaque)",
            )
        alpha = torch.ones_like(colour[..., :1])
    return torch.cat([colour, alpha], dim=-1).float().contiguous()


class ImageViews(Dataset):
    """What the datasets of image files with known cameras share: decoding, caching, samples.

    A subclass sets ``split``, ``background``, ``seed``, ``frames`` (the frame index of each
    slot), ``image_paths`` (one per slot) and ``length``, implements :meth:`load`, calls
    :meth:`_decode_all` and sets ``cameras`` (one per slot).
    """

    split: str
    background: str
    seed: int
    frames: List[int]
    image_paths: List[Path]
    length: int
    resolution: Tuple[int, int]
    cameras: Cameras

    def load(self, slot: int) -> Tensor:
        """``[H, W, 4]`` linear straight-alpha image of ``self.frames[slot]`` at its file size."""
        raise NotImplementedError

    def _decode_all(
        self, downscale: int, resolution: Optional[Sequence[int]], preload: bool, keep_aspect: bool = True
    ) -> None:
        """Set ``resolution`` and decode every image once (whether cached or not) so that a bad one fails now."""
        first = self.load(0)
        source_size = tuple(first.shape[:2])
        self.resolution = working_resolution(source_size, downscale, resolution, self.image_paths[0], keep_aspect)
        self._images: Optional[List[Tensor]] = [] if preload else None
        for slot, path in enumerate(self.image_paths):
            img = first if slot == 0 else self.load(slot)
            if tuple(img.shape[:2]) != source_size:
                raise DatasetError(
                    path,
                    f"image is {size_text(img.shape)} but {self.image_paths[0].name} of the same split is "
                    f"{size_text(source_size)}",
                )
            if self._images is not None:
                self._images.append(resize_rgba(img, self.resolution))

    def __len__(self) -> int:
        return self.length

    def image(self, slot: int) -> Tensor:
        """``[H, W, 4]`` linear straight-alpha image of ``self.frames[slot]`` at the working resolution."""
        if self._images is not None:
            return self._images[slot]
        return resize_rgba(self.load(slot), self.resolution)

    def __getitem__(self, index: int) -> Dict:
        if not 0 <= index < self.length:
            raise IndexError(f"view index {index} out of range for {self.length} views")
        slot = index % len(self.frames)
        generator = sample_generator(self.seed, STREAM_BACKGROUND, SPLIT_STREAMS[self.split], index)
        return {
            "c2w": self.cameras.c2w[slot],
            "proj": self.cameras.proj[slot],
            "img": self.image(slot),
            "background": make_background(self.background, self.resolution, generator),
            "index": torch.tensor(self.frames[slot], dtype=torch.int64),
            "resolution": self.resolution,
        }


class NeRFSyntheticViews(ImageViews):
    """The views of one split of a NeRF-synthetic folder, checked and (by default) cached.

    Building it reads the transforms and decodes every image once, checking that each exists,
    is readable, has an alpha channel where ``require_alpha`` and has the size of the split's
    first image; any problem is a :class:`DatasetError`.

    Args:
        folder: the dataset folder.
        split: ``"train"``, ``"val"`` or ``"test"`` (see :func:`transforms_path`).
        downscale: integer factor to shrink images by (area averaging).
        resolution: ``(H, W)`` working resolution instead of ``downscale``; same aspect as the images.
        background: see :func:`dmtrec.datasets.samples.make_background`.
        seed: seeds the random backgrounds.
        length: samples per epoch; frames repeat cyclically (default: one per frame).
        max_frames: use only this many evenly spaced frames of the split (default all);
            the others are located but not decoded.
        near, far: clip planes of the projection.
        require_alpha: images without alpha are an error (else opaque).
        preload: keep the decoded images in memory (else decode on every access).
        world_up: ``"y"``, or ``"z"`` to rotate a Z-up (Blender) scene Y-up as nvdiffrec does.

    Samples follow :mod:`dmtrec.datasets.samples`.
    """

    def __init__(
        self,
        folder: PathLike,
        split: str = "train",
        downscale: int = 1,
        resolution: Optional[Sequence[int]] = None,
        background: str = "white",
        seed: int = 0,
        length: Optional[int] = None,
        max_frames: Optional[int] = None,
        near: float = 0.1,
        far: float = 1000.0,
        require_alpha: bool = True,
        preload: bool = True,
        world_up: str = "y",
    ):
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


def check_view_options(
    downscale: int, resolution: Optional[Sequence[int]], length: Optional[int], max_frames: Optional[int]
) -> None:
    """ValueError naming the argument where the options every :class:`ImageViews` takes are invalid."""
    if not isinstance(downscale, int) or isinstance(downscale, bool) or downscale < 1:
        raise ValueError(f"downscale: must be an integer >= 1, got {downscale!r}")
    if resolution is not None and downscale != 1:
        raise ValueError("downscale: give either downscale or resolution, not both")
    for name, value in (("length", length), ("max_frames", max_frames)):
        if value is not None and value < 1:
            raise ValueError(f"{name}: must be >= 1, got {value}")


def evenly_spaced(frames: Sequence[int], count: Optional[int]) -> List[int]:
    """At most ``count`` evenly spaced entries of ``frames``, first and last included (all if None)."""
    total = len(frames)
    count = total if count is None else min(count, total)
    return sorted({frames[round(i * (total - 1) / max(count - 1, 1))] for i in range(count)})


def size_text(shape: Sequence[int]) -> str:
    """``[H, W, ...]`` as ``"WxH"``, the way image viewers print sizes."""
    return f"{shape[1]}x{shape[0]}"


def working_resolution(
    source: Tuple[int, int],
    downscale: int,
    resolution: Optional[Sequence[int]],
    first_image: Path,
    keep_aspect: bool = True,
) -> Tuple[int, int]:
    """``(H, W)`` to resize ``source`` images to: ``resolution`` if given, else ``source // downscale``.

    ``keep_aspect`` rejects a ``resolution`` of another aspect ratio (NeRF-synthetic's
    ``camera_angle_x`` ties the fov to the image width); a :class:`DatasetError` names ``first_image``.
    """
    height, width = source
    if resolution is not None:
        target = as_resolution(resolution, "resolution")
        if keep_aspect and abs(target[1] - target[0] * width / height) > 1.0:
            raise DatasetError(
                first_image,
                f"images are {size_text(source)}; resolution {size_text(target)} would change their aspect ratio",
            )
        return target
    if height // downscale < 1 or width // downscale < 1:
        raise DatasetError(first_image, f"downscale {downscale} leaves no pixels of a {size_text(source)} image")
    return height // downscale, width // downscale
