"""Image metrics on held-out views: PSNR, SSIM and (when installed locally) LPIPS.

:func:`image_metrics` scores rendered views the way nvdiffrec's ``validate`` does
(``train.py``): the reference RGBA is composited over the evaluation background in linear
space, both images go through the sRGB transfer function, are clamped to [0, 1], and the
metrics compare those display-referred values. nvdiffrec reports the mean over views of
the per-view PSNR (not the PSNR of the mean MSE); the functions here return per-view values
so callers can average the same way.

All images are channel-last ``[B, H, W, C]`` float tensors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from dmtrec.io.image import linear_to_srgb

log = logging.getLogger(__name__)

LpipsFn = Callable[[Tensor, Tensor], Tensor]


def _check_pair(pred: Tensor, ref: Tensor) -> None:
    if not isinstance(pred, Tensor) or not isinstance(ref, Tensor):
        raise TypeError(f"pred and ref must be tensors, got {type(pred).__name__} and {type(ref).__name__}")
    if pred.ndim != 4:
        raise ValueError(f"pred must be [B, H, W, C], got shape {tuple(pred.shape)}")
    if pred.shape != ref.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and ref {tuple(ref.shape)} must have the same shape")


def psnr(pred: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    Args:
        pred, ref: ``[B, H, W, C]`` images.
        data_range: the peak value (1 for images in [0, 1]).

    Returns:
        ``[B]``: ``10 log10(data_range^2 / MSE)``, MSE averaged over H, W and C;
        ``inf`` where the images are identical.
    """
    _check_pair(pred, ref)
    mse = (pred - ref).square().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_kernel(size: int, sigma: float, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2.0
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def ssim(
    pred: Tensor,
    ref: Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity (Wang et al. 2004) per image, differentiable.

    Local statistics use a normalised ``window_size`` x ``window_size`` Gaussian window
    (standard deviation ``sigma``) over each channel separately, evaluated only where the
    window fits inside the image (MATLAB ``filter2(..., 'valid')`` as in the reference
    implementation; no padding). Covariances are population (divide-by-N) weighted moments.
    ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with ``L = data_range``. The statistics are computed
    in float64: in float32, ``E[x^2] - E[x]^2`` over flat regions (a uniform background) leaves
    rounding noise comparable to ``C2`` and shifts SSIM in the third decimal.

    Args:
        pred, ref: ``[B, H, W, C]`` images with H, W >= ``window_size``.

    Returns:
        ``[B]``: the SSIM map averaged over valid pixels and channels (1 for identical images).
    """
    _check_pair(pred, ref)
    height, width = pred.shape[1:3]
    if height < window_size or width < window_size:
        raise ValueError(f"ssim needs images of at least {window_size}x{window_size} pixels, got {height}x{width}")
    channels = pred.shape[-1]
    x = pred.permute(0, 3, 1, 2).double()
    y = ref.permute(0, 3, 1, 2).double()
    kernel = _gaussian_kernel(window_size, sigma, x)
    kx = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, window_size)
    ky = kernel.view(1, 1, -1, 1).expand(channels, 1, window_size, 1)

    def blur(img: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(img, kx, groups=channels), ky, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov_xy = blur(x * y) - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3)).to(pred.dtype)


# torchvision checkpoints the LPIPS backbones load; torchvision would download them on
# first use, which an evaluation must never do, so their presence is checked up front.
_LPIPS_BACKBONE_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def load_lpips(net: str = "alex", device: Union[str, torch.device] = "cpu") -> Optional[LpipsFn]:
    """LPIPS (Zhang et al. 2018) from the ``lpips`` package, only if everything is local.

    Never downloads: returns ``None`` (and logs why) unless the ``lpips`` package imports,
    its linear-layer weights ship with it, and torchvision's ImageNet backbone checkpoint
    is already in the torch hub cache (``torch.hub.get_dir()/checkpoints``).

    Returns:
        ``fn(pred, ref) -> [B]`` taking ``[B, H, W, 3]`` display-referred images in [0, 1]
        (the package's own convention is NCHW in [-1, 1]; the conversion happens inside).
    """
    if net not in _LPIPS_BACKBONE_WEIGHTS:
        raise ValueError(f"load_lpips: net must be one of {sorted(_LPIPS_BACKBONE_WEIGHTS)}, got {net!r}")
    try:
        import lpips
        import torchvision.models
    except ImportError as exc:
        log.info("LPIPS skipped: %s (install `lpips` with its weights to report it)", exc)
        return None
    linear_weights = Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / f"{net}.pth"
    if not linear_weights.is_file():
        log.info("LPIPS skipped: linear-layer weights not found at %s", linear_weights)
        return None
    backbone = getattr(torchvision.models, _LPIPS_BACKBONE_WEIGHTS[net]).IMAGENET1K_V1
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(backbone.url).name
    if not checkpoint.is_file():
        log.info("LPIPS skipped: backbone checkpoint not found at %s (it would have to be downloaded)", checkpoint)
        return None
    model = lpips.LPIPS(net=net, verbose=False).eval().to(device)
    model.requires_grad_(False)

    def to_model_input(img: Tensor) -> Tensor:
        return img.permute(0, 3, 1, 2).to(device) * 2.0 - 1.0

    def lpips_fn(pred: Tensor, ref: Tensor) -> Tensor:
        return model(to_model_input(pred), to_model_input(ref)).flatten()

    return lpips_fn


def composite(rgba_or_rgb: Tensor, background: Optional[Union[Tensor, float]], name: str) -> Tensor:
    """Linear RGB of an image: RGBA (straight alpha) blended over ``background``, RGB as is.

    Args:
        rgba_or_rgb: ``[B, H, W, 3]`` or ``[B, H, W, 4]`` linear image.
        background: ``[B, H, W, 3]`` (or broadcastable, or a float) linear background;
            required when the image has an alpha channel.
        name: the argument name used in error messages.
    """
    channels = rgba_or_rgb.shape[-1]
    if channels == 3:
        return rgba_or_rgb
    if channels != 4:
        raise ValueError(f"{name} must have 3 (RGB) or 4 (RGBA) channels, got shape {tuple(rgba_or_rgb.shape)}")
    if background is None:
        raise ValueError(f"{name} has an alpha channel: pass the evaluation background to composite it over")
    background = torch.as_tensor(background, dtype=rgba_or_rgb.dtype, device=rgba_or_rgb.device)
    return torch.lerp(background, rgba_or_rgb[..., :3], rgba_or_rgb[..., 3:4])


def image_metrics(
    pred_rgb_linear: Tensor,
    ref_rgb_linear: Tensor,
    background: Optional[Union[Tensor, float]] = None,
    lpips_fn: Optional[LpipsFn] = None,
) -> Dict[str, Tensor]:
    """Per-view image metrics in nvdiffrec's convention (``train.py: validate``).

    Both images are made linear RGB over the same background (RGBA inputs are composited
    with their straight alpha; RGB inputs are taken as already composited), converted to
    sRGB and clamped to [0, 1]; MSE, PSNR (peak 1) and SSIM compare those values.

    Args:
        pred_rgb_linear: ``[B, H, W, 3|4]`` rendered linear radiance (HDR allowed).
        ref_rgb_linear: ``[B, H, W, 3|4]`` reference linear image, usually RGBA.
        background: linear background, ``[B, H, W, 3]``, broadcastable, or a float
            (nvdiffrec's NeRF-synthetic and reference-mesh configs evaluate on white, 1.0).
        lpips_fn: from :func:`load_lpips`; when given, adds ``"lpips"``.

    Returns:
        ``{"mse": [B], "psnr": [B], "ssim": [B]}`` (+ ``"lpips": [B]``), one value per view.
    """
    for name, img in (("pred_rgb_linear", pred_rgb_linear), ("ref_rgb_linear", ref_rgb_linear)):
        if not isinstance(img, Tensor) or img.ndim != 4:
            raise ValueError(f"{name} must be a [B, H, W, C] tensor, got {getattr(img, 'shape', type(img).__name__)}")
    pred = linear_to_srgb(composite(pred_rgb_linear, background, "pred_rgb_linear"))
    ref = linear_to_srgb(composite(ref_rgb_linear, background, "ref_rgb_linear"))
    if pred.shape != ref.shape:
        raise ValueError(
            f"pred_rgb_linear {tuple(pred_rgb_linear.shape)} and ref_rgb_linear "
            f"{tuple(ref_rgb_linear.shape)} differ in batch or resolution"
        )
    result = {
        "mse": (pred - ref).square().mean(dim=(1, 2, 3)),
        "psnr": psnr(pred, ref),
        "ssim": ssim(pred, ref),
    }
    if lpips_fn is not None:
        result["lpips"] = lpips_fn(pred, ref)
    return result
