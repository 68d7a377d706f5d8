"""PBR texture maps between memory and files, shared by the OBJ/MTL and GLB formats.

In memory every map is a float32 tensor ``[H, W, C]`` (row 0 = top of the image):

======== ============================================ ===============================
key      in memory                                    in the file (8-bit PNG)
======== ============================================ ===============================
kd       linear RGB (or RGBA, alpha linear)           sRGB-encoded RGB, alpha as is
ks       linear ORM: occlusion, roughness, metallic   the same values (glTF's packing)
normal   tangent-space unit vectors in [-1, 1]        ``n * 0.5 + 0.5`` (OpenGL, +Y up)
======== ============================================ ===============================
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.atomic import atomic_path

from .image import linear_to_srgb, read_image, srgb_to_linear, write_png

TEXTURE_KEYS = ("kd", "ks", "normal")
_CHANNELS = {"kd": (3, 4), "ks": (3,), "normal": (3,)}

ArrayLike = Union[Tensor, np.ndarray]


def check_textures(textures: dict, where: str) -> dict[str, Tensor]:
    """Validate a textures dict (keys from :data:`TEXTURE_KEYS`, ``[H, W, C]`` maps) and return
    it as float32 CPU tensors; ``where`` names the caller in error messages."""
    out = {}
    for key, tex in textures.items():
        if key not in _CHANNELS:
            raise ValueError(f"{where}: unknown texture key {key!r} (expected one of {TEXTURE_KEYS})")
        tex = torch.as_tensor(tex).detach().to("cpu", torch.float32)
        if tex.ndim != 3 or tex.shape[-1] not in _CHANNELS[key] or tex.shape[0] < 1 or tex.shape[1] < 1:
            raise ValueError(
                f"{where}: texture {key!r} must be [H, W, C] with C in {_CHANNELS[key]}, got {tuple(tex.shape)}"
            )
        if not bool(torch.isfinite(tex).all()):
            raise ValueError(f"{where}: texture {key!r} holds non-finite values")
        out[key] = tex
    return out


def encode_texture(key: str, tex: Tensor) -> Tensor:
    """In-memory map -> values in [0, 1] as stored in the file (see the module table)."""
    if key == "kd":
        rgb = linear_to_srgb(tex[..., :3])
        return torch.cat([rgb, tex[..., 3:].clamp(0, 1)], -1)
    if key == "ks":
        return tex.clamp(0, 1)
    if key == "normal":
        n = tex / tex.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return n * 0.5 + 0.5
    raise ValueError(f"unknown texture key {key!r}")


def decode_texture(key: str, img: ArrayLike) -> Tensor:
    """File values ``[H, W, C]`` in [0, 1] -> in-memory map; grey images are expanded to RGB."""
    img = torch.as_tensor(np.asarray(img, dtype=np.float32))
    if img.shape[-1] in (1, 2):  # grey (+ alpha)
        img = torch.cat([img[..., :1].expand(*img.shape[:-1], 3), img[..., 1:]], -1)
    if key == "kd":
        return torch.cat([srgb_to_linear(img[..., :3]), img[..., 3:4]], -1)
    if key == "ks":
        return img[..., :3].contiguous()
    if key == "normal":
        return img[..., :3] * 2.0 - 1.0
    raise ValueError(f"unknown texture key {key!r}")


def write_texture_png(path: Union[str, Path], key: str, tex: Tensor) -> None:
    """Encode and write one map as an 8-bit PNG, atomically."""
    with atomic_path(path) as tmp:
        write_png(tmp, encode_texture(key, tex))


def read_texture(path: Union[str, Path], key: str) -> Tensor:
    """Read a map written by :func:`write_texture_png` (or any image file) into memory form."""
    return decode_texture(key, read_image(path))


def texture_png_bytes(key: str, tex: Tensor) -> bytes:
    """The PNG file :func:`write_texture_png` would write, as bytes (for embedding in GLB)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{key}.png"
        write_png(path, encode_texture(key, tex))
        return path.read_bytes()


def texture_from_image_bytes(data: bytes, key: str, suffix: str = ".png") -> Tensor:
    """Decode an embedded image (PNG or JPEG bytes) into memory form."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"image{suffix}"
        path.write_bytes(data)
        return read_texture(path, key)
