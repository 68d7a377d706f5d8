"""Metrics: image (PSNR, SSIM, LPIPS when installed) and geometry (Chamfer, F-score, ...)."""
