"""Image files: 8/16-bit PNG (and anything Pillow reads) and Radiance HDR, plus sRGB transfer.

Arrays here are numpy ``[H, W, C]`` float32. LDR files hold sRGB-encoded values in [0, 1];
:func:`srgb_to_linear` / :func:`linear_to_srgb` convert, at file IO only (everything inside
dmtrec is linear radiance).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dmtrec.core.types import PathLike


class ImageReadError(ValueError):
    """An image file is missing, unreadable or malformed; the message names the file."""


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function inverse (IEC 61966-2-1), elementwise, for values in [0, 1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function (IEC 61966-2-1), elementwise; clamps to [0, 1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055)


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as float32 ``[H, W, C]``.

    ``.hdr`` files give linear radiance; other formats (PNG, JPEG, ...) give the stored
    values scaled to [0, 1] (for 16-bit PNGs by 65535), still sRGB-encoded. Grayscale
    becomes ``C = 1``; palette images are expanded to RGB(A).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    if path.suffix.lower() == ".hdr":
        return read_hdr(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32) / 65535.0
            elif img.mode in ("L", "LA", "RGB", "RGBA"):
                arr = np.asarray(img, dtype=np.float32) / 255.0
            else:
                arr = np.asarray(img.convert("RGBA" if "A" in img.mode else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.ascontiguousarray(arr)


def write_png(path: PathLike, img: Union[np.ndarray, torch.Tensor]) -> None:
    """Write ``[H, W, C]`` values in [0, 1] (C = 1, 2, 3 or 4) as an 8-bit PNG, unchanged
    (convert linear data with :func:`linear_to_srgb` first where it is colour)."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"write_png expects [H, W, C] with C in 1..4, got shape {img.shape}")
    u8 = np.clip(np.rint(np.nan_to_num(img) * 255.0), 0, 255).astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[u8.shape[-1]]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(u8[..., 0] if mode == "L" else u8, mode=mode).save(str(path))


_HDR_SIZE = re.compile(rb"^([-+])Y\s+(\d+)\s+([-+])X\s+(\d+)\s*$")


def read_hdr(path: PathLike) -> np.ndarray:
    """Read a Radiance RGBE (``.hdr``) file as float32 ``[H, W, 3]`` linear radiance.

    Supports flat and new-style run-length encoded scanlines with the standard
    ``-Y H +X W`` orientation (row 0 is the top of the image).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read HDR file ({exc.strerror})") from None
    if not (data.startswith(b"#?RADIANCE") or data.startswith(b"#?RGBE")):
        raise ImageReadError(f"{path}: not a Radiance HDR file (missing '#?RADIANCE' header)")
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise ImageReadError(f"{path}: truncated HDR header")
        line = data[pos:end].strip()
        pos = end + 1
        if line.startswith(b"FORMAT="):
            if line != b"FORMAT=32-bit_rle_rgbe":
                raise ImageReadError(f"{path}: unsupported HDR pixel format {line[7:].decode(errors='replace')}")
        if line == b"":
            break
    end = data.find(b"\n", pos)
    match = _HDR_SIZE.match(data[pos : end if end >= 0 else len(data)].strip())
    if not match or match.group(1) != b"-" or match.group(3) != b"+":
        raise ImageReadError(f"{path}: unsupported HDR resolution line (only '-Y H +X W' is supported)")
    height, width = int(match.group(2)), int(match.group(4))
    pos = end + 1
    buf = np.frombuffer(data, dtype=np.uint8, offset=pos)
    rgbe = np.empty((height, width, 4), dtype=np.uint8)
    i = 0
    try:
        for y in range(height):
            if 8 <= width < 32768 and buf[i] == 2 and buf[i + 1] == 2 and (buf[i + 2] & 0x80) == 0:
                if (int(buf[i + 2]) << 8 | int(buf[i + 3])) != width:
                    raise ImageReadError(f"{path}: corrupt RLE scanline {y}")
                i += 4
                for c in range(4):
                    x = 0
                    row = rgbe[y, :, c]
                    while x < width:
                        count = int(buf[i])
                        i += 1
                        if count > 128:
                            count -= 128
                            row[x : x + count] = buf[i]
                            i += 1
                        else:
                            row[x : x + count] = buf[i : i + count]
                            i += count
                        x += count
                    if x != width:
                        raise ImageReadError(f"{path}: corrupt RLE scanline {y}")
            else:
                rgbe[y] = buf[i : i + 4 * width].reshape(width, 4)
                i += 4 * width
    except (IndexError, ValueError):
        raise ImageReadError(f"{path}: truncated HDR pixel data") from None
    exponent = rgbe[..., 3].astype(np.int32)
    scale = np.where(exponent > 0, np.ldexp(1.0, exponent - 136), 0.0).astype(np.float32)
    offset = np.float32(0.5) * (exponent[..., None] > 0)
    return ((rgbe[..., :3].astype(np.float32) + offset) * scale[..., None]).astype(np.float32)


def write_hdr(path: PathLike, img: Union[np.ndarray, torch.Tensor]) -> None:
    """Write float ``[H, W, 3]`` linear radiance as a flat (uncompressed) Radiance RGBE file."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    img = np.nan_to_num(np.asarray(img, dtype=np.float32)).clip(min=0.0)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"write_hdr expects [H, W, 3], got shape {img.shape}")
    height, width, _ = img.shape
    peak = img.max(axis=-1)
    mantissa, exponent = np.frexp(peak)
    valid = peak > 1e-32
    scale = np.where(valid, mantissa * 256.0 / np.where(valid, peak, 1.0), 0.0)
    rgbe = np.zeros((height, width, 4), dtype=np.uint8)
    rgbe[..., :3] = np.clip(img * scale[..., None], 0, 255).astype(np.uint8)
    rgbe[..., 3] = np.where(valid, exponent + 128, 0).astype(np.uint8)
    header = f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n".encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(rgbe.tobytes())
