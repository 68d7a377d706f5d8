"""Space carving from the training silhouettes: which points some view sees as background.

A pass-1 surface gets its geometry gradient where a silhouette edge or a shaded surface is. A
membrane spanning a through-hole (a button's holes) or a web joining two fins shows no silhouette
edge inside the hole, so nothing in the images pulls it away, and once formed early in a fit it
stays: too low a genus where holes close, extra handles where webs join thin parts (issue 31's
suite). A point that some training view sees as background (its pixel's alpha is 0) lies outside
the object whatever the material or the light: :func:`background_points` finds them, and pass 1
keeps them outside (``model.dmtet.carve_silhouettes``). This is the visual hull: it never cuts the
true object, whose points project inside every silhouette, and it cannot open a concavity that
no view sees through (a cup's well).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .camera import Cameras


@torch.no_grad()
def background_points(
    points: Tensor, cameras: Cameras, alpha: Tensor, margin: int = 1, threshold: float = 0.5
) -> Tensor:
    """``[N]`` bool: which of ``points`` ``[N, 3]`` some view sees as background.

    ``cameras`` holds ``B`` views whose coverage is ``alpha`` ``[B, H, W]`` (row 0 at clip y = -1,
    as the rasterizer writes images). A point is background in a view when it lies in front of the
    camera, projects into the image, and its pixel's alpha, max-pooled over ``(2 margin + 1)²``
    pixels, is below ``threshold``: the silhouette grows by ``margin`` pixels first, so that points
    of the object within a pixel of its outline, whose own pixel is partly covered, are kept.
    Points outside a view's image or behind it tell nothing there.
    """
    height, width = int(alpha.shape[1]), int(alpha.shape[2])
    coverage = alpha.float()[:, None]
    if margin > 0:
        coverage = F.max_pool2d(coverage, 2 * margin + 1, stride=1, padding=margin)
    clip = cameras.project(points.float())  # [B, N, 4]
    w = clip[..., 3]  # distance along the view axis: positive in front of the camera
    ndc = clip[..., :2] / w.clamp_min(1e-8)[..., None]
    x = ((ndc[..., 0] + 1.0) * 0.5 * width).floor().long()
    y = ((ndc[..., 1] + 1.0) * 0.5 * height).floor().long()
    inside = (w > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    batch = torch.arange(clip.shape[0], device=points.device)[:, None].expand_as(x)
    value = coverage[batch, 0, y.clamp(0, height - 1), x.clamp(0, width - 1)]
    return (inside & (value < threshold)).any(0)


def carved_sdf(sdf: Tensor, carved: Tensor) -> Tensor:
    """``[V]`` the SDF (positive inside) with every ``carved`` vertex outside: its value's
    magnitude kept (at least 1e-4), its sign made negative; the others unchanged."""
    return torch.where(carved, -sdf.abs().clamp_min(1e-4), sdf)
