"""Argument checks shared by the rasterizer backends.

Each check raises a ``ValueError`` that names the operation, the argument and what is wrong
with it, so bad input fails at the call instead of deep inside a kernel or a torch op.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

FLOAT32_ONLY = (torch.float32,)
# The torch backend also takes float64 so that finite-difference gradient checks can run in
# double precision; nvdiffrast takes float32 only.
FLOAT32_OR_64 = (torch.float32, torch.float64)


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"{str(x.dtype).replace('torch.', '')} tensor of shape {list(x.shape)} on {x.device}"
    return type(x).__name__


def _dtype_names(dtypes: Sequence[torch.dtype]) -> str:
    return " or ".join(str(d).replace("torch.", "") for d in dtypes)


def check_tri(op: str, tri: object, num_vertices: Optional[int] = None) -> Tensor:
    """``tri`` must be an int32 ``[F, 3]`` tensor (F may be 0) with indices in ``[0, num_vertices)``."""
    if not isinstance(tri, Tensor) or tri.dtype != torch.int32 or tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"{op}: tri must be an int32 tensor of shape [F, 3], got {_describe(tri)}")
    if num_vertices is not None and tri.numel() > 0:
        lo, hi = int(tri.min()), int(tri.max())
        if lo < 0 or hi >= num_vertices:
            raise ValueError(f"{op}: tri holds vertex indices in [{lo}, {hi}] but pos has {num_vertices} vertices")
    return tri


def check_pos(op: str, pos: object, dtypes: Sequence[torch.dtype] = FLOAT32_ONLY) -> Tensor:
    """``pos`` must be a float ``[B, V, 4]`` or ``[V, 4]`` tensor of clip-space positions."""
    if (
        not isinstance(pos, Tensor)
        or pos.dtype not in dtypes
        or pos.dim() not in (2, 3)
        or pos.shape[-1] != 4
        or (pos.dim() == 3 and pos.shape[0] == 0)
    ):
        raise ValueError(
            f"{op}: pos must be a {_dtype_names(dtypes)} tensor of shape [B, V, 4] or [V, 4] "
            f"(clip-space x, y, z, w), got {_describe(pos)}"
        )
    return pos


def check_resolution(op: str, resolution: object) -> Tuple[int, int]:
    """``resolution`` must be two positive integers ``(H, W)``."""
    try:
        h, w = (int(r) for r in resolution)  # type: ignore[union-attr]
        ok = h > 0 and w > 0 and all(float(r) == int(r) for r in resolution)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{op}: resolution must be two positive integers (H, W), got {resolution!r}")
    return h, w


def check_ranges(op: str, ranges: object) -> None:
    if ranges is not None:
        raise ValueError(
            f"{op}: ranges (nvdiffrast's range mode) is not supported; pass pos as [B, V, 4] "
            "(instanced mode) and leave ranges=None"
        )


def check_rast(op: str, rast: object, name: str = "rast", like: Optional[Tensor] = None) -> Tensor:
    """``rast``-like tensors are float ``[B, H, W, 4]``; with ``like``, batch and size must match it."""
    if not isinstance(rast, Tensor) or not rast.is_floating_point() or rast.dim() != 4 or rast.shape[-1] != 4:
        raise ValueError(f"{op}: {name} must be a float tensor of shape [B, H, W, 4], got {_describe(rast)}")
    if like is not None and rast.shape[:3] != like.shape[:3]:
        raise ValueError(
            f"{op}: {name} has shape {list(rast.shape)} but rast has {list(like.shape)}; "
            "batch, height and width must match"
        )
    return rast


def check_image(op: str, image: object, rast: Tensor, name: str = "color") -> Tensor:
    """An image ``[B, H, W, C]`` with the batch and size of ``rast``."""
    if (
        not isinstance(image, Tensor)
        or not image.is_floating_point()
        or image.dim() != 4
        or image.shape[:3] != rast.shape[:3]
        or image.shape[3] == 0
    ):
        raise ValueError(
            f"{op}: {name} must be a float tensor of shape [B, H, W, C] matching rast "
            f"{list(rast.shape[:3])}, got {_describe(image)}"
        )
    return image


def check_attr(op: str, attr: object, rast: Tensor) -> Tensor:
    """``attr`` must be ``[V, A]`` or ``[B, V, A]`` with B equal to rast's batch or 1."""
    if not isinstance(attr, Tensor) or not attr.is_floating_point() or attr.dim() not in (2, 3) or attr.shape[-1] == 0:
        raise ValueError(f"{op}: attr must be a float tensor of shape [V, A] or [B, V, A], got {_describe(attr)}")
    if attr.dim() == 3 and attr.shape[0] not in (1, rast.shape[0]):
        raise ValueError(
            f"{op}: attr has batch size {attr.shape[0]} but rast has {rast.shape[0]}; "
            "use the same batch size or 1 to broadcast"
        )
    return attr


def check_pos_batch(op: str, pos: Tensor, batch: int) -> None:
    if pos.dim() == 3 and pos.shape[0] != batch:
        raise ValueError(f"{op}: pos has batch size {pos.shape[0]} but rast has {batch}")


def check_same_device(op: str, **tensors: Optional[Tensor]) -> None:
    devices = {name: t.device for name, t in tensors.items() if isinstance(t, Tensor)}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {listed}")


def check_same_dtype(op: str, **tensors: Optional[Tensor]) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items() if isinstance(t, Tensor)}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {str(dt).replace('torch.', '')}" for name, dt in dtypes.items())
        raise ValueError(f"{op}: float inputs must share one dtype, got {listed}")


def normalize_diff_attrs(op: str, diff_attrs: object, num_attrs: int) -> Optional[list]:
    """``"all"`` or a sequence of attribute indices (negative ones count from the end) -> list or None."""
    if diff_attrs is None:
        return None
    if isinstance(diff_attrs, str):
        if diff_attrs != "all":
            raise ValueError(f"{op}: diff_attrs must be 'all' or a list of attribute indices, got {diff_attrs!r}")
        return list(range(num_attrs))
    try:
        indices = [int(i) for i in diff_attrs]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{op}: diff_attrs must be 'all' or a list of attribute indices, got {diff_attrs!r}") from None
    bad = [i for i in indices if not -num_attrs <= i < num_attrs]
    if bad:
        raise ValueError(f"{op}: diff_attrs {bad} out of range for {num_attrs} attributes")
    return [i % num_attrs for i in indices] or None


def check_interpolate_args(
    op: str, attr: object, rast: object, tri: object, rast_db: object, diff_attrs: object
) -> Optional[list]:
    """Validate ``interpolate``'s arguments (both backends); returns the normalized ``diff_attrs``."""
    check_rast(op, rast)
    check_attr(op, attr, rast)
    check_tri(op, tri, num_vertices=attr.shape[-2])
    diff_list = normalize_diff_attrs(op, diff_attrs, attr.shape[-1])
    if diff_list is not None:
        if rast_db is None:
            raise ValueError(f"{op}: diff_attrs needs rast_db (the second output of rasterize)")
        check_rast(op, rast_db, name="rast_db", like=rast)
    check_same_device(op, attr=attr, rast=rast, tri=tri, rast_db=rast_db)
    return diff_list
