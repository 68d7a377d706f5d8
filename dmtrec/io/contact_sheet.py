"""Contact sheets: images laid out in a grid as one 8-bit RGB picture, optionally captioned.

The one layout the data inspection (image | mask pairs), ``dmtrec lod`` (levels by columns)
and ``dmtrec bake`` (views by bakes) sheets share; callers turn their images into display
values first (e.g. :func:`dmtrec.io.image.linear_to_srgb`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

ImageLike = Union[np.ndarray, torch.Tensor]

MARGIN = 4
"""Pixels left of a captioned tile, and half the space between captioned columns."""
CAPTION = 16
"""Pixels above a captioned tile for its caption."""

_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bicubic": Image.Resampling.BICUBIC}


def to_uint8(img: ImageLike) -> np.ndarray:
    """``[H, W, 3]`` display values in [0, 1] -> uint8, rounded as :func:`dmtrec.io.image.write_png`."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    return np.clip(np.rint(np.nan_to_num(np.asarray(img, dtype=np.float32)) * 255.0), 0, 255).astype(np.uint8)


def contact_sheet(
    tiles: Sequence[ImageLike],
    columns: int,
    tile_height: Optional[int] = None,
    captions: Optional[Sequence[str]] = None,
    resample: str = "nearest",
) -> Image.Image:
    """``tiles`` (``[H, W, 3]`` display values in [0, 1]) row-major in ``columns`` columns.

    Args:
        tile_height: scale every tile to this height, keeping its aspect (``resample``:
            "nearest" or "bicubic"); None keeps the sizes.
        captions: one per tile, drawn above it; a captioned tile sits :data:`MARGIN` pixels
            in, under a :data:`CAPTION`-pixel band, and cells get ``2 * MARGIN`` pixels of
            white between columns and ``CAPTION + 2`` between rows. Without captions the
            tiles abut.
    Returns:
        The sheet, white where no tile is.
    """
    if not tiles:
        raise ValueError("contact_sheet: no tiles")
    images = []
    for tile in tiles:
        image = Image.fromarray(to_uint8(tile), "RGB")
        if tile_height is not None and image.height != tile_height:
            width = max(1, round(tile_height * image.width / image.height))
            image = image.resize((width, tile_height), _RESAMPLE[resample])
        images.append(image)
    pad_x, pad_top, pad_bottom = (MARGIN, CAPTION, 2) if captions is not None else (0, 0, 0)
    cell_w = max(i.width for i in images) + 2 * pad_x
    cell_h = max(i.height for i in images) + pad_top + pad_bottom
    rows = math.ceil(len(images) / columns)
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        sheet.paste(image, (x + pad_x, y + pad_top))
        if captions is not None:
            draw.text((x + pad_x, y + 2), captions[i], fill=(0, 0, 0))
    return sheet
