"""Backend selection: ``get_rasterizer`` and the nvdiffrast availability probe."""

from __future__ import annotations

import functools
import logging
from typing import Union

import torch

from .base import Rasterizer
from .nvdiffrast_backend import NvdiffrastRasterizer
from .torch_backend import TorchRasterizer

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nvdiffrast", "torch")


@functools.lru_cache(maxsize=None)
def _nvdiffrast_status() -> str:
    """'' when nvdiffrast works here, else the reason it does not (cached per process)."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        import nvdiffrast.torch as dr  # noqa: F401  (lazy: fails without the package)
    except Exception as exc:  # ImportError, or a broken install
        return f"nvdiffrast does not import ({type(exc).__name__}: {exc})"
    try:
        # The plugin is compiled with the CUDA toolkit on first use; this is where that fails.
        dr._get_plugin()
    except Exception as exc:
        return f"nvdiffrast's CUDA plugin does not build or load ({type(exc).__name__}: {exc})"
    return ""


def nvdiffrast_available() -> bool:
    """True when CUDA is present and nvdiffrast imports and its plugin loads."""
    return _nvdiffrast_status() == ""


def get_rasterizer(backend: str = "auto", device: Union[str, torch.device, None] = None) -> Rasterizer:
    """Return a rasterizer for ``device`` (default: CUDA if available, else CPU).

    Args:
        backend: ``"auto"`` (nvdiffrast on a CUDA device where it works, torch otherwise),
            ``"nvdiffrast"`` or ``"torch"``.
        device: where the rasterizer's inputs live.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterizer backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)

    if backend == "auto":
        if device.type == "cuda" and nvdiffrast_available():
            backend = "nvdiffrast"
            log.info("rasterizer: auto picked nvdiffrast on %s", device)
        else:
            reason = "device is not CUDA" if device.type != "cuda" else _nvdiffrast_status()
            backend = "torch"
            log.info("rasterizer: auto picked the torch backend on %s (%s)", device, reason)

    if backend == "nvdiffrast":
        status = _nvdiffrast_status()
        if status:
            raise RuntimeError(
                f"rasterizer backend 'nvdiffrast' is unavailable: {status}. "
                "Install it with `pip install dmtrec[cuda]` on a CUDA machine, or use backend='torch'."
            )
        if device.type != "cuda":
            raise ValueError(f"rasterizer backend 'nvdiffrast' needs a CUDA device, got {device}")
        return NvdiffrastRasterizer(device)

    return TorchRasterizer(device)
