"""COLMAP captures: a sparse model (``cameras``, ``images``, ``points3D``) beside the photos.

Layout (what ``colmap mapper`` and ``dmtrec poses`` write)::

    folder/images/NAME              the photos, as registered (NAME may hold sub-folders)
    folder/sparse/0/cameras.{bin,txt}
    folder/sparse/0/images.{bin,txt}
    folder/sparse/0/points3D.{bin,txt}   (or directly in folder/sparse/ or folder/)
    folder/masks/NAME.png           optional object masks (or masks/STEM.png; else the photo's alpha)

The readers follow COLMAP's documented formats (colmap.github.io/format.html), text and
binary. A pose is world-to-camera ``x_cam = R(q) X + t`` with OpenCV camera axes (x right,
y down, looking down +z); :func:`camera_to_world` turns it into the OpenGL convention of
:mod:`dmtrec.datasets.samples`. Camera models SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL,
RADIAL and OPENCV are read; distorted photos are undistorted once (same size and focal
lengths, pinhole) into the user cache (:func:`dmtrec.core.cache.cache_dir` ``/colmap``) and read
from there afterwards; other models are rejected. Per-image focal lengths and principal
points go into each view's projection (:func:`dmtrec.render.camera.perspective_from_intrinsics`).

The scene is normalised into the tet grid (:func:`estimate_object_sphere`,
:class:`Normalization`): the object's centre is the point nearest every camera's optical
axis, its radius a high percentile of the sparse points' distances to it (only points seen
inside the masks where the model has 2D observations, so a table or room does not count), and
the world is turned so that the cameras' mean up vector is +Y, shifted and scaled so that this sphere
becomes the unit sphere (a ``model.dmtet.scale`` of 2.2-2.5 leaves a margin). ``center`` and
``radius`` override the estimate. Everything is checked when a dataset is built: a broken
folder fails before training with one :class:`DatasetError` line naming the file.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.atomic import atomic_path
from dmtrec.core.cache import cache_dir
from dmtrec.core.types import PathLike
from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.render.camera import Cameras, perspective_from_intrinsics

from .errors import DatasetError
from .nerd import axes_focus, check_holdout, split_frames
from .nerf_synthetic import ImageViews, check_view_options, evenly_spaced, load_rgba, read_dataset_image, size_text
from .samples import check_background

# COLMAP's model ids, names and parameter counts (src/colmap/sensor/models.h).
CAMERA_MODELS: Dict[int, Tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS = {name: model_id for model_id, (name, _) in CAMERA_MODELS.items()}
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
MIN_IMAGES = 3
# The sphere the object is scaled to; DMTet's grid spans a cube of edge model.dmtet.scale.
NORMALIZED_RADIUS = 1.0
MODEL_DIRS = ("sparse/0", "sparse", ".")
_UNDISTORT_VERSION = 1
_INVALID_POINT3D = 2**64 - 1  # COLMAP's kInvalidPoint3DId in images.bin (-1 in images.txt)


@dataclass(frozen=True)
class ColmapCamera:
    """One entry of ``cameras``: ``params`` as COLMAP orders them for ``model``."""

    id: int
    model: str
    width: int
    height: int
    params: Tuple[float, ...]

    @property
    def intrinsics(self) -> Tuple[float, float, float, float]:
        """``(fx, fy, cx, cy)`` in pixels."""
        p = self.params
        if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            return p[0], p[0], p[1], p[2]
        return p[0], p[1], p[2], p[3]

    @property
    def distortion(self) -> Tuple[float, ...]:
        """The distortion coefficients (empty for pinhole models)."""
        return self.params[{"SIMPLE_PINHOLE": 3, "SIMPLE_RADIAL": 3, "RADIAL": 3}.get(self.model, 4) :]

    @property
    def distorted(self) -> bool:
        return any(k != 0.0 for k in self.distortion)


@dataclass(frozen=True)
class ColmapImage:
    """One registered image: world-to-camera ``qvec (w, x, y, z)``, ``tvec``; its 2D points
    ``xys [P, 2]`` and their ``point3d_ids [P]`` (-1: not triangulated)."""

    id: int
    qvec: Tuple[float, float, float, float]
    tvec: Tuple[float, float, float]
    camera_id: int
    name: str
    xys: np.ndarray = field(repr=False)
    point3d_ids: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class ColmapPoints:
    """``points3D``: ``ids [N]``, ``xyz [N, 3]`` float64, ``rgb [N, 3]`` uint8, reprojection
    ``error [N]`` in pixels, ``track_length [N]``."""

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    error: np.ndarray
    track_length: np.ndarray


@dataclass(frozen=True)
class ColmapModel:
    """A sparse model as read (``folder`` holds its three files, ``suffix`` is ``.txt`` or ``.bin``)."""

    folder: Path
    suffix: str
    cameras: Dict[int, ColmapCamera]
    images: Dict[int, ColmapImage]
    points: ColmapPoints

    def file(self, stem: str) -> Path:
        return self.folder / f"{stem}{self.suffix}"


# --------------------------------------------------------------------------- readers


def find_model(folder: PathLike) -> Path:
    """The folder holding the sparse model of a COLMAP capture: ``sparse/0``, ``sparse`` or ``folder`` itself."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(folder, "dataset folder not found")
    for sub in MODEL_DIRS:
        candidate = folder / sub
        if any((candidate / f"cameras{suffix}").is_file() for suffix in (".bin", ".txt")):
            return candidate
    raise DatasetError(
        folder,
        "no COLMAP model (cameras.bin/.txt) in sparse/0/, sparse/ or the folder itself; "
        "run `dmtrec poses IMAGES --out FOLDER` or point at COLMAP's output",
    )


