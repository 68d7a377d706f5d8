"""Tiny NeRF-synthetic folders written into tmp_path for the dataset tests (fixture ``make_nerf``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest

from dmtrec.io.image import write_png

FOVX = math.radians(40.0)


def orbit_matrix(i: int, radius: float = 4.0) -> list:
    """A camera-to-world on a circle in the XZ plane looking at the origin (Y up)."""
    angle = 0.7 * i
    back = np.array([math.sin(angle), 0.0, math.cos(angle)])
    right = np.cross([0.0, 1.0, 0.0], back)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, [0.0, 1.0, 0.0], back, radius * back
    return m.tolist()


def pixels(seed: int, size=(8, 8), channels: int = 4) -> np.ndarray:
    """sRGB-encoded values on the 8-bit grid (so that a PNG round trip is exact)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(*size, channels)).astype(np.float32) / 255.0


def write_nerf(
    folder: Path,
    splits: Optional[Dict[str, int]] = None,
    size=(8, 8),
    channels: int = 4,
    with_extension: bool = False,
) -> Dict[str, list]:
    """Write ``transforms_<split>.json`` and ``<split>/r_<i>.png``; returns the pixel arrays per split."""
    splits = {"train": 3, "test": 2} if splits is None else splits
    written = {}
    for s_index, (split, count) in enumerate(splits.items()):
        frames, arrays = [], []
        for i in range(count):
            arr = pixels(100 * s_index + i, size, channels)
            write_png(folder / split / f"r_{i}.png", arr)
            name = f"./{split}/r_{i}" + (".png" if with_extension else "")
            frames.append({"file_path": name, "rotation": 0.0, "transform_matrix": orbit_matrix(i)})
            arrays.append(arr)
        write_json(folder / f"transforms_{split}.json", {"camera_angle_x": FOVX, "frames": frames})
        written[split] = arrays
    return written


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def read_json(path: Path):
    return json.loads(path.read_text())


@pytest.fixture
def make_nerf(tmp_path):
    """``make_nerf(**kwargs) -> (folder, pixels per split)``: see :func:`write_nerf`."""

    def make(name: str = "scene", **kwargs):
        folder = tmp_path / name
        return folder, write_nerf(folder, **kwargs)

    return make
