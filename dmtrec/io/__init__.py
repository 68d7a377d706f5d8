"""File IO: images (PNG/HDR, sRGB <-> linear), contact sheets, meshes (OBJ/MTL, GLB) and COLMAP sparse
models (:mod:`.colmap_model`, imported from there: only COLMAP captures need it)."""

from .gltf import GltfReadError, read_glb, write_glb
from .image import ImageReadError, linear_to_srgb, read_hdr, read_image, srgb_to_linear, write_hdr, write_png
from .mesh_files import read_mesh
from .obj import ObjReadError, read_obj, write_obj

__all__ = [
    "GltfReadError",
    "ImageReadError",
    "ObjReadError",
    "linear_to_srgb",
    "read_glb",
    "read_hdr",
    "read_image",
    "read_mesh",
    "read_obj",
    "srgb_to_linear",
    "write_glb",
    "write_hdr",
    "write_obj",
    "write_png",
]