def read_model(folder: PathLike) -> ColmapModel:
    """Read ``cameras``, ``images`` and ``points3D`` (binary if ``cameras.bin`` exists, else text)
    from ``folder`` and check that every image's camera exists and is supported."""
    folder = Path(folder)
    suffix = ".bin" if (folder / "cameras.bin").is_file() else ".txt"
    paths = {stem: folder / f"{stem}{suffix}" for stem in ("cameras", "images", "points3D")}
    for stem, path in paths.items():
        if not path.is_file():
            raise DatasetError(path, f"not found; a COLMAP model holds cameras, images and points3D ({suffix})")
    readers = (
        (_read_cameras_bin, _read_images_bin, _read_points_bin)
        if suffix == ".bin"
        else (_read_cameras_txt, _read_images_txt, _read_points_txt)
    )
    results = []
    for reader, path in zip(readers, paths.values()):
        try:
            results.append(reader(path))
        except DatasetError:
            raise
        except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
            kind = "truncated or malformed binary file" if suffix == ".bin" else "malformed line"
            raise DatasetError(path, f"{kind} ({exc})") from None
    cameras, images, points = results
    model = ColmapModel(folder, suffix, cameras, images, points)
    _check_model(model)
    return model


def _check_model(model: ColmapModel) -> None:
    for camera in model.cameras.values():
        if camera.model not in SUPPORTED_MODELS:
            raise DatasetError(
                model.file("cameras"),
                f"camera {camera.id} uses model {camera.model}, which dmtrec does not read "
                f"(supported: {', '.join(SUPPORTED_MODELS)}); undistort with `colmap image_undistorter` first",
            )
        if camera.width < 1 or camera.height < 1 or not all(math.isfinite(p) for p in camera.params):
            raise DatasetError(model.file("cameras"), f"camera {camera.id}: bad size or non-finite parameters")
        fx, fy, _, _ = camera.intrinsics
        if fx <= 0 or fy <= 0:
            raise DatasetError(model.file("cameras"), f"camera {camera.id}: focal lengths must be positive")
    for image in model.images.values():
        if image.camera_id not in model.cameras:
            raise DatasetError(
                model.file("images"),
                f"image {image.id} ({image.name}) references camera {image.camera_id}, "
                f"which {model.file('cameras').name} does not define",
            )
        q = np.asarray(image.qvec)
        if not (np.isfinite(q).all() and np.isfinite(image.tvec).all()) or np.linalg.norm(q) < 1e-8:
            raise DatasetError(model.file("images"), f"image {image.id} ({image.name}): invalid pose")
    if len(model.images) < MIN_IMAGES:
        raise DatasetError(
            model.file("images"),
            f"only {len(model.images)} registered images; at least {MIN_IMAGES} are needed "
            "(take more overlapping photos and rerun structure-from-motion)",
        )


