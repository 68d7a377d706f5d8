"""The triangle mesh type shared by geometry, rendering and file IO."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Optional

import torch
from torch import Tensor


@dataclass
class Mesh:
    """A triangle mesh with optional per-corner attribute indexing (nvdiffrec's layout).

    Positions and attributes have their own index buffers so that UV seams and hard
    normals need no vertex duplication. Faces are int64 (torch indexing); the renderer
    hands ``t_pos_idx.int()`` to the rasterizer.

    Attributes:
        v_pos: ``[V, 3]`` float32 positions.
        t_pos_idx: ``[F, 3]`` int64 position indices, counter-clockwise seen from outside.
        v_nrm, t_nrm_idx: ``[Vn, 3]`` unit normals and ``[F, 3]`` indices (optional).
        v_tex, t_tex_idx: ``[Vt, 2]`` UVs in [0, 1] (v up, OBJ convention) and ``[F, 3]`` indices.
        v_tng, t_tng_idx: ``[Vg, 3]`` unit tangents and ``[F, 3]`` indices (optional).
        material: whatever the renderer uses to shade this mesh (optional).
    """

    v_pos: Tensor
    t_pos_idx: Tensor
    v_nrm: Optional[Tensor] = None
    t_nrm_idx: Optional[Tensor] = None
    v_tex: Optional[Tensor] = None
    t_tex_idx: Optional[Tensor] = None
    v_tng: Optional[Tensor] = None
    t_tng_idx: Optional[Tensor] = None
    material: Any = None

    @property
    def num_vertices(self) -> int:
        return int(self.v_pos.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.t_pos_idx.shape[0])

    @property
    def is_empty(self) -> bool:
        return self.num_faces == 0

    @property
    def device(self) -> torch.device:
        return self.v_pos.device

    def copy(self, **changes: Any) -> "Mesh":
        """Shallow copy with some fields replaced (tensors are shared, not cloned)."""
        return replace(self, **changes)

    def to(self, device: torch.device | str) -> "Mesh":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, Tensor):
                moved[name] = value.to(device)
        return Mesh(**moved)
