"""Validation image grids: reference | render | kd | ks | normal, one row per view."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor

from dmtrec.core.atomic import atomic_path
from dmtrec.io.image import linear_to_srgb, write_png


def _rgb(buffer: Optional[Tensor], like: Tensor) -> Tensor:
    if buffer is None:
        return torch.zeros_like(like[..., :3])
    return buffer.detach()[..., :3].to(like)


def image_grid(reference: Tensor, buffers: Dict[str, Tensor], max_views: int = 4) -> Tensor:
    """Display grid ``[rows * H, 5 * W, 3]`` in [0, 1] (sRGB-encoded).

    Args:
        reference: ``[B, H, W, 3|4]`` linear reference, already composited over the background.
        buffers: the renderer's buffers: ``"shaded"`` (linear, composited), ``"kd"`` (linear
            albedo), ``"ks"`` (ORM, shown as stored), ``"normal"`` (unit vectors, shown as
            ``(n + 1) / 2``); missing ones are drawn black.
        max_views: at most this many rows.
    """
    rows = min(max_views, reference.shape[0])
    ref = reference.detach()[:rows, ..., :3]
    columns = [
        linear_to_srgb(ref),
        linear_to_srgb(_rgb(buffers.get("shaded"), ref)[:rows]),
        linear_to_srgb(_rgb(buffers.get("kd"), ref)[:rows]),
        _rgb(buffers.get("ks"), ref)[:rows].clamp(0, 1),
        ((_rgb(buffers.get("normal"), ref)[:rows] + 1) * 0.5).clamp(0, 1),
    ]
    grid = torch.cat(columns, dim=2)  # [rows, H, 5W, 3]
    return grid.reshape(-1, grid.shape[2], 3).cpu()


def save_grid(path: Path, grid: Tensor) -> None:
    """Write a grid as PNG, atomically."""
    with atomic_path(path) as tmp:
        write_png(tmp, grid)


def log_grid(logger, key: str, grid: Tensor, step: int, caption: str = "") -> None:
    """Send a grid to wandb when the run logs there (other loggers: the PNG on disk suffices)."""
    if isinstance(logger, WandbLogger):
        logger.log_image(key=key, images=[grid.numpy()], caption=[caption or key])
