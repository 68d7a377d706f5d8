"""Image losses between HDR renders and references, each named for what it computes.

Two families, with distinct config-facing names:

* the **fit's** losses, nvdiffrec's (``train.py`` / ``render/util.py``), chosen by
  ``model.loss`` (:data:`FIT_LOSSES`): "logl1" / "logl2" are L1 / MSE after nvdiffrec's
  tonemap :func:`tonemap_log_srgb` (``log(x + 1)`` then the sRGB curve, unclamped), so that
  bright highlights do not dominate; "smape", "relmse", "mse", "l1" compare linear values.
  The fit's image term (:func:`reconstruction_loss`) is one of them on colour masked by the
  reference alpha plus MSE on alpha.
* the **unlit bake's** per-pixel losses (:data:`PIXEL_LOSSES`, ``dmtrec bake --loss``),
  averaged over covered pixels (:func:`masked_pixel_loss`): "l2" squared linear error and
  "log1p_l1" ``|log1p(a) - log1p(b)|`` (no sRGB curve: a different quantity from the fit's
  "logl1", hence the different name; :data:`PIXEL_LOSS_ALIASES` keeps the bake's old "logl1"
  working), and "srgb_l2", squared error of the displayed sRGB values (clamped to [0, 1]), the
  quantity the bakes' held-out PSNR scores.

Images are channel-last ``[B, H, W, C]`` linear radiance.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import Tensor

from dmtrec.io.image import linear_to_srgb

from .image import composite


def tonemap_log_srgb(x: Tensor) -> Tensor:
    """nvdiffrec's training tonemap: ``srgb(log(clamp(x, 0, 65535) + 1))``, elementwise.

    The sRGB curve is applied without clamping to 1 (log radiance above e - 1 maps above 1),
    so gradients survive for very bright pixels.
    """
    f = torch.log(x.clamp(0.0, 65535.0) + 1.0)
    return torch.where(f > 0.0031308, f.clamp_min(0.0031308) ** (1.0 / 2.4) * 1.055 - 0.055, 12.92 * f)


def tonemapped_l1(img: Tensor, target: Tensor) -> Tensor:
    """Mean absolute difference after :func:`tonemap_log_srgb` (nvdiffrec's "logl1")."""
    return F.l1_loss(tonemap_log_srgb(img), tonemap_log_srgb(target))


def tonemapped_mse(img: Tensor, target: Tensor) -> Tensor:
    """Mean squared difference after :func:`tonemap_log_srgb` (nvdiffrec's "logl2")."""
    return F.mse_loss(tonemap_log_srgb(img), tonemap_log_srgb(target))


def smape(img: Tensor, target: Tensor, eps: float = 0.01) -> Tensor:
    """Symmetric mean absolute percentage error, ``mean(|a - b| / (|a| + |b| + eps))``."""
    return torch.mean((img - target).abs() / (img.abs() + target.abs() + eps))


def relmse(img: Tensor, target: Tensor, eps: float = 0.1) -> Tensor:
    """Relative MSE, ``mean((a - b)^2 / (a^2 + b^2 + eps))``."""
    return torch.mean((img - target) ** 2 / (img * img + target * target + eps))


FIT_LOSSES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "logl1": tonemapped_l1,
    "logl2": tonemapped_mse,
    "smape": smape,
    "mse": F.mse_loss,
    "relmse": relmse,
    "l1": F.l1_loss,
}
"""``model.loss`` values (nvdiffrec's names) and the scalar loss each selects."""


def image_loss(img: Tensor, target: Tensor, kind: str = "logl1") -> Tensor:
    """Scalar :data:`FIT_LOSSES` ``kind`` between two HDR images ``[B, H, W, C]`` (linear radiance);
    nvdiffrec's default is "logl1"."""
    if kind not in FIT_LOSSES:
        raise ValueError(f"unknown image loss {kind!r}; choose one of {', '.join(FIT_LOSSES)}")
    return FIT_LOSSES[kind](img, target)


def over_background(rgba: Tensor, background: Tensor) -> Tensor:
    """Straight-alpha ``rgba [B, H, W, 4]`` over ``background [B, H, W, 3]`` -> ``[B, H, W, 4]``
    (colour composited by :func:`dmtrec.metrics.image.composite`, alpha kept), as nvdiffrec
    prepares its reference images."""
    return torch.cat([composite(rgba, background, "rgba"), rgba[..., 3:4]], dim=-1)


def reconstruction_loss(render: Tensor, target: Tensor, kind: str = "logl1") -> dict:
    """nvdiffrec's image term: MSE on alpha plus ``kind`` on colour masked by the reference alpha.

    Args:
        render: ``[B, H, W, 4]`` shaded render composited over the background, with coverage alpha.
        target: ``[B, H, W, 4]`` reference composited over the same background (:func:`over_background`).

    Returns:
        ``{"alpha": scalar, "color": scalar}``.
    """
    mask = target[..., 3:4]
    return {
        "alpha": F.mse_loss(render[..., 3:4], mask),
        "color": image_loss(render[..., :3] * mask, target[..., :3] * mask, kind),
    }


def squared_error(pred: Tensor, ref: Tensor) -> Tensor:
    """Per-element ``(pred - ref)^2``."""
    return (pred - ref) ** 2


def log1p_abs_error(pred: Tensor, ref: Tensor) -> Tensor:
    """Per-element ``|log1p(pred+) - log1p(ref+)|`` (negative radiance clamped to 0)."""
    return (torch.log1p(pred.clamp_min(0)) - torch.log1p(ref.clamp_min(0))).abs()


def srgb_squared_error(pred: Tensor, ref: Tensor) -> Tensor:
    """Per-element ``(srgb(pred) - srgb(ref))^2``, both clamped to [0, 1] as a display shows them."""
    return (linear_to_srgb(pred) - linear_to_srgb(ref)) ** 2


PIXEL_LOSSES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "l2": squared_error,
    "log1p_l1": log1p_abs_error,
    "srgb_l2": srgb_squared_error,
}
"""``dmtrec bake --loss`` values and the per-element error each selects."""

PIXEL_LOSS_ALIASES = {"logl1": "log1p_l1"}
"""Old ``dmtrec bake --loss`` names, still accepted: the bake's "logl1" always meant log1p-L1."""


def pixel_loss_name(kind: str) -> str:
    """The :data:`PIXEL_LOSSES` name of ``kind`` (aliases resolved); ValueError when unknown."""
    kind = PIXEL_LOSS_ALIASES.get(kind, kind)
    if kind not in PIXEL_LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose one of {tuple(PIXEL_LOSSES)}")
    return kind


def masked_pixel_loss(pred: Tensor, ref: Tensor, weight: Tensor, kind: str) -> Tensor:
    """Weighted mean of the per-pixel :data:`PIXEL_LOSSES` ``kind`` between linear RGB images
    ``[B, H, W, 3]``, ``weight [B, H, W, 1]`` (e.g. the reference's coverage): the sum of
    weighted errors over ``3 * sum(weight)``."""
    err = PIXEL_LOSSES[pixel_loss_name(kind)](pred, ref)
    return (err * weight).sum() / (weight.sum() * 3).clamp_min(1.0)