def _data_lines(path: Path) -> List[str]:
    with open(path, "r", encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]


def _camera(camera_id: int, model, width: int, height: int, params: Sequence[float], path: Path) -> ColmapCamera:
    if isinstance(model, int):
        if model not in CAMERA_MODELS:
            raise DatasetError(path, f"camera {camera_id} has unknown model id {model}")
        name, count = CAMERA_MODELS[model]
    else:
        if model not in MODEL_IDS:
            raise DatasetError(path, f"camera {camera_id} has unknown model {model}")
        name, count = model, CAMERA_MODELS[MODEL_IDS[model]][1]
    if len(params) != count:
        raise DatasetError(path, f"camera {camera_id} ({name}) has {len(params)} parameters, expected {count}")
    return ColmapCamera(int(camera_id), name, int(width), int(height), tuple(float(p) for p in params))


def _read_cameras_txt(path: Path) -> Dict[int, ColmapCamera]:
    cameras = {}
    for line in _data_lines(path):
        fields = line.split()
        camera_id = int(fields[0])
        cameras[camera_id] = _camera(camera_id, fields[1], int(fields[2]), int(fields[3]), fields[4:], path)
    return cameras


def _read_images_txt(path: Path) -> Dict[int, ColmapImage]:
    lines = _data_lines_keep_empty(path)
    images = {}
    # Two lines per image; the second (its 2D points) may be empty.
    for first, second in zip(lines[0::2], lines[1::2] + [""] * (len(lines) % 2)):
        fields = first.split(maxsplit=9)
        if len(fields) < 10:
            raise ValueError(f"expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME', got {first!r}")
        points = np.asarray(second.split(), dtype=np.float64).reshape(-1, 3)
        image = ColmapImage(
            id=int(fields[0]),
            qvec=tuple(float(v) for v in fields[1:5]),
            tvec=tuple(float(v) for v in fields[5:8]),
            camera_id=int(fields[8]),
            name=fields[9].strip(),
            xys=points[:, :2],
            point3d_ids=points[:, 2].astype(np.int64),
        )
        images[image.id] = image
    return images


def _data_lines_keep_empty(path: Path) -> List[str]:
    """Lines of ``images.txt`` without comments, keeping empty 2D-point lines (they pair with an image line)."""
    with open(path, "r", encoding="utf-8") as fh:
        lines = [line.rstrip("\r\n") for line in fh if not line.lstrip().startswith("#")]
    while lines and not lines[-1].strip():
        lines.pop()  # a final newline is not an empty points line
    return lines


