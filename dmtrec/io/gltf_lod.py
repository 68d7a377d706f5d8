"""One ``.glb`` holding several levels of detail of an asset, linked by glTF's ``MSFT_lod`` extension.

Level ``i`` is mesh ``i`` with material ``i`` on node ``i``. Node 0 (the finest level) is the
only scene node; its ``MSFT_lod`` extension lists the coarser nodes ``[1, ..., n-1]`` in order,
and its ``extras.MSFT_screencoverage`` holds one screen-coverage threshold per level, finest
first: level ``i`` is shown while the asset covers at least that fraction of the screen's area
(Babylon.js's reading of the hint; the last value, 0, keeps the coarsest level from being
culled). Viewers without ``MSFT_lod`` show node 0. The mesh encoding is
:func:`dmtrec.io.gltf.write_glb`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from torch import Tensor

from dmtrec.core.atomic import write_bytes_atomic
from dmtrec.core.mesh import Mesh

from .gltf import (
    _ARRAY_BUFFER,
    _ELEMENT_ARRAY_BUFFER,
    PathLike,
    _GlbBuilder,
    _material,
    _vertex_streams,
    primitive_mesh,
)
from .textures import check_textures


def write_lod_glb(
    path: PathLike,
    levels: Sequence[tuple[Mesh, Optional[dict[str, Tensor]]]],
    screen_coverage: Sequence[float],
    occlusion: bool = False,
    skins: Optional[Sequence] = None,
    animations: Sequence = (),
) -> Path:
    """Write ``levels`` (finest first, each ``(mesh, textures)``) as one ``MSFT_lod`` ``.glb`` (atomically).

    Args:
        path: output file.
        levels: meshes with their optional ``kd`` / ``ks`` / ``normal`` maps (need UVs).
        screen_coverage: one threshold per level, decreasing (see the module docstring).
        occlusion: bind ks's R channel as occlusion (off by default: lod clears it).
        skins: one :class:`dmtrec.io.gltf_skin.Skin` per level (the same skeleton, each with its
            level's influences): every level's node is skinned by the one set of joints, which
            ``animations`` drive.
    """
    if not levels:
        raise ValueError("write_lod_glb: no levels")
    if len(screen_coverage) != len(levels):
        raise ValueError(f"write_lod_glb: {len(levels)} levels but {len(screen_coverage)} screen-coverage values")
    if skins is not None and len(skins) != len(levels):
        raise ValueError(f"write_lod_glb: {len(levels)} levels but {len(skins)} skins")
    builder = _GlbBuilder()
    meshes, materials, nodes = [], [], []
    for index, (mesh, textures) in enumerate(levels):
        where = f"write_lod_glb level {index}"
        textures = check_textures(textures or {}, where)
        mesh = primitive_mesh(mesh, textures, where)
        per_vertex = None
        if skins is not None:
            from .gltf_skin import influence_attributes  # lazy: gltf_skin builds on gltf

            per_vertex = influence_attributes(skins[index])
        attributes, indices = _vertex_streams(mesh, None, per_vertex)
        primitive = {
            "attributes": {
                name: builder.accessor(data, _ARRAY_BUFFER, with_bounds=name == "POSITION")
                for name, data in attributes.items()
            },
            "indices": builder.accessor(indices, _ELEMENT_ARRAY_BUFFER),
            "material": index,
            "mode": 4,
        }
        meshes.append({"name": f"lod{index}", "primitives": [primitive]})
        material = _material(builder, textures, occlusion)
        material["name"] = f"lod{index}"
        materials.append(material)
        nodes.append({"name": f"lod{index}", "mesh": index})
    nodes[0]["extensions"] = {"MSFT_lod": {"ids": list(range(1, len(levels)))}}
    nodes[0]["extras"] = {"MSFT_screencoverage": [float(c) for c in screen_coverage]}
    builder.doc.update(meshes=meshes, materials=materials, nodes=nodes, scenes=[{"nodes": [0]}], scene=0)
    builder.doc["extensionsUsed"] = ["MSFT_lod"]
    if skins is not None:
        from .gltf_skin import add_skin

        add_skin(builder, skins[0], animations, mesh_nodes=range(len(levels)))
    path = Path(path)
    write_bytes_atomic(path, builder.glb())
    return path
