"""What every dataset of image files with known cameras shares.

:class:`ImageViews` decodes, caches and serves the samples of one split; the helpers check
the options every image dataset takes (:func:`check_view_options`, :func:`check_holdout`),
choose frames (:func:`evenly_spaced`, :func:`split_frames`), read images as linear straight
alpha (:func:`load_rgba`) and pick the working resolution (:func:`working_resolution`).
:func:`axes_focus` is the point the cameras look at, which NeRD and COLMAP scenes centre on.
The dataset modules (:mod:`.nerf_synthetic`, :mod:`.nerd`, :mod:`.colmap`) import these from
here, never from each other.
"""

from __future__ import annotations

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
    make_background,
    resize_rgba,
    sample_generator,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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


def axes_focus(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The point ``[3]`` nearest (least squares) to the lines ``origins[i] + t * directions[i]``.

    Where the lines do not pin it down (all parallel), the least-norm solution.
    """
    d = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    # Each line contributes the projector onto its normal plane: sum_i P_i p = sum_i P_i o_i.
    projectors = np.eye(3) - d[:, :, None] * d[:, None, :]
    return np.linalg.pinv(projectors.sum(0)) @ (projectors @ origins[:, :, None]).sum(0)[:, 0]


def check_holdout(holdout: int) -> None:
    """ValueError unless ``holdout`` is 0 or an integer >= 2 (see :func:`split_frames`)."""
    if not isinstance(holdout, int) or isinstance(holdout, bool) or holdout < 0 or holdout == 1:
        raise ValueError(f"holdout: must be 0 (no held-out frames) or an integer >= 2, got {holdout!r}")


def split_frames(total: int, split: str, holdout: int) -> List[int]:
    """Frames of ``split``: all of them where ``holdout`` is 0 (nvdiffrec validates on its
    training views), else every ``holdout``-th frame (0, k, 2k, ...) for val/test and the rest
    for training (NeRF's ``llffhold``)."""
    if split not in SPLIT_STREAMS:
        raise ValueError(f"split: unknown split {split!r}; choose one of {', '.join(SPLIT_STREAMS)}")
    if holdout == 0:
        return list(range(total))
    held = set(range(0, total, holdout))
    return sorted(held) if split != "train" else [f for f in range(total) if f not in held]