def _read_points_txt(path: Path) -> ColmapPoints:
    ids, xyz, rgb, error, track = [], [], [], [], []
    for line in _data_lines(path):
        fields = line.split()
        ids.append(int(fields[0]))
        xyz.append([float(v) for v in fields[1:4]])
        rgb.append([int(v) for v in fields[4:7]])
        error.append(float(fields[7]))
        track.append((len(fields) - 8) // 2)
    return _points(ids, xyz, rgb, error, track)


def _points(ids, xyz, rgb, error, track) -> ColmapPoints:
    return ColmapPoints(
        ids=np.asarray(ids, dtype=np.int64),
        xyz=np.asarray(xyz, dtype=np.float64).reshape(-1, 3),
        rgb=np.asarray(rgb, dtype=np.uint8).reshape(-1, 3),
        error=np.asarray(error, dtype=np.float64),
        track_length=np.asarray(track, dtype=np.int64),
    )


def _unpack(fh: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize("<" + fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError(f"file ends after {fh.tell()} bytes")
    return struct.unpack("<" + fmt, data)


def _read_cameras_bin(path: Path) -> Dict[int, ColmapCamera]:
    cameras = {}
    with open(path, "rb") as fh:
        (count,) = _unpack(fh, "Q")
        for _ in range(count):
            camera_id, model_id, width, height = _unpack(fh, "iiQQ")
            if model_id not in CAMERA_MODELS:
                raise DatasetError(path, f"camera {camera_id} has unknown model id {model_id}")
            params = _unpack(fh, "d" * CAMERA_MODELS[model_id][1])
            cameras[camera_id] = _camera(camera_id, model_id, width, height, params, path)
        _check_end(fh, path)
    return cameras


def _read_images_bin(path: Path) -> Dict[int, ColmapImage]:
    images = {}
    with open(path, "rb") as fh:
        (count,) = _unpack(fh, "Q")
        for _ in range(count):
            image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = _unpack(fh, "IdddddddI")
            name = bytearray()
            while True:
                char = fh.read(1)
                if not char:
                    raise ValueError(f"file ends inside the name of image {image_id}")
                if char == b"\x00":
                    break
                name += char
            (num_points,) = _unpack(fh, "Q")
            raw = fh.read(24 * num_points)
            if len(raw) != 24 * num_points:
                raise ValueError(f"file ends inside the 2D points of image {image_id}")
            table = np.frombuffer(raw, dtype=np.dtype([("xy", "<f8", 2), ("id", "<u8")]))
            ids = table["id"].astype(np.int64)  # kInvalidPoint3DId (2^64 - 1) wraps to -1, as in images.txt
            images[image_id] = ColmapImage(
                image_id, (qw, qx, qy, qz), (tx, ty, tz), camera_id, name.decode("utf-8"), table["xy"].copy(), ids
            )
        _check_end(fh, path)
    return images


def _read_points_bin(path: Path) -> ColmapPoints:
    ids, xyz, rgb, error, track = [], [], [], [], []
    with open(path, "rb") as fh:
        (count,) = _unpack(fh, "Q")
        for _ in range(count):
            values = _unpack(fh, "QdddBBBdQ")
            ids.append(values[0])
            xyz.append(values[1:4])
            rgb.append(values[4:7])
            error.append(values[7])
            track.append(values[8])
            if len(fh.read(8 * values[8])) != 8 * values[8]:
                raise ValueError(f"file ends inside the track of point {values[0]}")
        _check_end(fh, path)
    return _points(ids, xyz, rgb, error, track)


def _check_end(fh: BinaryIO, path: Path) -> None:
    if fh.read(1):
        raise DatasetError(path, "unexpected bytes after the last entry (not a COLMAP model file?)")


# --------------------------------------------------------------------------- writer


def write_model_text(
    folder: PathLike,
    cameras: Sequence[ColmapCamera],
    images: Sequence[ColmapImage],
    points: Optional[ColmapPoints] = None,
) -> None:
    """Write ``cameras.txt``, ``images.txt`` and ``points3D.txt`` into ``folder`` (COLMAP's text format).

    Point tracks are not written (``points3D.txt`` lists each point with an empty track).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    lines += [f"{c.id} {c.model} {c.width} {c.height} " + " ".join(repr(float(p)) for p in c.params) for c in cameras]
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
    ]
    for image in images:
        values = " ".join(repr(float(v)) for v in (*image.qvec, *image.tvec))
        lines.append(f"{image.id} {values} {image.camera_id} {image.name}")
        lines.append(" ".join(f"{x!r} {y!r} {i}" for (x, y), i in zip(image.xys.tolist(), image.point3d_ids.tolist())))
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# 3D point list with one line of data per point:", "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]"]
    if points is not None:
        for i, p, c, e in zip(points.ids.tolist(), points.xyz.tolist(), points.rgb.tolist(), points.error.tolist()):
            lines.append(f"{i} {p[0]!r} {p[1]!r} {p[2]!r} {c[0]} {c[1]} {c[2]} {e!r}")
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- poses


def qvec_to_rotation(qvec: Sequence[float]) -> np.ndarray:
    """``[3, 3]`` rotation of a (not necessarily unit) quaternion ``(w, x, y, z)``."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_to_qvec(rotation: np.ndarray) -> Tuple[float, float, float, float]:
    """``(w, x, y, z)`` with ``w >= 0`` of a ``[3, 3]`` rotation (Bar-Itzhack's method, as COLMAP's scripts)."""
    r = np.asarray(rotation, dtype=np.float64)
    # The eigenvector of the symmetric 4x4 matrix with the largest eigenvalue is (x, y, z, w).
    k = (
        np.array(
            [
                [r[0, 0] - r[1, 1] - r[2, 2], r[1, 0] + r[0, 1], r[2, 0] + r[0, 2], r[2, 1] - r[1, 2]],
                [r[1, 0] + r[0, 1], r[1, 1] - r[0, 0] - r[2, 2], r[2, 1] + r[1, 2], r[0, 2] - r[2, 0]],
                [r[2, 0] + r[0, 2], r[2, 1] + r[1, 2], r[2, 2] - r[0, 0] - r[1, 1], r[1, 0] - r[0, 1]],
                [r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1], r[0, 0] + r[1, 1] + r[2, 2]],
            ]
        )
        / 3.0
    )
    values, vectors = np.linalg.eigh(k)
    x, y, z, w = vectors[:, np.argmax(values)]
    if w < 0:
        w, x, y, z = -w, -x, -y, -z
    return float(w), float(x), float(y), float(z)


# OpenCV camera axes (x right, y down, z forward) to OpenGL's (x right, y up, z back).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def camera_to_world(image: ColmapImage) -> np.ndarray:
    """``[4, 4]`` float64 OpenGL camera-to-world of a COLMAP image (world-to-camera ``R(q), t``, OpenCV axes)."""
    w2c = np.eye(4)
    w2c[:3, :3] = qvec_to_rotation(image.qvec)
    w2c[:3, 3] = image.tvec
    return np.linalg.inv(w2c) @ _CV_TO_GL


def world_to_camera(c2w: np.ndarray) -> Tuple[Tuple[float, float, float, float], Tuple[float, float, float]]:
    """COLMAP's ``(qvec, tvec)`` of an OpenGL camera-to-world ``[4, 4]`` (the inverse of :func:`camera_to_world`)."""
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64) @ _CV_TO_GL)
    return rotation_to_qvec(w2c[:3, :3]), tuple(float(v) for v in w2c[:3, 3])


