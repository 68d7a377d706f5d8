"""Pass-2 geometry: a triangle mesh with fixed topology and learnable vertex positions.

The fit's pass 2 starts from the mesh pass 1 extracted (:class:`dmtrec.geometry.dmtet.DMTetGeometry`
or :class:`dmtrec.geometry.flexicubes.FlexiCubesGeometry`) or from an input mesh; its state dict
keys (``v_pos``, ``t_pos_idx``, ``v_tex``, ``t_tex_idx``, ``initial_pos``) are what checkpoints
hold under ``geometry.``.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor, nn

from dmtrec.core.mesh import Mesh

from .normals import compute_normals, compute_tangents


class MeshGeometry(nn.Module):
    """Vertex positions ``v_pos [V, 3]`` as a parameter; faces and UVs as buffers.

    ``initial_pos`` keeps the positions the pass started from, for nvdiffrec's "relative"
    Laplacian (which penalises the Laplacian of the displacement, not of the shape).
    """

    def __init__(self, v_pos: Tensor, t_pos_idx: Tensor, v_tex: Tensor, t_tex_idx: Tensor, lock_pos: bool = False):
        super().__init__()
        self.v_pos = nn.Parameter(v_pos.detach().clone().float(), requires_grad=not lock_pos)
        self.register_buffer("t_pos_idx", t_pos_idx.detach().clone().long())
        self.register_buffer("v_tex", v_tex.detach().clone().float())
        self.register_buffer("t_tex_idx", t_tex_idx.detach().clone().long())
        self.register_buffer("initial_pos", v_pos.detach().clone().float())

    @classmethod
    def empty_like_state(cls, state_dict: Dict[str, Tensor], prefix: str, lock_pos: bool = False) -> "MeshGeometry":
        """A module with the shapes of a saved one (its values come from ``load_state_dict``)."""
        shapes = {k: state_dict[prefix + k] for k in ("v_pos", "t_pos_idx", "v_tex", "t_tex_idx")}
        return cls(**{k: torch.zeros_like(v) for k, v in shapes.items()}, lock_pos=lock_pos)

    @classmethod
    def from_mesh(cls, mesh: Mesh, lock_pos: bool = False) -> "MeshGeometry":
        if mesh.v_tex is None or mesh.t_tex_idx is None:
            raise ValueError("MeshGeometry needs a mesh with UVs (v_tex, t_tex_idx); unwrap it first")
        return cls(mesh.v_pos, mesh.t_pos_idx, mesh.v_tex, mesh.t_tex_idx, lock_pos)

    def mesh(self) -> Mesh:
        """The current mesh with smooth normals and UV tangents (positions carry gradients)."""
        mesh = Mesh(v_pos=self.v_pos, t_pos_idx=self.t_pos_idx, v_tex=self.v_tex, t_tex_idx=self.t_tex_idx)
        return compute_tangents(compute_normals(mesh))
