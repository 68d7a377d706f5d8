"""The pure-PyTorch rasterizer backend: nvdiffrast's primitives on any torch device."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

from torch import Tensor

from . import checks
from .base import Rasterizer
from .torch_antialias import TopologyHash, antialias, construct_topology_hash
from .torch_interpolate import interpolate
from .torch_rasterize import rasterize


class TorchRasterizer(Rasterizer):
    """nvdiffrast's ``rasterize``, ``interpolate``, ``texture`` and ``antialias`` in PyTorch.

    Same tensors, values and gradients as nvdiffrast (see each module's docstring for the exact
    rules and the few float-rounding differences). Beyond nvdiffrast it takes zero triangles and
    float64 inputs (for finite-difference gradient checks). Edge cases: degenerate triangles
    draw nothing; back faces are drawn; triangles crossing the near/far plane or ``w = 0`` are
    clipped to the frustum; vertices far outside the viewport are fine; any resolution works.
    """

    name = "torch"

    def rasterize(
        self, pos: Tensor, tri: Tensor, resolution: Sequence[int], ranges: Optional[Tensor] = None, grad_db: bool = True
    ) -> Tuple[Tensor, Tensor]:
        op = "rasterize"
        checks.check_ranges(op, ranges)
        checks.check_pos(op, pos, checks.FLOAT32_OR_64)
        size = checks.check_resolution(op, resolution)
        checks.check_tri(op, tri, num_vertices=pos.shape[-2])
        checks.check_same_device(op, pos=pos, tri=tri)
        return rasterize(pos if pos.dim() == 3 else pos.unsqueeze(0), tri, size, grad_db=bool(grad_db))

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
        checks.check_same_dtype(op, attr=attr, rast=rast, rast_db=rast_db if diff_list is not None else None)
        return interpolate(attr, rast, tri, rast_db, diff_list)

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
        from .torch_texture import texture  # the texture op lives in its own module

        return texture(
            tex,
            uv,
            uv_da=uv_da,
            mip_level_bias=mip_level_bias,
            mip=mip,
            filter_mode=filter_mode,
            boundary_mode=boundary_mode,
            max_mip_level=max_mip_level,
        )

    def construct_mip(self, tex: Tensor, max_mip_level: Optional[int] = None, cube_mode: bool = False) -> object:
        from .torch_texture import construct_mip

        return construct_mip(tex, max_mip_level=max_mip_level, cube_mode=cube_mode)

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
        checks.check_pos(op, pos, checks.FLOAT32_OR_64)
        checks.check_pos_batch(op, pos, rast.shape[0])
        checks.check_tri(op, tri, num_vertices=pos.shape[-2])
        checks.check_same_device(op, color=color, rast=rast, pos=pos, tri=tri)
        checks.check_same_dtype(op, color=color, rast=rast, pos=pos)
        if topology_hash is None:
            topology_hash = construct_topology_hash(tri)
        elif not isinstance(topology_hash, TopologyHash) or topology_hash.opposite.shape[0] != tri.shape[0]:
            raise ValueError(
                f"{op}: topology_hash must come from TorchRasterizer.construct_topology_hash(tri) "
                f"for this tri ({tri.shape[0]} triangles), got {type(topology_hash).__name__}"
            )
        return antialias(color, rast, pos, tri, topology_hash, float(pos_gradient_boost))

    def construct_topology_hash(self, tri: Tensor) -> TopologyHash:
        checks.check_tri("construct_topology_hash", tri)
        if tri.numel() and int(tri.min()) < 0:
            raise ValueError("construct_topology_hash: tri holds negative vertex indices")
        return construct_topology_hash(tri)
