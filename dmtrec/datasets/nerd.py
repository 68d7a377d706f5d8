"""NeRD captures in LLFF layout: ``poses_bounds.npy`` plus ``images/`` and ``masks/``.

Layout (Mildenhall et al.'s LLFF, as Boss et al. publish NeRD scenes and nvdiffrec reads them)::

    folder/poses_bounds.npy   float [N, 17]: per image a row-major 3x5 matrix
                              [down, right, back, translation, (H, W, focal)] (camera-to-world
                              axes as columns, then the intrinsics), followed by near/far bounds
    folder/images/*.{png,jpg,jpeg}   N photos, sRGB-encoded
    folder/masks/*.{png,jpg,jpeg}    N foreground masks, linear coverage in channel 0

Images and masks pair with the poses by sorted file name, as LLFF's ``imgs2poses`` wrote them.
As in nvdiffrec, the rotation is turned into the OpenGL [right, up, back] convention of
:mod:`dmtrec.datasets.samples`, and the scene is recentred on the point nearest (least
squares) to every camera's optical axis, so the object sits at the origin of the DMTet grid;
there is no rescaling (NeRD's poses are metric already, hence nvdiffrec's ``mesh_scale``).
Everything is checked when a dataset is built: a broken folder fails before training with one
:class:`DatasetError` line naming the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.types import PathLike
from dmtrec.render.camera import Cameras, perspective

from .base import (
    IMAGE_SUFFIXES,
    ImageViews,
    axes_focus,
    check_holdout,
    check_view_options,
    evenly_spaced,
    load_rgba,
    read_dataset_image,
    size_text,
    split_frames,
)
from .config import NeRDData
from .errors import DatasetError
from .samples import check_background

POSES_FILE = "poses_bounds.npy"
# LLFF stores the camera axes as [down, right, back]; OpenGL's are [right, up, back]:
# right = LLFF column 1, up = -LLFF column 0, back = LLFF column 2.
_LLFF_TO_OPENGL_AXES = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def read_poses_bounds(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Parse and check ``poses_bounds.npy``.

    Returns:
        ``c2w [N, 4, 4]`` float64 OpenGL camera-to-world (not yet recentred) and
        ``hwf [N, 3]`` float64 (image height, width, focal length) in the pixels of the
        images the poses were estimated on.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            path, "not found; an LLFF (NeRD) scene folder needs poses_bounds.npy beside images/ and masks/"
        )
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(path, f"not a readable .npy array ({exc})") from None
    if not isinstance(data, np.ndarray):
        data.close()
        raise DatasetError(path, "holds an .npz archive; expected one [N, 17] .npy array")
    if data.ndim != 2 or data.shape[1] != 17 or data.shape[0] == 0 or not np.issubdtype(data.dtype, np.number):
        raise DatasetError(
            path,
            f"array of shape {list(data.shape)} ({data.dtype}); expected [N, 17] numbers "
            "(a 3x5 pose per image, then near and far)",
        )
    data = data.astype(np.float64)
    if not np.isfinite(data).all():
        row = int(np.nonzero(~np.isfinite(data).all(axis=1))[0][0])
        raise DatasetError(path, f"row {row} holds a NaN or infinite value")
    poses = data[:, :15].reshape(-1, 3, 5)
    hwf = poses[:, :, 4]
    bad = np.nonzero((hwf <= 0).any(axis=1))[0]
    if bad.size:
        raise DatasetError(
            path, f"row {bad[0]}: height, width and focal length must be positive, got {hwf[bad[0]].tolist()}"
        )
    rotation = poses[:, :, :3] @ _LLFF_TO_OPENGL_AXES
    bad = np.nonzero(np.abs(np.linalg.det(rotation)) < 1e-8)[0]
    if bad.size:
        raise DatasetError(path, f"row {bad[0]}: the 3x3 camera axes are not invertible")
    c2w = np.tile(np.eye(4), (len(poses), 1, 1))
    c2w[:, :3, :3] = rotation
    c2w[:, :3, 3] = poses[:, :, 3]
    return c2w, hwf


def image_files(folder: Path, count: int) -> List[Path]:
    """The ``count`` images of ``folder`` (``.png``, ``.jpg``, ``.jpeg``) sorted by name."""
    if not folder.is_dir():
        raise DatasetError(folder, "folder not found; an LLFF (NeRD) scene folder holds images/ and masks/")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) != count:
        raise DatasetError(folder, f"holds {len(files)} images (.png/.jpg/.jpeg) but {POSES_FILE} has {count} poses")
    return files


class NeRDViews(ImageViews):
    """The views of one split of an LLFF (NeRD) folder, checked and (by default) cached.

    Building it reads the poses and decodes every image and mask of the split once, checking
    that the counts match the poses, that each file is readable, that each mask has the size
    of its image and every image the size of the first; any problem is a
    :class:`DatasetError`. Each sample's ``img`` is the sRGB-decoded photo's RGB with the mask
    (linear, its first channel) as straight alpha, as nvdiffrec builds it; an alpha channel of
    the photo itself is ignored.

    The projection follows the poses' intrinsics: ``fovy = 2 atan(H / 2 focal)`` and aspect
    ``W / H`` of the stored ``(H, W, focal)``, whatever size the image files have (nvdiffrec
    resizes NeRD's photos to 512 x 512 and keeps the poses file), so images may be resampled
    to any ``resolution``.

    Args:
        data: the scene folder (``path``) and its options (``downscale``: integer factor to shrink
            images by, area averaging; ``holdout``: 0, every split holds all frames as in
            nvdiffrec, or k >= 2, every k-th frame is held out of training and forms val and
            test; ``preload``), as :class:`~dmtrec.datasets.config.NeRDData`.
        split: ``"train"``, ``"val"`` or ``"test"`` (see :func:`split_frames`).
        resolution: ``(H, W)`` working resolution instead of ``downscale``.
        background: see :func:`dmtrec.datasets.samples.make_background`.
        seed: seeds the random backgrounds.
        length: samples per epoch; frames repeat cyclically (default: one per frame).
        max_frames: use only this many evenly spaced frames of the split (default all);
            the others are located but not decoded.
        near, far: clip planes of the projection.

    Samples follow :mod:`dmtrec.datasets.samples`; ``index`` is the frame's row in
    ``poses_bounds.npy`` (its position in the sorted folders). ``fovy`` is ``[len(frames)]``
    radians (LLFF stores intrinsics per image).
    """

    def __init__(
        self,
        data: NeRDData,
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
        check_view_options(downscale, resolution, length, max_frames)
        check_holdout(holdout)
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(folder, "dataset folder not found")
        self.split = split
        self.background = check_background(background, "background")
        self.seed = int(seed)

        c2w, hwf = read_poses_bounds(folder / POSES_FILE)
        images = image_files(folder / "images", len(c2w))
        masks = image_files(folder / "masks", len(c2w))
        # Recentre on all frames, whatever the split, so that every split shares one world.
        c2w[:, :3, 3] -= axes_focus(c2w[:, :3, 3], -c2w[:, :3, 2])

        candidates = split_frames(len(c2w), split, holdout)
        if not candidates:
            raise DatasetError(
                folder / POSES_FILE, f"holdout {holdout} leaves no {split} frames among its {len(c2w)} poses"
            )
        self.frames = evenly_spaced(candidates, max_frames)
        self.image_paths = [images[f] for f in self.frames]
        self.mask_paths = [masks[f] for f in self.frames]
        self.length = length if length is not None else len(self.frames)
        self._decode_all(downscale, resolution, preload, keep_aspect=False)

        hwf = torch.from_numpy(hwf[self.frames])
        fovy = 2.0 * torch.atan(hwf[:, 0] / (2.0 * hwf[:, 2]))
        self.fovy = fovy.float()
        proj = perspective(fovy, hwf[:, 1] / hwf[:, 0], near, far)
        self.cameras = Cameras(c2w=torch.from_numpy(c2w[self.frames]).float(), proj=proj, resolution=self.resolution)

    def load(self, slot: int) -> Tensor:
        image_path, mask_path = self.image_paths[slot], self.mask_paths[slot]
        rgb = load_rgba(image_path, require_alpha=False)[..., :3]
        mask = torch.from_numpy(read_dataset_image(mask_path)[..., :1])
        if mask.shape[:2] != rgb.shape[:2]:
            raise DatasetError(
                mask_path, f"mask is {size_text(mask.shape)} but its image {image_path.name} is {size_text(rgb.shape)}"
            )
        return torch.cat([rgb, mask], dim=-1).contiguous()
