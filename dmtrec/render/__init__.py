"""Rendering: rasterizer backends, cameras, light, BSDF, materials, ``render_mesh`` and visibility
(which grid points a ring of cameras sees: hidden-pocket filling of a pass-1 SDF)."""

from .bake import bake_volumetric
from .camera import Cameras, look_at, perspective
from .camera_distributions import orbit_c2w, random_orbit_c2w
from .light import EnvironmentLight
from .material import Material, Texture2D, TexturedMaterial, VolumetricMaterial
from .raster import Rasterizer, get_rasterizer, nvdiffrast_available
from .render_mesh import render_mesh

__all__ = [
    "Cameras",
    "EnvironmentLight",
    "Material",
    "Rasterizer",
    "Texture2D",
    "TexturedMaterial",
    "VolumetricMaterial",
    "bake_volumetric",
    "get_rasterizer",
    "look_at",
    "nvdiffrast_available",
    "orbit_c2w",
    "perspective",
    "random_orbit_c2w",
    "render_mesh",
]
