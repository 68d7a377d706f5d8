"""The nvdiffrast backend: NVIDIA's CUDA primitives behind :class:`Rasterizer`.

nvdiffrast is an optional, non-commercially licensed extra: this module imports it only inside
the methods, so the class can be imported and constructed without it. The CUDA rasterizer
context is created on first use on ``self.device``.

Differences smoothed over, so both backends answer alike: ``[V, 4]`` positions are rasterized
as a batch of one, zero triangles give empty outputs (nvdiffrast refuses them), ``interpolate``
returns ``None`` rather than an empty tensor when no pixel derivatives are asked for, and
arguments are checked up front with clear errors.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import checks
from .base import Rasterizer
from .torch_antialias import TopologyHash


def _dr():
    try:
        import nvdiffrast.torch as dr  # lazy: optional dependency
    except ImportError as exc:
        raise RuntimeError(
            "the nvdiffrast backend needs nvdiffrast: install it with `pip install dmtrec[cuda]` "
            f"on a CUDA machine, or use the torch backend ({exc})"
        ) from exc
    return dr


class NvdiffrastRasterizer(Rasterizer):
    """nvdiffrast's ``rasterize`` / ``interpolate`` / ``texture`` / ``antialias`` on a CUDA device."""

    name = "nvdiffrast"

    def __init__(self, device: Union[str, torch.device, None] = None):
        super().__init__(device if device is not None else "cuda")
        self._context = None

    @property
    def context(self):
        """The ``RasterizeCudaContext`` on ``self.device``, created on first use."""
        if self._context is None:
            self._context = _dr().RasterizeCudaContext(device=self.device)
        return self._context

    def rasterize(
        self, pos: Tensor, tri: Tensor, resolution: Sequence[int], ranges: Optional[Tensor] = None, grad_db: bool = True
    ) -> Tuple[Tensor, Tensor]:
        op = "rasterize"
        checks.check_ranges(op, ranges)
        checks.check_pos(op, pos)
        height, width = checks.check_resolution(op, resolution)
        checks.check_tri(op, tri, num_vertices=pos.shape[-2])
        checks.check_same_device(op, pos=pos, tri=tri)
        pos = pos if pos.dim() == 3 else pos.unsqueeze(0)
        if tri.shape[0] == 0:
            empty = pos.new_zeros(pos.shape[0], height, width, 4) + 0 * pos.sum()  # keeps the graph to pos
            return empty, empty.clone()
        return _dr().rasterize(self.context, pos.contiguous(), tri.contiguous(), (height, width), grad_db=bool(grad_db))

    def interpolate(
        self,
        attr: Tensor,
        rast: Tensor,
        tri: Tensor,
        rast_db: Optional[Tensor] = None,
        diff_attrs: Union[None, str, Sequence[int]] = None,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        op = "interpolate"
        diff_list = checks.check_interpolate_args(op, attr, rast, tri, rast_db, diff_attrs)
        if tri.shape[0] == 0:
            batch, height, width, _ = rast.shape
            out = attr.new_zeros(batch, height, width, attr.shape[-1]) + 0 * attr.sum() + 0 * rast.sum()
            da = None if diff_list is None else out.new_zeros(batch, height, width, 2 * len(diff_list))
            return out, da
        out, da = _dr().interpolate(
            attr.contiguous(),
            rast.contiguous(),
            tri.contiguous(),
            rast_db=None if rast_db is None else rast_db.contiguous(),
            diff_attrs=diff_list,
        )
        return out, (da if diff_list is not None else None)

    def texture(
        self,
        tex: Tensor,
        uv: Tensor,
        uv_da: Optional[Tensor] = None,
        mip_level_bias: Optional[Tensor] = None,
        mip: Optional[List[Tensor]] = None,
        filter_mode: str = "auto",
        boundary_mode: str = "wrap",
        max_mip_level: Optional[int] = None,
    ) -> Tensor:
        # nvdiffrast needs every input tensor contiguous (its C++ checks), the optional ones too.
        return _dr().texture(
            tex.contiguous(),
            uv.contiguous(),
            uv_da=None if uv_da is None else uv_da.contiguous(),
            mip_level_bias=None if mip_level_bias is None else mip_level_bias.contiguous(),
            mip=[level.contiguous() for level in mip] if isinstance(mip, (list, tuple)) else mip,
            filter_mode=filter_mode,
            boundary_mode=boundary_mode,
            max_mip_level=max_mip_level,
        )

    def construct_mip(self, tex: Tensor, max_mip_level: Optional[int] = None, cube_mode: bool = False) -> object:
        return _dr().texture_construct_mip(tex.contiguous(), max_mip_level=max_mip_level, cube_mode=bool(cube_mode))

    def antialias(
        self,
        color: Tensor,
        rast: Tensor,
        pos: Tensor,
        tri: Tensor,
        topology_hash: object = None,
        pos_gradient_boost: float = 1.0,
    ) -> Tensor:
        op = "antialias"
        checks.check_rast(op, rast)
        checks.check_image(op, color, rast)
        checks.check_pos(op, pos)
        checks.check_pos_batch(op, pos, rast.shape[0])
        checks.check_tri(op, tri, num_vertices=pos.shape[-2])
        checks.check_same_device(op, color=color, rast=rast, pos=pos, tri=tri)
        if isinstance(topology_hash, TopologyHash):
            raise ValueError(
                f"{op}: topology_hash comes from the torch backend; build it with "
                "NvdiffrastRasterizer.construct_topology_hash(tri)"
            )
        if tri.shape[0] == 0:
            return color + 0 * pos.sum()  # nothing is drawn, so nothing to antialias
        return _dr().antialias(
            color.contiguous(),
            rast.contiguous(),
            pos.contiguous(),
            tri.contiguous(),
            topology_hash=topology_hash,
            pos_gradient_boost=float(pos_gradient_boost),
        )

    def construct_topology_hash(self, tri: Tensor) -> object:
        checks.check_tri("construct_topology_hash", tri)
        if tri.shape[0] == 0:
            return None
        return _dr().antialias_construct_topology_hash(tri.contiguous())
