"""File IO: images (PNG/HDR, sRGB <-> linear) and meshes (OBJ/MTL, GLB)."""
