"""COLMAP sparse models: reading (text and binary) and writing (text), and pose conversions.

A model is three files, ``cameras``, ``images`` and ``points3D``, each ``.bin`` or ``.txt``
(colmap.github.io/format.html), found in ``sparse/0``, ``sparse`` or the folder itself
(:func:`find_model`). A pose is world-to-camera ``x_cam = R(q) X + t`` with OpenCV camera
axes (x right, y down, looking down +z); :func:`camera_to_world` turns it into OpenGL's
(:mod:`dmtrec.datasets.samples`), :func:`world_to_camera` back. Every problem is a
:class:`ColmapModelError`, one line ``"<file>: <problem>"`` (the datasets report it as a
:class:`dmtrec.datasets.errors.DatasetError`).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from dmtrec.core.types import PathLike


class ColmapModelError(ValueError):
    """A COLMAP model file is missing, unreadable or inconsistent: one line ``"<file>: <problem>"``."""

    def __init__(self, path: Union[str, os.PathLike], problem: str):
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


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


MODEL_DIRS = ("sparse/0", "sparse", ".")


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


def find_model(folder: PathLike) -> Path:
    """The folder holding the sparse model of a COLMAP capture: ``sparse/0``, ``sparse`` or ``folder`` itself."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ColmapModelError(folder, "dataset folder not found")
    for sub in MODEL_DIRS:
        candidate = folder / sub
        if any((candidate / f"cameras{suffix}").is_file() for suffix in (".bin", ".txt")):
            return candidate
    raise ColmapModelError(
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
            raise ColmapModelError(path, f"not found; a COLMAP model holds cameras, images and points3D ({suffix})")
    readers = (
        (_read_cameras_bin, _read_images_bin, _read_points_bin)
        if suffix == ".bin"
        else (_read_cameras_txt, _read_images_txt, _read_points_txt)
    )
    results = []
    for reader, path in zip(readers, paths.values()):
        try:
            results.append(reader(path))
        except ColmapModelError:
            raise
        except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
            kind = "truncated or malformed binary file" if suffix == ".bin" else "malformed line"
            raise ColmapModelError(path, f"{kind} ({exc})") from None
    cameras, images, points = results
    model = ColmapModel(folder, suffix, cameras, images, points)
    _check_model(model)
    return model


def _check_model(model: ColmapModel) -> None:
    for camera in model.cameras.values():
        if camera.model not in SUPPORTED_MODELS:
            raise ColmapModelError(
                model.file("cameras"),
                f"camera {camera.id} uses model {camera.model}, which dmtrec does not read "
                f"(supported: {', '.join(SUPPORTED_MODELS)}); undistort with `colmap image_undistorter` first",
            )
        if camera.width < 1 or camera.height < 1 or not all(math.isfinite(p) for p in camera.params):
            raise ColmapModelError(model.file("cameras"), f"camera {camera.id}: bad size or non-finite parameters")
        fx, fy, _, _ = camera.intrinsics
        if fx <= 0 or fy <= 0:
            raise ColmapModelError(model.file("cameras"), f"camera {camera.id}: focal lengths must be positive")
    for image in model.images.values():
        if image.camera_id not in model.cameras:
            raise ColmapModelError(
                model.file("images"),
                f"image {image.id} ({image.name}) references camera {image.camera_id}, "
                f"which {model.file('cameras').name} does not define",
            )
        q = np.asarray(image.qvec)
        if not (np.isfinite(q).all() and np.isfinite(image.tvec).all()) or np.linalg.norm(q) < 1e-8:
            raise ColmapModelError(model.file("images"), f"image {image.id} ({image.name}): invalid pose")
    if len(model.images) < MIN_IMAGES:
        raise ColmapModelError(
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
            raise ColmapModelError(path, f"camera {camera_id} has unknown model id {model}")
        name, count = CAMERA_MODELS[model]
    else:
        if model not in MODEL_IDS:
            raise ColmapModelError(path, f"camera {camera_id} has unknown model {model}")
        name, count = model, CAMERA_MODELS[MODEL_IDS[model]][1]
    if len(params) != count:
        raise ColmapModelError(path, f"camera {camera_id} ({name}) has {len(params)} parameters, expected {count}")
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
                raise ColmapModelError(path, f"camera {camera_id} has unknown model id {model_id}")
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
        raise ColmapModelError(path, "unexpected bytes after the last entry (not a COLMAP model file?)")


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
