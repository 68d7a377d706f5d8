"""The rasterizer contract shared by every backend.

Every backend takes and returns exactly the tensors of ``nvdiffrast.torch`` (instanced
mode), so code above this package never knows which one it runs on. Conventions:

* ``pos``  ``[B, V, 4]`` float32 clip-space positions (x, y, z, w), OpenGL style:
  a point is inside the view frustum when ``-w <= x, y, z <= w``. A ``[V, 4]`` tensor is
  accepted and treated as ``B = 1``.
* ``tri``  ``[F, 3]`` int32 vertex indices. Both faces of every triangle are drawn.
* ``rast`` ``[B, H, W, 4]`` float32 = (u, v, z/w, triangle_id + 1); all zeros where no
  triangle covers the pixel centre. An attribute ``a`` interpolates as
  ``u * a[i0] + v * a[i1] + (1 - u - v) * a[i2]`` (perspective-correct barycentrics).
  Row 0 of the image is clip-space ``y = -1`` (nvdiffrast does not flip).
* ``rast_db`` ``[B, H, W, 4]`` = (du/dX, du/dY, dv/dX, dv/dY) in pixels, 0 where empty.
* ``resolution`` ``(H, W)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

FILTER_MODES = ("auto", "nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear")
BOUNDARY_MODES = ("wrap", "clamp", "zero", "cube")


class Rasterizer(ABC):
    """nvdiffrast's four primitives behind one interface.

    ``name`` is ``"nvdiffrast"`` or ``"torch"``; ``device`` is where the backend works.
    """

    name: str = "abstract"

    def __init__(self, device: Union[str, torch.device, None] = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    @abstractmethod
    def rasterize(
        self,
        pos: Tensor,
        tri: Tensor,
        resolution: Sequence[int],
        ranges: Optional[Tensor] = None,
        grad_db: bool = True,
    ) -> Tuple[Tensor, Tensor]:
        """Rasterize triangles.

        Args:
            pos: ``[B, V, 4]`` clip-space positions (or ``[V, 4]``).
            tri: ``[F, 3]`` int32 triangles.
            resolution: ``(H, W)`` of the output image.
            ranges: not supported in instanced mode; must be None.
            grad_db: propagate gradients of ``rast_db`` back to ``pos``.

        Returns:
            ``rast [B, H, W, 4]`` and ``rast_db [B, H, W, 4]`` as in the module docstring.
            ``rast``'s (u, v) are differentiable w.r.t. ``pos`` exactly as in nvdiffrast;
            the z/w and triangle-id channels carry no gradient.
        """

    @abstractmethod
    def interpolate(
        self,
        attr: Tensor,
        rast: Tensor,
        tri: Tensor,
        rast_db: Optional[Tensor] = None,
        diff_attrs: Union[None, str, Sequence[int]] = None,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Interpolate vertex attributes over the rasterized triangles.

        Args:
            attr: ``[B, V, A]`` or ``[V, A]`` (broadcast over the batch) float32 attributes.
            rast: ``[B, H, W, 4]`` from :meth:`rasterize`.
            tri: ``[F, 3]`` int32 triangles (the ones that were rasterized).
            rast_db: ``[B, H, W, 4]`` barycentric pixel derivatives; needed for ``diff_attrs``.
            diff_attrs: ``"all"`` or a list of attribute indices whose pixel derivatives to return.

        Returns:
            ``out [B, H, W, A]`` (0 where empty) and ``out_da [B, H, W, 2 * len(diff_attrs)]``
            laid out as (da0/dX, da0/dY, da1/dX, da1/dY, ...) or None.
            Gradients flow to ``attr``, to ``rast``'s (u, v) and to ``rast_db``.
        """

    @abstractmethod
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
        """Sample a 2D texture or a cube map.

        Args:
            tex: ``[B, Ht, Wt, C]`` (2D) or ``[B, 6, S, S, C]`` (cube, with
                ``boundary_mode="cube"``); ``B`` may be 1 and broadcasts.
            uv: ``[B, H, W, 2]`` texture coordinates in [0, 1] (texel centres at
                ``(i + 0.5) / Wt``), or ``[B, H, W, 3]`` directions for cube maps.
            uv_da: ``[B, H, W, 4]`` (2D) or ``[B, H, W, 6]`` (cube) pixel derivatives of ``uv``,
                which select the mip level.
            mip_level_bias: ``[B, H, W]`` added to the level (the level itself without ``uv_da``).
            mip: optional custom mip stack: the levels below ``tex`` (``tex`` not included).
            filter_mode: one of :data:`FILTER_MODES`; "auto" is "linear" without ``uv_da`` and
                ``mip_level_bias`` and "linear-mipmap-linear" with either.
            boundary_mode: one of :data:`BOUNDARY_MODES`.
            max_mip_level: limit on the number of mip levels built and used.

        Returns:
            ``[B, H, W, C]``. Gradients flow to ``tex`` (or the custom ``mip`` levels), ``uv``
            (not in "nearest" mode), ``uv_da`` and ``mip_level_bias`` as in nvdiffrast.
        """

    @abstractmethod
    def antialias(
        self,
        color: Tensor,
        rast: Tensor,
        pos: Tensor,
        tri: Tensor,
        topology_hash: object = None,
        pos_gradient_boost: float = 1.0,
    ) -> Tensor:
        """Analytic antialiasing of silhouette edges (nvdiffrast's ``antialias``).

        Args:
            color: ``[B, H, W, C]`` shaded image.
            rast: ``[B, H, W, 4]`` from :meth:`rasterize` with the same ``pos``/``tri``.
            pos: ``[B, V, 4]`` clip-space positions.
            tri: ``[F, 3]`` int32 triangles.
            topology_hash: optional precomputed silhouette-edge structure for ``tri``
                (from :meth:`construct_topology_hash` of the same backend).
            pos_gradient_boost: multiplier on the gradients to ``pos``.

        Returns:
            ``[B, H, W, C]`` where pixel pairs straddling a silhouette edge are blended by the
            edge's coverage; gradients flow to ``color`` and, through the edge positions, to ``pos``.
        """

    def construct_topology_hash(self, tri: Tensor) -> object:
        """Precompute what :meth:`antialias` needs to know about ``tri``'s edges (optional)."""
        return None

    def construct_mip(self, tex: Tensor, max_mip_level: Optional[int] = None, cube_mode: bool = False) -> object:
        """Build a mip stack for ``tex`` once, to be passed as ``mip=`` to :meth:`texture`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device})"
