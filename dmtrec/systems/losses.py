"""Image losses as nvdiffrec computes them.

nvdiffrec compares HDR renders with references after a tonemap (``log(x + 1)`` then the sRGB
curve, without the final clamp to 1) so that bright highlights do not dominate; the loss names
("logl1", "logl2", "smape", "mse", "relmse") and the composite with alpha (:func:`over_background`) follow its
``train.py``/``render/util.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmtrec.metrics.image import composite

IMAGE_LOSSES = ("logl1", "logl2", "smape", "mse", "relmse", "l1")


def tonemap_log_srgb(x: Tensor) -> Tensor:
    """nvdiffrec's training tonemap: ``srgb(log(clamp(x, 0, 65535) + 1))``, elementwise.

    The sRGB curve is applied without clamping to 1 (log radiance above e - 1 maps above 1),
    so gradients survive for very bright pixels.
    """
    f = torch.log(x.clamp(0.0, 65535.0) + 1.0)
    return torch.where(f > 0.0031308, f.clamp_min(0.0031308) ** (1.0 / 2.4) * 1.055 - 0.055, 12.92 * f)


def smape(img: Tensor, target: Tensor, eps: float = 0.01) -> Tensor:
    """Symmetric mean absolute percentage error, ``mean(|a - b| / (|a| + |b| + eps))``."""
    return torch.mean((img - target).abs() / (img.abs() + target.abs() + eps))


def relmse(img: Tensor, target: Tensor, eps: float = 0.1) -> Tensor:
    """Relative MSE, ``mean((a - b)^2 / (a^2 + b^2 + eps))``."""
    return torch.mean((img - target) ** 2 / (img * img + target * target + eps))


def image_loss(img: Tensor, target: Tensor, kind: str = "logl1") -> Tensor:
    """Scalar loss between two HDR images ``[B, H, W, C]`` (linear radiance).

    ``kind``: "logl1"/"logl2" (L1/MSE after :func:`tonemap_log_srgb`; nvdiffrec's default is
    logl1), "smape", "mse", "relmse" or "l1" on linear values.
    """
    if kind in ("logl1", "logl2"):
        img, target = tonemap_log_srgb(img), tonemap_log_srgb(target)
    if kind in ("logl1", "l1"):
        return torch.nn.functional.l1_loss(img, target)
    if kind in ("logl2", "mse"):
        return torch.nn.functional.mse_loss(img, target)
    if kind == "smape":
        return smape(img, target)
    if kind == "relmse":
        return relmse(img, target)
    raise ValueError(f"unknown image loss {kind!r}; choose one of {', '.join(IMAGE_LOSSES)}")


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
        "alpha": torch.nn.functional.mse_loss(render[..., 3:4], mask),
        "color": image_loss(render[..., :3] * mask, target[..., :3] * mask, kind),
    }