# --------------------------------------------------------------------------- normalisation


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


# --------------------------------------------------------------------------- undistortion


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
        folder: the capture folder (``images/``, ``sparse/0/``, optional ``masks/``).
        split, downscale, resolution, background, seed, length, max_frames, holdout, near,
            far, preload: as :class:`dmtrec.datasets.nerd.NeRDViews`; frames are the registered
            images sorted by name.
        require_alpha: an image with neither a mask file nor an alpha channel is an error
            (else it is treated as opaque: only sensible where the object fills the frame).
        center, radius: the object's sphere in the model's units, overriding the estimate
            (see :func:`normalization`).

    Attributes:
        model: the :class:`ColmapModel`; ``normalization``: the :class:`Normalization` applied;
        ``points``: ``[P, 3]`` sparse points in dmtrec's frame.
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
        holdout: int = 0,
        near: float = 0.1,
        far: float = 1000.0,
        preload: bool = True,
        require_alpha: bool = True,
        center: Optional[Sequence[float]] = None,
        radius: Optional[float] = None,
    ):
        check_view_options(downscale, resolution, length, max_frames)
        check_holdout(holdout)
        folder = Path(folder)
        self.split = split
        self.background = check_background(background, "background")
        self.seed = int(seed)
        self.require_alpha = require_alpha
        self.model = read_model(find_model(folder))

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
