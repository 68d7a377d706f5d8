"""Binary glTF 2.0 (``.glb``) with a metallic-roughness PBR material, read and write.

Written files hold one mesh, one material and embedded PNG textures:

- ``baseColorTexture`` from ``kd`` (sRGB PNG; alpha blending when kd has alpha below 1),
- ``metallicRoughnessTexture`` and ``occlusionTexture`` share one ORM image made from ``ks``:
  glTF reads roughness from G, metallic from B and occlusion from R. dmtrec's ks.R is an
  occlusion *amount* (shading scales by ``1 - R``, nvdiffrec's layout) while glTF's occlusion
  is a visibility (1 = unoccluded), so the image's R channel holds ``1 - ks.R``; the reader
  inverts it back, and a file without an occlusion map reads as ``ks.R = 0`` (unoccluded),
- ``normalTexture`` from ``normal`` (tangent space, OpenGL +Y up as glTF specifies), with a
  ``TANGENT`` attribute: MikkTSpace tangents with the bitangent sign in w
  (:func:`dmtrec.geometry.normals.compute_tangents`, the frame dmtrec trains and renders with),
  so engines use the frame the normal map was optimised in instead of deriving their own.

glTF keeps one index per vertex, so corners with different (position, UV, normal) index
triples become separate vertices; glTF's UV origin is the top-left, so ``v_gltf = 1 - v``.
The reader welds identical positions back together. No third-party package is needed for
either direction.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.atomic import write_bytes_atomic
from dmtrec.core.mesh import Mesh
from dmtrec.core.types import PathLike

from ..geometry.normals import compute_normals, compute_tangents
from .textures import check_textures, texture_from_image_bytes, texture_png_bytes

log = logging.getLogger(__name__)


_GLB_MAGIC, _JSON_CHUNK, _BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942
_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}


class GltfReadError(ValueError):
    """A GLB file is missing, malformed or uses an unsupported feature; the message names the file."""


def write_glb(
    path: PathLike,
    mesh: Mesh,
    textures: Optional[dict[str, Tensor]] = None,
    occlusion: bool = True,
    unlit: bool = False,
    vertex_color: Optional[Tensor] = None,
    skin=None,
    animations=(),
) -> Path:
    """Write ``mesh`` and its PBR maps as a self-contained ``.glb`` file (atomically).

    Args:
        path: output file.
        mesh: the mesh; smooth normals are computed when it has none (glTF would shade flat).
        textures: optional maps in memory form, keys ``kd``, ``ks`` (ORM), ``normal``; they
            need UVs on the mesh.
        occlusion: bind the ORM image's R channel (``1 - ks.R``, glTF's visibility) as the
            occlusion map; off, viewers ignore ks.R (and the reader sees no occlusion).
        unlit: mark the material ``KHR_materials_unlit`` (viewers show the base colour as is).
        vertex_color: ``[V, 3]`` linear colours per position vertex, written as ``COLOR_0``
            (glTF multiplies them into the base colour).
        skin: a :class:`dmtrec.io.gltf_skin.Skin` of the mesh's position vertices: its joints,
            ``JOINTS_0`` / ``WEIGHTS_0`` and ``animations`` (:class:`~dmtrec.io.gltf_skin.Animation`) are written too.
    Returns:
        ``path`` as a :class:`Path`.
    """
    textures = check_textures(textures or {}, "write_glb")
    mesh = primitive_mesh(mesh, textures, "write_glb")
    builder = _GlbBuilder()
    per_vertex = None
    if skin is not None:
        from .gltf_skin import influence_attributes  # lazy: gltf_skin builds on this module

        per_vertex = influence_attributes(skin)
    attributes, indices = _vertex_streams(mesh, vertex_color, per_vertex)
    primitive = {
        "attributes": {
            name: builder.accessor(data, _ARRAY_BUFFER, with_bounds=name == "POSITION")
            for name, data in attributes.items()
        },
        "indices": builder.accessor(indices, _ELEMENT_ARRAY_BUFFER),
        "material": 0,
        "mode": 4,
    }
    builder.doc["meshes"] = [{"name": "mesh", "primitives": [primitive]}]
    builder.doc["materials"] = [_material(builder, textures, occlusion)]
    if unlit:  # glTF's unlit extension: the metallic-roughness fields remain as the fallback
        builder.doc["materials"][0]["extensions"] = {"KHR_materials_unlit": {}}
        builder.doc["extensionsUsed"] = ["KHR_materials_unlit"]
    if vertex_color is not None and "kd" not in textures:
        builder.doc["materials"][0]["pbrMetallicRoughness"]["baseColorFactor"] = [1.0, 1.0, 1.0, 1.0]
    builder.doc["nodes"] = [{"name": "mesh", "mesh": 0}]
    builder.doc["scenes"] = [{"nodes": [0]}]
    builder.doc["scene"] = 0
    if skin is not None:
        from .gltf_skin import add_skin

        add_skin(builder, skin, animations, mesh_nodes=[0])
    path = Path(path)
    write_bytes_atomic(path, builder.glb())
    return path


def primitive_mesh(mesh: Mesh, textures: dict[str, Tensor], where: str) -> Mesh:
    """``mesh`` checked and completed for a glTF primitive: smooth normals when it has none
    (glTF would shade flat), MikkTSpace tangents with their sign when a normal map needs them
    (the frame render_mesh uses), no tangents otherwise."""
    mesh.validate(where)
    if textures and mesh.v_tex is None:
        raise ValueError(f"{where}: textures given but the mesh has no UVs (v_tex / t_tex_idx)")
    if mesh.is_empty:
        raise ValueError(f"{where}: the mesh has no faces (glTF accessors cannot be empty)")
    if mesh.v_nrm is None:
        mesh = compute_normals(mesh)
    if "normal" in textures and (mesh.v_tng is None or mesh.v_tng.shape[-1] != 4):
        return compute_tangents(mesh)
    return mesh if "normal" in textures else mesh.copy(v_tng=None, t_tng_idx=None)


def _vertex_streams(
    mesh: Mesh, vertex_color: Optional[Tensor] = None, per_vertex: Optional[dict[str, np.ndarray]] = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """glTF vertex attributes (one vertex per distinct corner) and ``[3F]`` indices; ``per_vertex``
    holds extra ``[V, C]`` attributes of the position vertices (skin influences)."""
    pairs = [
        (name, v, idx)
        for name, v, idx in (
            ("NORMAL", mesh.v_nrm, mesh.t_nrm_idx),
            ("TEXCOORD_0", mesh.v_tex, mesh.t_tex_idx),
            ("TANGENT", mesh.v_tng, mesh.t_tng_idx),
        )
        if v is not None
    ]
    cols = [mesh.t_pos_idx] + [idx for _, _, idx in pairs]
    corners = torch.stack([c.reshape(-1) for c in cols], 1).cpu().numpy()  # [3F, k]
    keys, inverse = np.unique(corners, axis=0, return_inverse=True)
    attributes = {"POSITION": mesh.v_pos.detach().cpu().float().numpy()[keys[:, 0]]}
    for k, (name, values, _) in enumerate(pairs, 1):
        data = values.detach().cpu().double().numpy()[keys[:, k]]
        if name == "TEXCOORD_0":
            data[:, 1] = 1.0 - data[:, 1]
        elif name == "NORMAL":
            data = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-12)
        else:  # glTF: unit xyz, w exactly +-1
            xyz = data[:, :3] / np.maximum(np.linalg.norm(data[:, :3], axis=1, keepdims=True), 1e-12)
            data = np.concatenate([xyz, np.where(data[:, 3:4] < 0, -1.0, 1.0)], 1)
        attributes[name] = data.astype(np.float32)
    if vertex_color is not None:
        if tuple(vertex_color.shape) != (mesh.num_vertices, 3):
            raise ValueError(
                f"write_glb: vertex_color must be [{mesh.num_vertices}, 3], got {tuple(vertex_color.shape)}"
            )
        attributes["COLOR_0"] = vertex_color.detach().cpu().float().clamp(0, 1).numpy()[keys[:, 0]]
    for name, values in (per_vertex or {}).items():
        attributes[name] = values[keys[:, 0]]
    return attributes, inverse.reshape(-1).astype(np.uint32)


def _material(builder: "_GlbBuilder", textures: dict[str, Tensor], occlusion: bool) -> dict:
    pbr: dict = {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 1.0, "roughnessFactor": 1.0}
    material: dict = {"name": "material", "pbrMetallicRoughness": pbr, "doubleSided": False}
    if "kd" in textures:
        pbr["baseColorTexture"] = {"index": builder.texture("kd", textures["kd"])}
        if textures["kd"].shape[-1] == 4 and bool((textures["kd"][..., 3] < 1).any()):
            material["alphaMode"] = "BLEND"
    else:
        pbr["baseColorFactor"] = [0.5, 0.5, 0.5, 1.0]
    if "ks" in textures:
        orm = builder.texture("ks", occlusion_to_gltf(textures["ks"]))
        pbr["metallicRoughnessTexture"] = {"index": orm}
        if occlusion:
            material["occlusionTexture"] = {"index": orm}
    else:
        pbr["metallicFactor"] = 0.0
    if "normal" in textures:
        material["normalTexture"] = {"index": builder.texture("normal", textures["normal"])}
    return material


def occlusion_to_gltf(ks: Tensor) -> Tensor:
    """dmtrec's ks ``[..., 3]`` (occlusion amount, roughness, metallic) -> glTF's ORM values
    (visibility ``1 - amount``, roughness, metallic); the inverse is the same map."""
    return torch.cat([1.0 - ks[..., :1], ks[..., 1:]], -1)


class _GlbBuilder:
    """Accumulates the JSON document and the binary buffer of a GLB file."""

    def __init__(self):
        self.doc: dict = {
            "asset": {"version": "2.0", "generator": "dmtrec"},
            "buffers": [],
            "bufferViews": [],
            "accessors": [],
        }
        self.blob = bytearray()

    def view(self, data: bytes, target: Optional[int] = None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)  # accessors need 4-byte alignment
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob += data
        self.doc["bufferViews"].append(view)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, data: np.ndarray, target: int, with_bounds: bool = False) -> int:
        data = np.ascontiguousarray(data)
        width = 1 if data.ndim == 1 else data.shape[1]
        acc = {
            "bufferView": self.view(data.tobytes(), target),
            "componentType": {np.uint32: _UINT32, np.uint16: 5123, np.uint8: 5121}.get(data.dtype.type, _FLOAT),
            "count": int(data.shape[0]),
            "type": {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}[width],
        }
        if with_bounds and data.shape[0]:
            acc["min"], acc["max"] = data.min(0).tolist(), data.max(0).tolist()
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    def texture(self, key: str, tex: Tensor) -> int:
        images = self.doc.setdefault("images", [])
        images.append({"name": key, "mimeType": "image/png", "bufferView": self.view(texture_png_bytes(key, tex))})
        if "samplers" not in self.doc:  # trilinear, repeat
            self.doc["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 10497, "wrapT": 10497}]
        textures = self.doc.setdefault("textures", [])
        textures.append({"sampler": 0, "source": len(images) - 1})
        return len(textures) - 1

    def glb(self) -> bytes:
        self.blob += b"\0" * (-len(self.blob) % 4)
        self.doc["buffers"] = [{"byteLength": len(self.blob)}]
        text = json.dumps(self.doc, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 4)
        total = 12 + 8 + len(text) + 8 + len(self.blob)
        return b"".join(
            [
                struct.pack("<III", _GLB_MAGIC, 2, total),
                struct.pack("<II", len(text), _JSON_CHUNK),
                text,
                struct.pack("<II", len(self.blob), _BIN_CHUNK),
                bytes(self.blob),
            ]
        )


def read_glb(path: PathLike) -> tuple[Mesh, dict[str, Tensor]]:
    """Read the triangle primitives of a ``.glb`` file into one :class:`Mesh` (scene transforms
    applied) and the textures of the first primitive's material.

    Identical positions are welded (``t_pos_idx``), while normals, UVs and tangents keep glTF's
    per-vertex layout (``t_nrm_idx``, ``t_tex_idx``, ``t_tng_idx``; tangents ``[N, 4]`` with w).
    UVs are flipped back to v up. Returned maps are in memory form (:mod:`dmtrec.io.textures`)
    with glTF's factors applied; ks.R is the occlusion amount ``strength * (1 - occlusion)``,
    0 without an occlusion map.

    Raises:
        GltfReadError: missing or malformed file, or unsupported features (sparse accessors).
    """
    path = Path(path)
    doc, blob = _parse_glb(path)
    reader = _AccessorReader(path, doc, blob)
    positions, normals, uvs, tangents, faces, materials = [], [], [], [], [], []
    offset = 0
    for mesh_index, matrix in _mesh_instances(doc):
        for prim in doc["meshes"][mesh_index].get("primitives", []):
            if prim.get("mode", 4) != 4:
                log.warning("%s: skipping a primitive with mode %s (only triangles are read)", path, prim.get("mode"))
                continue
            attrs = prim.get("attributes", {})
            if "POSITION" not in attrs:
                raise GltfReadError(f"{path}: a primitive has no POSITION attribute")
            pos = reader.read(attrs["POSITION"]).astype(np.float64 if matrix is not None else np.float32)
            count = pos.shape[0]
            idx = reader.read(prim["indices"]).reshape(-1).astype(np.int64) if "indices" in prim else np.arange(count)
            if idx.size % 3 or (idx.size and (idx.min() < 0 or idx.max() >= count)):
                raise GltfReadError(f"{path}: primitive indices are not triangles within its {count} vertices")
            nrm = reader.read(attrs["NORMAL"]) if "NORMAL" in attrs else None
            if matrix is not None:
                pos = pos @ matrix[:3, :3].T + matrix[:3, 3]
                if nrm is not None:
                    nrm = nrm @ np.linalg.inv(matrix[:3, :3])
                    nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
            positions.append(pos.astype(np.float32))
            normals.append(nrm)
            uvs.append(reader.read(attrs["TEXCOORD_0"]) if "TEXCOORD_0" in attrs else None)
            tng = reader.read(attrs["TANGENT"]) if "TANGENT" in attrs else None
            if tng is not None and matrix is not None:
                xyz = tng[:, :3] @ matrix[:3, :3].T
                tng = np.concatenate(
                    [xyz / np.maximum(np.linalg.norm(xyz, axis=1, keepdims=True), 1e-12), tng[:, 3:]], 1
                )
            tangents.append(tng)
            faces.append(idx.reshape(-1, 3) + offset)
            materials.append(prim.get("material"))
            offset += count
    if not positions:
        raise GltfReadError(f"{path}: no triangle primitives found")
    mesh = _welded_mesh(np.concatenate(positions), np.concatenate(faces), normals, uvs, tangents)
    used = [m for m in dict.fromkeys(materials) if m is not None]
    if len(used) > 1:
        log.warning("%s uses %d materials; keeping the textures of the first", path, len(used))
    return mesh, (_read_material(path, doc, reader, used[0]) if used else {})


def _welded_mesh(pos: np.ndarray, faces: np.ndarray, normals: list, uvs: list, tangents: list) -> Mesh:
    # Weld exact duplicates, keeping vertices in order of first use.
    unique, first, inverse = np.unique(pos, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    mesh = Mesh(torch.from_numpy(unique[order].astype(np.float32)), torch.from_numpy(rank[inverse.reshape(-1)][faces]))
    per_vertex = torch.from_numpy(faces)
    if all(n is not None for n in normals):
        mesh.v_nrm, mesh.t_nrm_idx = torch.from_numpy(np.concatenate(normals).astype(np.float32)), per_vertex
    if all(uv is not None for uv in uvs):
        uv = np.concatenate(uvs).astype(np.float32)
        uv[:, 1] = 1.0 - uv[:, 1]
        mesh.v_tex, mesh.t_tex_idx = torch.from_numpy(uv), per_vertex
    if all(t is not None for t in tangents):
        mesh.v_tng, mesh.t_tng_idx = torch.from_numpy(np.concatenate(tangents).astype(np.float32)), per_vertex
    return mesh


def _parse_glb(path: Path) -> tuple[dict, bytes]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GltfReadError(f"{path}: cannot read GLB file ({exc.strerror or exc})") from None
    if len(data) < 20:
        raise GltfReadError(f"{path}: too short to be a GLB file")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC:
        raise GltfReadError(f"{path}: not a binary glTF file (bad magic)")
    if version != 2:
        raise GltfReadError(f"{path}: glTF version {version} is not supported (only 2)")
    if length > len(data):
        raise GltfReadError(f"{path}: truncated ({len(data)} of {length} bytes)")
    doc, blob, pos = None, b"", 12
    while pos + 8 <= length:
        size, kind = struct.unpack_from("<II", data, pos)
        chunk = data[pos + 8 : pos + 8 + size]
        if len(chunk) != size:
            raise GltfReadError(f"{path}: truncated chunk at byte {pos}")
        if kind == _JSON_CHUNK:
            try:
                doc = json.loads(chunk.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise GltfReadError(f"{path}: malformed JSON chunk ({exc})") from None
        elif kind == _BIN_CHUNK:
            blob = chunk
        pos += 8 + size
    if not isinstance(doc, dict):
        raise GltfReadError(f"{path}: no JSON chunk")
    return doc, blob


def _mesh_instances(doc: dict) -> list[tuple[int, Optional[np.ndarray]]]:
    """``(mesh index, world matrix or None for identity)`` for every mesh node of the scene."""
    nodes = doc.get("nodes", [])
    scenes = doc.get("scenes")
    if not scenes:
        return [(i, None) for i in range(len(doc.get("meshes", [])))]
    out = []

    def visit(index: int, parent: np.ndarray) -> None:
        node = nodes[index]
        world = parent @ _node_matrix(node)
        if "mesh" in node:  # glTF ignores a skinned mesh's node transform: its joints place it
            out.append((node["mesh"], None if "skin" in node or np.array_equal(world, np.eye(4)) else world))
        for child in node.get("children", []):
            visit(child, world)

    for root in scenes[doc.get("scene", 0)].get("nodes", []):
        visit(root, np.eye(4))
    return out


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major
    x, y, z, w = node.get("rotation", [0.0, 0.0, 0.0, 1.0])
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    m = np.eye(4)
    m[:3, :3] = rot * np.array(node.get("scale", [1.0, 1.0, 1.0]))[None, :]
    m[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
    return m


class _AccessorReader:
    def __init__(self, path: Path, doc: dict, blob: bytes):
        self.path, self.doc, self.blob = path, doc, blob
        self._buffers: dict[int, bytes] = {}

    def buffer(self, index: int) -> bytes:
        if index not in self._buffers:
            spec = self.doc["buffers"][index]
            uri = spec.get("uri")
            if uri is None:
                self._buffers[index] = self.blob
            elif uri.startswith("data:"):
                self._buffers[index] = base64.b64decode(uri.split(",", 1)[1])
            else:
                try:
                    self._buffers[index] = (self.path.parent / uri).read_bytes()
                except OSError as exc:
                    raise GltfReadError(f"{self.path}: cannot read external buffer {uri!r} ({exc.strerror})") from None
        return self._buffers[index]

    def view_bytes(self, index: int) -> tuple[bytes, dict]:
        view = self.doc["bufferViews"][index]
        start = view.get("byteOffset", 0)
        return self.buffer(view["buffer"])[start : start + view["byteLength"]], view

    def read(self, index: int) -> np.ndarray:
        """``[count, components]`` (or ``[count]`` for scalars) values of an accessor;
        normalized integers become floats in [0, 1] / [-1, 1]."""
        try:
            acc = self.doc["accessors"][index]
            if "sparse" in acc:
                raise GltfReadError(f"{self.path}: sparse accessors are not supported")
            dtype = np.dtype(_DTYPES[acc["componentType"]]).newbyteorder("<")
            width, count = _COMPONENTS[acc["type"]], acc["count"]
            if "bufferView" not in acc:
                return np.zeros((count, width) if width > 1 else count, dtype=np.float32)
            data, view = self.view_bytes(acc["bufferView"])
            stride = view.get("byteStride") or width * dtype.itemsize
            offset = acc.get("byteOffset", 0)
            rows = np.ndarray((count, width), dtype=dtype, buffer=data, offset=offset, strides=(stride, dtype.itemsize))
            out = np.array(rows)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise GltfReadError(f"{self.path}: malformed accessor {index} ({exc!r})") from None
        if acc.get("normalized") and dtype.kind in "iu":
            info = np.iinfo(dtype)
            out = np.maximum(out.astype(np.float32) / info.max, -1.0)
        return out if width > 1 else out.reshape(-1)

    def image(self, texture_index: int, key: str) -> Tensor:
        try:
            image = self.doc["images"][self.doc["textures"][texture_index]["source"]]
        except (KeyError, IndexError) as exc:
            raise GltfReadError(f"{self.path}: texture {texture_index} has no valid image ({exc!r})") from None
        suffix = ".jpg" if image.get("mimeType") == "image/jpeg" else ".png"
        if "bufferView" in image:
            data = self.view_bytes(image["bufferView"])[0]
        elif image.get("uri", "").startswith("data:"):
            data = base64.b64decode(image["uri"].split(",", 1)[1])
        else:
            try:
                data = (self.path.parent / image["uri"]).read_bytes()
            except (OSError, KeyError) as exc:
                raise GltfReadError(f"{self.path}: cannot read image {image.get('uri')!r} ({exc!r})") from None
        return texture_from_image_bytes(data, key, suffix)


def _read_material(path: Path, doc: dict, reader: _AccessorReader, index: int) -> dict[str, Tensor]:
    try:
        material = doc["materials"][index]
    except (KeyError, IndexError):
        raise GltfReadError(f"{path}: material {index} is not defined") from None
    pbr = material.get("pbrMetallicRoughness", {})
    out = {}
    base = torch.tensor(pbr.get("baseColorFactor", [1.0, 1.0, 1.0, 1.0]), dtype=torch.float32)
    if "baseColorTexture" in pbr:
        kd = reader.image(pbr["baseColorTexture"]["index"], "kd")
        out["kd"] = kd * base[: kd.shape[-1]] if not torch.all(base == 1) else kd
    else:
        out["kd"] = base[:3].reshape(1, 1, 3)
    factors = torch.tensor([1.0, pbr.get("roughnessFactor", 1.0), pbr.get("metallicFactor", 1.0)])
    if "metallicRoughnessTexture" in pbr:
        ks = reader.image(pbr["metallicRoughnessTexture"]["index"], "ks")
    else:
        ks = torch.ones(1, 1, 3)
    ks = ks * factors if not torch.all(factors == 1) else ks
    occ = material.get("occlusionTexture")
    if occ is None:
        amount = torch.zeros_like(ks[..., :1])
    else:
        if occ["index"] == pbr.get("metallicRoughnessTexture", {}).get("index"):
            visibility = ks[..., :1]
        else:
            visibility = reader.image(occ["index"], "ks")[..., :1]
            if visibility.shape[:2] != ks.shape[:2] and ks.shape[:2] != (1, 1):
                log.warning("%s: occlusion map size differs from the metallic-roughness map; ignoring it", path)
                visibility = torch.ones_like(ks[..., :1])
        amount = float(occ.get("strength", 1.0)) * (1.0 - visibility)
    ks = ks[..., 1:].expand(*amount.shape[:2], 2)
    out["ks"] = torch.cat([amount, ks], -1)
    if "normalTexture" in material:
        normal = reader.image(material["normalTexture"]["index"], "normal")
        scale = float(material["normalTexture"].get("scale", 1.0))
        out["normal"] = normal * torch.tensor([scale, scale, 1.0]) if scale != 1.0 else normal
    return out
