"""``interpolate`` in pure PyTorch: nvdiffrast's barycentric attribute blend and its pixel derivatives."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .torch_common import float_to_tri_id


def interpolate(
    attr: Tensor, rast: Tensor, tri: Tensor, rast_db: Optional[Tensor] = None, diff_attrs: Optional[List[int]] = None
) -> Tuple[Tensor, Optional[Tensor]]:
    """Blend vertex attributes with ``rast``'s barycentrics; arguments are assumed checked.

    Args:
        attr: ``[V, A]`` or ``[1, V, A]`` (shared by all images) or ``[B, V, A]``.
        rast: ``[B, H, W, 4]`` from ``rasterize``.
        tri: ``[F, 3]`` triangles; pixels whose id is not in ``[1, F]`` are empty.
        rast_db: ``[B, H, W, 4]`` barycentric pixel derivatives, needed with ``diff_attrs``.
        diff_attrs: non-negative attribute indices whose pixel derivatives to return, or None.

    Returns:
        ``out [B, H, W, A]`` = ``u a[i0] + v a[i1] + (1 - u - v) a[i2]`` and, with ``diff_attrs``,
        ``out_da [B, H, W, 2 D]`` = (da/dX, da/dY) per listed attribute by the chain rule through
        ``rast_db``; both 0 on empty pixels. Gradients reach ``attr``, ``rast[..., :2]`` and ``rast_db``.
    """
    batch, height, width, _ = rast.shape
    num_attrs = attr.shape[-1]
    num_verts = attr.shape[-2]
    ids = float_to_tri_id(rast[..., 3].detach()).reshape(-1)
    pixels = ((ids >= 1) & (ids <= tri.shape[0])).nonzero().squeeze(1)
    vidx = tri.long()[ids[pixels] - 1]  # [n, 3]
    if attr.dim() == 3 and attr.shape[0] > 1:
        item = torch.div(pixels, height * width, rounding_mode="floor")
        vidx = vidx + (item * num_verts).unsqueeze(1)
    corners = attr.reshape(-1, num_attrs).index_select(0, vidx.reshape(-1)).view(-1, 3, num_attrs)

    bary = rast.reshape(-1, 4).index_select(0, pixels)
    u, v = bary[:, 0:1], bary[:, 1:2]
    values = u * corners[:, 0] + v * corners[:, 1] + (1.0 - u - v) * corners[:, 2]
    num_pixels = batch * height * width
    out = values.new_zeros(num_pixels, num_attrs).index_copy(0, pixels, values)
    out = out.view(batch, height, width, num_attrs)
    if not diff_attrs:
        return out, None

    chosen = corners[:, :, diff_attrs]  # [n, 3, D]
    d_du = chosen[:, 0] - chosen[:, 2]
    d_dv = chosen[:, 1] - chosen[:, 2]
    db = rast_db.reshape(-1, 4).index_select(0, pixels)
    d_dx = db[:, 0:1] * d_du + db[:, 2:3] * d_dv
    d_dy = db[:, 1:2] * d_du + db[:, 3:4] * d_dv
    derivs = torch.stack([d_dx, d_dy], 2).reshape(-1, 2 * len(diff_attrs))
    out_da = derivs.new_zeros(num_pixels, derivs.shape[1]).index_copy(0, pixels, derivs)
    return out, out_da.view(batch, height, width, -1)
