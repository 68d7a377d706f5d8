"""Pictures of a dataset to check before training (the library half of ``dmtrec inspect-data``).

:func:`scene_overview` draws the training cameras as frusta (the top edge of each image in
red, so a flipped camera shows), the sparse points or the reference mesh's vertices, the
object's box or sphere where known, and the tet grid's cube, in two orthographic views
(front: looking down -Z, top: looking down -Y). :func:`contact_sheet` lays out a few
training images beside their masks. Both are drawn with PIL, so they need nothing beyond
dmtrec's own dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from dmtrec.io.colmap_model import MODEL_DIRS
from dmtrec.io.contact_sheet import contact_sheet as layout_sheet
from dmtrec.io.image import linear_to_srgb
from dmtrec.render.camera import Cameras

from .base import ImageViews
from .colmap import ColmapViews
from .colmap_normalize import NORMALIZED_RADIUS
from .nerd import POSES_FILE
from .reference_mesh import ReferenceMeshViews

_PANEL = 480
_MARGIN = 24
_COLOURS = {
    "grid": (70, 110, 200),
    "object": (40, 160, 60),
    "points": (90, 90, 90),
    "frustum": (30, 30, 30),
    "top": (220, 40, 40),
    "origin": (200, 120, 0),
}
# (name, axis index drawn to the right, axis drawn up, sign of the up axis)
_VIEWS = (("front (looking down -Z)", 0, 1, 1.0), ("top (looking down -Y)", 0, 2, -1.0))


@dataclass
class SceneContents:
    """What :func:`scene_overview` draws, in dmtrec's world frame.

    Attributes:
        cameras: the training cameras.
        grid_scale: edge of the tet grid's cube (``model.dmtet.scale``), centred at the origin.
        points: ``[P, 3]`` sparse points or mesh vertices (may be empty).
        object_box: ``(min [3], max [3])`` of the object where known.
        object_radius: radius of the object's sphere at the origin where known (COLMAP).
    """

    cameras: Cameras
    grid_scale: float
    points: np.ndarray
    object_box: Optional[Tuple[np.ndarray, np.ndarray]] = None
    object_radius: Optional[float] = None


def frustum_corners(cameras: Cameras, depth: float) -> Tensor:
    """``[B, 4, 3]`` world positions of the image corners (top-left, top-right, bottom-right,
    bottom-left) at ``depth`` in front of each camera, from its projection matrix."""
    proj = cameras.proj
    ndc = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])  # row 0 (clip y = -1) is the top
    # At camera-space z = -1, x_ndc = p00 x - p02 and y_ndc = p11 y - p12 (see perspective_from_intrinsics).
    x = (ndc[None, :, 0] + proj[:, None, 0, 2]) / proj[:, None, 0, 0]
    y = (ndc[None, :, 1] + proj[:, None, 1, 2]) / proj[:, None, 1, 1]
    local = torch.stack([x, y, -torch.ones_like(x), torch.ones_like(x)], -1) * torch.tensor([depth, depth, depth, 1.0])
    return (local @ cameras.c2w.transpose(1, 2))[..., :3]


def scene_overview(contents: SceneContents) -> Image.Image:
    """Two orthographic panels side by side (see the module docstring)."""
    centres = contents.cameras.campos.double().numpy()
    distance = float(np.median(np.linalg.norm(centres, axis=-1))) if len(centres) else 1.0
    corners = frustum_corners(contents.cameras, 0.2 * distance).double().numpy()
    half = contents.grid_scale / 2.0
    extent = max(half, float(np.abs(centres).max()) if len(centres) else half) * 1.08
    canvas = Image.new("RGB", (2 * _PANEL, _PANEL + _MARGIN), "white")
    draw = ImageDraw.Draw(canvas)
    for panel, (title, right, up, sign) in enumerate(_VIEWS):
        offset = panel * _PANEL

        def to_px(p: np.ndarray) -> Tuple[float, float]:
            scale = (_PANEL / 2 - 8) / extent
            return offset + _PANEL / 2 + p[right] * scale, _MARGIN + _PANEL / 2 - sign * p[up] * scale

        draw.text((offset + 8, 6), title, fill=(0, 0, 0))
        _rectangle(draw, to_px, -np.full(3, half), np.full(3, half), _COLOURS["grid"])
        if contents.object_box is not None:
            _rectangle(draw, to_px, *contents.object_box, _COLOURS["object"])
        if contents.object_radius is not None:
            (x0, y0), (x1, y1) = to_px(np.full(3, -contents.object_radius)), to_px(np.full(3, contents.object_radius))
            draw.ellipse([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=_COLOURS["object"])
        for p in contents.points[:: max(1, len(contents.points) // 4000)]:
            x, y = to_px(p)
            draw.point((x, y), fill=_COLOURS["points"])
        ox, oy = to_px(np.zeros(3))
        draw.line([ox - 5, oy, ox + 5, oy], fill=_COLOURS["origin"])
        draw.line([ox, oy - 5, ox, oy + 5], fill=_COLOURS["origin"])
        for centre, quad in zip(centres, corners):
            c = to_px(centre)
            q = [to_px(p) for p in quad]
            for p in q:
                draw.line([c, p], fill=_COLOURS["frustum"])
            draw.line([q[1], q[2], q[3], q[0]], fill=_COLOURS["frustum"])
            draw.line([q[0], q[1]], fill=_COLOURS["top"], width=2)
    draw.line([_PANEL, 0, _PANEL, _PANEL + _MARGIN], fill=(200, 200, 200))
    return canvas


def _rectangle(draw: ImageDraw.ImageDraw, to_px, lo: np.ndarray, hi: np.ndarray, colour) -> None:
    (x0, y0), (x1, y1) = to_px(lo), to_px(hi)
    draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=colour)


def contact_sheet(images: Sequence[Tensor], names: Sequence[str], tile: int = 160) -> Image.Image:
    """Images ``[H, W, 4]`` (linear, straight alpha) over a checkerboard beside their masks, in rows
    of two pairs ``tile`` pixels high, captioned (:func:`dmtrec.io.contact_sheet.contact_sheet`)."""
    pairs = []
    for img in images:
        height, width = img.shape[:2]
        rows, cols = np.indices((height, width)) // 8
        checker = ((rows + cols) % 2 * 0.25 + 0.6)[..., None]
        rgb = linear_to_srgb(img[..., :3].clamp(0, 1)).numpy()
        alpha = img[..., 3:].numpy()
        over = rgb * alpha + checker * (1 - alpha)
        pairs.append(np.concatenate([over, np.repeat(alpha, 3, -1)], axis=1))
    captions = [f"{name} (image | mask)" for name in names]
    return layout_sheet(pairs, columns=2, tile_height=tile, captions=captions, resample="bicubic")


def overview_notes(contents: SceneContents) -> List[str]:
    """One line per thing in the overview that usually means a broken normalisation or pose."""
    notes = []
    half = contents.grid_scale / 2.0
    centres = contents.cameras.campos.double().numpy()
    inside = np.all(np.abs(centres) < half, axis=-1)
    if inside.any():
        notes.append(f"{int(inside.sum())} of {len(centres)} cameras sit inside the tet grid's cube")
    forward = -contents.cameras.c2w[:, :3, 2].double().numpy()
    facing = np.einsum("ij,ij->i", forward, -centres) / np.maximum(np.linalg.norm(centres, axis=-1), 1e-12)
    away = facing < 0.0
    if away.any():
        notes.append(f"{int(away.sum())} of {len(centres)} cameras look away from the origin (flipped poses?)")
    if contents.object_box is not None and (np.abs(np.stack(contents.object_box)) > half).any():
        notes.append(
            f"the object's box reaches outside the tet grid (edge {contents.grid_scale}); raise model.dmtet.scale"
        )
    if contents.object_radius is not None and contents.object_radius > half:
        notes.append(
            f"the object's sphere (radius {contents.object_radius:.2f}) exceeds the tet grid's half-edge {half}"
        )
    if len(contents.points):
        out = float(np.mean(np.any(np.abs(contents.points) > half, axis=-1)))
        if out > 0.5:
            notes.append(f"{out:.0%} of the sparse points lie outside the tet grid (background, or a bad radius)")
    return notes


def detect_kind(folder) -> Optional[str]:
    """The data kind of a dataset folder by its files (None if none matches)."""
    from pathlib import Path

    folder = Path(folder)
    if any((folder / f"transforms_{split}.json").is_file() for split in ("train", "val", "test")):
        return "nerf_synthetic"
    if (folder / POSES_FILE).is_file():
        return "nerd"
    if any((folder / sub / f"cameras{suffix}").is_file() for sub in MODEL_DIRS for suffix in (".bin", ".txt")):
        return "colmap"
    return None


def dataset_contents(dataset, grid_scale: float, max_cameras: int = 200) -> SceneContents:
    """:class:`SceneContents` of a training dataset of any kind (reference meshes: ``max_cameras`` views)."""
    if isinstance(dataset, ReferenceMeshViews):
        cameras = dataset.cameras(range(min(len(dataset), max_cameras))).to("cpu")
        vertices = dataset.scene.mesh.v_pos.detach().cpu().double().numpy()
        box = (vertices.min(0), vertices.max(0))
        return SceneContents(cameras, grid_scale, vertices, object_box=box)
    if not isinstance(dataset, ImageViews):
        raise TypeError(f"cannot inspect a {type(dataset).__name__}")
    if isinstance(dataset, ColmapViews):
        return SceneContents(dataset.cameras, grid_scale, dataset.points, object_radius=NORMALIZED_RADIUS)
    return SceneContents(dataset.cameras, grid_scale, np.zeros((0, 3)))


def sample_images(dataset, count: int) -> Tuple[List[Tensor], List[str]]:
    """``count`` evenly spaced training images ``[H, W, 4]`` of any kind, with their names."""
    total = len(dataset.frames) if isinstance(dataset, ImageViews) else len(dataset)
    picks = sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(min(count, total))})
    if isinstance(dataset, ImageViews):
        return [dataset.image(i) for i in picks], [dataset.image_paths[i].name for i in picks]
    return [dataset[i]["img"].cpu() for i in picks], [f"view {i}" for i in picks]
