"""Metrics: image (PSNR, SSIM, LPIPS when installed), geometry (Chamfer, F-score, ...) and the
image losses the fit and the bakes optimise (:mod:`dmtrec.metrics.image_losses`)."""

from .geometry import chamfer, f_score, geometry_report, nearest_neighbors, normal_consistency, sample_surface
from .image import image_metrics, load_lpips, psnr, ssim
from .topology import mesh_topology

__all__ = [
    "chamfer",
    "f_score",
    "geometry_report",
    "image_metrics",
    "load_lpips",
    "mesh_topology",
    "nearest_neighbors",
    "normal_consistency",
    "psnr",
    "sample_surface",
    "ssim",
]
