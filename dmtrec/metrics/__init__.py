"""Metrics: image (PSNR, SSIM, LPIPS when installed) and geometry (Chamfer, F-score, ...)."""

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
