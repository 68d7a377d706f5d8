"""The triangle mesh type shared by geometry, rendering and file IO."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Optional

import torch
from torch import Tensor

# (values, indices) field pairs of the optional per-corner attributes.
ATTRIBUTE_PAIRS = (("v_nrm", "t_nrm_idx"), ("v_tex", "t_tex_idx"), ("v_tng", "t_tng_idx"))
_WIDTHS = {"v_pos": (3,), "v_nrm": (3,), "v_tex": (2,), "v_tng": (3, 4)}


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
        v_tng, t_tng_idx: ``[Vg, 3]`` unit tangents, or ``[Vg, 4]`` with the bitangent sign
            ``w`` (bitangent ``w * cross(n, t)``, MikkTSpace/glTF), and ``[F, 3]`` indices (optional).
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

    @classmethod
    def empty(cls, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> "Mesh":
        """A mesh without vertices or faces: ``v_pos`` ``[0, 3]``, ``t_pos_idx`` ``[0, 3]`` int64."""
        return cls(torch.zeros(0, 3, dtype=dtype, device=device), torch.zeros(0, 3, dtype=torch.int64, device=device))

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

    def validate(self, name: str = "mesh") -> "Mesh":
        """Check shapes, dtypes and index ranges; raise ``ValueError`` naming ``name`` and the field.

        Returns ``self`` so that it can be chained.
        """
        for values, indices in (("v_pos", "t_pos_idx"),) + ATTRIBUTE_PAIRS:
            v, idx = getattr(self, values), getattr(self, indices)
            if (v is None) != (idx is None):
                raise ValueError(f"{name}: {values} and {indices} must be given together")
            if v is None:
                continue
            if v.ndim != 2 or v.shape[1] not in _WIDTHS[values] or not v.is_floating_point():
                width = " or ".join(str(w) for w in _WIDTHS[values])
                raise ValueError(f"{name}: {values} must be float [N, {width}], got {tuple(v.shape)} {v.dtype}")
            if idx.ndim != 2 or idx.shape[1] != 3 or idx.is_floating_point() or idx.dtype == torch.bool:
                raise ValueError(f"{name}: {indices} must be integer [F, 3], got {tuple(idx.shape)} {idx.dtype}")
            if idx.shape[0] != self.t_pos_idx.shape[0]:
                raise ValueError(
                    f"{name}: {indices} has {idx.shape[0]} faces but t_pos_idx has {self.t_pos_idx.shape[0]}"
                )
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= v.shape[0]):
                raise ValueError(f"{name}: {indices} holds indices outside [0, {v.shape[0]})")
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"{name}: {values} holds non-finite values")
        return self
