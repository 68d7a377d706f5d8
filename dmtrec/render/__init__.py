"""Rendering: rasterizer backends, cameras, light, BSDF, materials and ``render_mesh``."""
