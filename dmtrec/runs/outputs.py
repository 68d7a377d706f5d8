"""Run outputs: the textured mesh (OBJ/MTL/PNGs and GLB), the learned probe and metrics.json.

Everything is written under a temporary name and renamed into place, so an interrupted export
never leaves a file or the ``mesh/`` folder looking finished. ``dmtrec export``
(:mod:`dmtrec.commands.export`) writes the same files from any checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from dmtrec.core.atomic import atomic_folder, atomic_path, write_json
from dmtrec.geometry import Mesh, compute_normals, transform_mesh
from dmtrec.io.gltf import write_glb
from dmtrec.io.obj import write_obj

log = logging.getLogger(__name__)

MESH_FOLDER = "mesh"
# nvdiffrec's names for the texture files of mesh/mesh.mtl.
TEXTURE_FILES = {"kd": "texture_kd.png", "ks": "texture_ks.png", "normal": "texture_n.png"}
# ks's roughness (G) and metallic (B) alone, for the MTL PBR extension lines (map_Pr, map_Pm).
TEXTURE_FILES.update(roughness="texture_roughness.png", metallic="texture_metallic.png")
GLB_NAME = "mesh.glb"
PROBE_NAME = "probe.hdr"
METRICS_NAME = "metrics.json"


EXPORT_FRAMES = ("dataset", "training")


def export_frame_info(frame: str, train_from_world: Tensor) -> Dict[str, Any]:
    """What ``metrics.json`` says about the frame of the exported files (``frame`` is one of
    :data:`EXPORT_FRAMES`; ``train_from_world`` the datamodule's ``[4, 4]``)."""
    return {
        "obj": frame,
        # glTF is Y-up by definition: the GLB is always in the (Y-up) training frame, which for a
        # Z-up dataset is exactly the Z-up -> Y-up turn Blender's glTF importer undoes.
        "glb": "training (glTF Y-up)",
        "train_from_world": [[float(x) for x in row] for row in train_from_world.tolist()],
    }


def write_outputs(
    out_dir: Path,
    mesh: Mesh,
    textures: Dict[str, Tensor],
    light: Any,
    metrics: Optional[Dict[str, Any]] = None,
    obj_transform: Optional[Tensor] = None,
) -> Dict[str, Path]:
    """Write ``mesh/mesh.obj`` (+ ``.mtl``, ``texture_kd.png``, ``texture_ks.png``,
    ``texture_n.png``, ``texture_roughness.png``, ``texture_metallic.png``), ``mesh.glb``,
    ``probe.hdr`` and, when given, ``metrics.json``.

    Args:
        out_dir: run output folder.
        mesh: mesh with UVs (``v_tex``, ``t_tex_idx``), in the training frame.
        obj_transform: ``[4, 4]`` applied to the OBJ's positions (e.g. training -> dataset
            frame); the GLB stays in the Y-up training frame glTF asks for.
        textures: ``{"kd": [H, W, 3|4] linear, "ks": [H, W, 3] ORM, "normal": [H, W, 3] in [-1, 1]}``.
        light: an environment light with ``save_hdr(path)``.
        metrics: JSON-ready dict.

    Returns:
        The written paths by kind ("obj", "glb", "probe", "metrics").
    """
    out_dir = Path(out_dir)
    textures = {k: v.detach().cpu() for k, v in textures.items() if v is not None}
    mesh, textures = facing_outward(_detached(mesh), textures)
    # The smooth normals render_mesh shades with, written to the OBJ (vn) and GLB (NORMAL) so
    # that a consumer derives the same MikkTSpace tangents for the normal map.
    mesh = compute_normals(mesh)
    paths = {}
    with atomic_folder(out_dir / MESH_FOLDER) as tmp:
        obj_mesh = mesh if obj_transform is None else transform_mesh(mesh, obj_transform)
        write_obj(tmp, obj_mesh, textures, name="mesh", texture_names=TEXTURE_FILES)
    paths["obj"] = out_dir / MESH_FOLDER / "mesh.obj"
    with atomic_path(out_dir / GLB_NAME) as tmp:
        # The GLB holds glTF's occlusion (1 - ks.R, ks.R being nvdiffrec's occlusion amount),
        # so engines and read_glb shade it as the OBJ (raw ks in map_Ks) is shaded in training.
        write_glb(tmp, mesh, textures)
    paths["glb"] = out_dir / GLB_NAME
    with atomic_path(out_dir / PROBE_NAME) as tmp:
        light.save_hdr(tmp)
    paths["probe"] = out_dir / PROBE_NAME
    if metrics is not None:
        write_json(out_dir / METRICS_NAME, metrics)
        paths["metrics"] = out_dir / METRICS_NAME
    return paths


def facing_outward(mesh: Mesh, textures: Dict[str, Tensor]) -> tuple[Mesh, Dict[str, Tensor]]:
    """The mesh wound counter-clockwise seen from outside (positive signed volume), as engines
    expect: they cull back faces and shade with the winding's normals. dmtrec renders two-sided,
    so marching tetrahedra's inside-out winding trains fine but shows the far side of the object
    in an engine. Reversing the winding negates the normals and MikkTSpace's bitangent sign w
    (the UV orientation is measured along the winding) while the tangent ``dp/du`` stays, so
    the bitangent ``w * cross(n, t)`` stays too; dmtrec's two-sided shading negated the whole
    perturbed normal, so the normal map's x and y are negated to give the same shading normals.
    Every writer of engine files (``lod``, ``bake``) should pass its mesh through this."""
    corners = mesh.v_pos[mesh.t_pos_idx].double()
    volume = float((torch.linalg.cross(corners[:, 0], corners[:, 1], dim=-1) * corners[:, 2]).sum()) / 6.0
    if volume >= 0:
        return mesh, textures
    log.info("export: the mesh is wound inside out (signed volume %.4g); writing it reversed", volume)
    order = [0, 2, 1]
    mesh = mesh.copy(
        t_pos_idx=mesh.t_pos_idx[:, order], t_tex_idx=None if mesh.t_tex_idx is None else mesh.t_tex_idx[:, order]
    )
    if "normal" in textures:
        textures = dict(textures, normal=textures["normal"] * torch.tensor([-1.0, -1.0, 1.0]))
    return mesh, textures


def _detached(mesh: Mesh) -> Mesh:
    return Mesh(
        v_pos=mesh.v_pos.detach().cpu(),
        t_pos_idx=mesh.t_pos_idx.cpu(),
        v_tex=None if mesh.v_tex is None else mesh.v_tex.detach().cpu(),
        t_tex_idx=None if mesh.t_tex_idx is None else mesh.t_tex_idx.cpu(),
    )
