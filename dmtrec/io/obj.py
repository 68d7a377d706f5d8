"""Wavefront OBJ + MTL with PBR texture maps (kd, ks = ORM, normal), read and write.

Conventions: UVs are stored as in the file (v up, the OBJ convention, as :class:`Mesh`
holds them); positions, UVs and normals are written with 9 significant digits, which
round-trips float32 exactly. Texture maps follow :mod:`dmtrec.io.textures`: ``map_Kd`` is
sRGB on disk (linear in memory), ``map_Ks`` linear ORM, ``bump`` a tangent-space normal map
(nvdiffrec's MTL keys). Constant ``Kd`` / ``Ks`` without a map become ``[1, 1, 3]`` maps
(``Kd`` read as sRGB, as nvdiffrec does).

The writer adds the PBR extension lines that Blender and other DCC importers read beside the
classic ones: ``Pr`` / ``Pm`` (mean roughness / metallic), ``map_Pr`` / ``map_Pm`` (greyscale
linear images of ks's G and B channels) and ``norm`` (the normal map again). The MTL's comment
lines tell a consumer what the engine-side conventions are (see :data:`MTL_NOTES`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from dmtrec.core.atomic import write_text_atomic
from dmtrec.core.mesh import Mesh
from dmtrec.core.types import PathLike

from .image import ImageReadError
from .textures import check_textures, decode_texture, read_texture, write_texture_png

log = logging.getLogger(__name__)


_MTL_MAPS = {"map_kd": "kd", "map_ks": "ks", "bump": "normal", "map_bump": "normal", "norm": "normal"}
_MTL_WRITE = {"kd": "map_Kd", "ks": "map_Ks", "normal": "bump"}
# ks channel -> (scalar key, map key, file-name suffix) of the MTL PBR extension.
_PBR_CHANNELS = ((1, "Pr", "map_Pr", "roughness"), (2, "Pm", "map_Pm", "metallic"))
MTL_NOTES = (
    "# dmtrec PBR material. map_Kd: base colour, sRGB. map_Ks: nvdiffrec's ORM, linear: R = occlusion",
    "# amount (shading x (1 - R); glTF's occlusion is 1 - R), G = roughness, B = metallic; map_Pr and",
    "# map_Pm hold G and B alone. bump and norm: tangent-space normal map, OpenGL convention (+Y up,",
    "# green not inverted), in the MikkTSpace frame of this file's vn normals and vt UVs: import the",
    "# normals as given (custom split normals) and let the tool derive MikkTSpace tangents (Blender,",
    "# Unity, Unreal, Substance do); other tangents or recomputed normals shade the map differently.",
)
# Texture map options and how many arguments they take (-o/-s/-t: 1 to 3 numbers).
_MAP_OPTIONS = {
    "-bm": 1,
    "-boost": 1,
    "-texres": 1,
    "-imfchan": 1,
    "-mm": 2,
    "-clamp": 1,
    "-blendu": 1,
    "-blendv": 1,
    "-cc": 1,
    "-type": 1,
    "-o": 3,
    "-s": 3,
    "-t": 3,
}


class ObjReadError(ValueError):
    """An OBJ or MTL file is missing or malformed; the message names the file and line."""


def write_obj(
    folder: PathLike,
    mesh: Mesh,
    textures: Optional[dict[str, Tensor]] = None,
    name: str = "mesh",
    texture_names: Optional[dict[str, str]] = None,
) -> Path:
    """Write ``folder/name.obj``, ``folder/name.mtl`` and ``folder/name_{kd,ks,normal}.png``.

    Args:
        folder: output folder (created if needed).
        mesh: the mesh; its UVs (``v_tex``/``t_tex_idx``) and normals are written when present.
        textures: optional maps ``{"kd": [H, W, 3|4], "ks": [H, W, 3], "normal": [H, W, 3]}``
            in memory form (see module docstring); they need UVs on the mesh.
        name: base name of the files.
        texture_names: file names per texture key replacing ``name_<key>.png`` (e.g. nvdiffrec's
            ``{"kd": "texture_kd.png", ...}``).
    Returns:
        The path of the ``.obj`` file. Every file is written atomically, the ``.obj`` last,
        so an existing ``.obj`` means a complete set.
    """
    mesh.validate("write_obj")
    textures = check_textures(textures or {}, "write_obj")
    if textures and mesh.v_tex is None:
        raise ValueError("write_obj: textures given but the mesh has no UVs (v_tex / t_tex_idx)")
    folder = Path(folder)
    mtl = [*MTL_NOTES, f"newmtl {name}"]
    if textures:
        mtl.append("Kd 1 1 1")
        for key, tex in textures.items():
            file_name = (texture_names or {}).get(key, f"{name}_{key}.png")
            write_texture_png(folder / file_name, key, tex)
            mtl.append(f"{_MTL_WRITE[key]} {file_name}")
            if key == "ks":
                mtl += _pbr_maps(folder, name, tex, texture_names)
            elif key == "normal":
                mtl.append(f"norm {file_name}")
    else:
        mtl += ["Kd 0.5 0.5 0.5", "Ks 0 0 0"]
    write_text_atomic(folder / f"{name}.mtl", "\n".join(mtl) + "\n")

    lines = ["# dmtrec", f"mtllib {name}.mtl"]
    lines += _rows("v", mesh.v_pos)
    if mesh.v_tex is not None:
        lines += _rows("vt", mesh.v_tex)
    if mesh.v_nrm is not None:
        lines += _rows("vn", mesh.v_nrm)
    lines.append(f"usemtl {name}")
    lines += _face_rows(mesh)
    path = folder / f"{name}.obj"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _pbr_maps(folder: Path, name: str, ks: Tensor, texture_names: Optional[dict[str, str]]) -> list[str]:
    """Write ks's roughness and metallic as greyscale PNGs; their MTL PBR extension lines."""
    lines = []
    for channel, scalar, map_key, suffix in _PBR_CHANNELS:
        values = ks[..., channel : channel + 1]
        file_name = (texture_names or {}).get(suffix, f"{name}_{suffix}.png")
        write_texture_png(folder / file_name, "ks", values)  # linear, like map_Ks
        lines += [f"{scalar} {float(values.clamp(0, 1).mean()):.6g}", f"{map_key} {file_name}"]
    return lines


def _rows(prefix: str, values: Tensor) -> list[str]:
    arr = values.detach().to("cpu", torch.float32).numpy().astype(np.float64)
    fmt = prefix + " %.9g" * arr.shape[1]
    return [fmt % tuple(row) for row in arr.tolist()]


def _face_rows(mesh: Mesh) -> list[str]:
    cols = [mesh.t_pos_idx]
    if mesh.v_nrm is not None:
        cols.append(mesh.t_tex_idx if mesh.v_tex is not None else None)
        cols.append(mesh.t_nrm_idx)
    elif mesh.v_tex is not None:
        cols.append(mesh.t_tex_idx)
    idx = [None if c is None else (c.detach().cpu().numpy() + 1).tolist() for c in cols]
    rows = []
    for f in range(mesh.num_faces):
        corners = ("/".join("" if c is None else str(c[f][k]) for c in idx) for k in range(3))
        rows.append("f " + " ".join(corners))
    return rows


def read_obj(path: PathLike) -> tuple[Mesh, dict[str, Tensor]]:
    """Read an OBJ file (and the textures of its material) into a :class:`Mesh`.

    Polygons are fan-triangulated; negative (relative) indices are resolved. UVs and normals
    are kept with their own index buffers. Of several materials, the first one used gives the
    textures (a warning says so).

    Returns:
        ``(mesh, textures)``: float32/int64 CPU tensors, and the maps of the material
        (subset of ``kd``, ``ks``, ``normal``) in memory form.
    Raises:
        ObjReadError: missing or malformed file, naming file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ObjReadError(f"{path}: cannot read OBJ file ({exc.strerror or exc})") from None
    data: dict[str, list] = {"v": [], "vt": [], "vn": []}
    faces: dict[str, list] = {"v": [], "vt": [], "vn": []}
    has = None  # (uv, normal) presence, fixed by the first face
    mtllibs, used = [], []
    for lineno, raw in enumerate(text.splitlines(), 1):
        tokens = raw.split("#", 1)[0].split()
        if not tokens:
            continue
        key, args = tokens[0], tokens[1:]
        where = f"{path}:{lineno}"
        try:
            if key in ("v", "vn"):
                if len(args) < 3:
                    raise ValueError(f"'{key}' needs 3 numbers")
                data[key].append([float(a) for a in args[:3]])
            elif key == "vt":
                if not args:
                    raise ValueError("'vt' needs at least 1 number")
                uv = [float(a) for a in args[:2]]
                data["vt"].append(uv + [0.0] * (2 - len(uv)))
            elif key == "f":
                has = _parse_face(args, data, faces, has)
            elif key == "mtllib" and args:
                mtllibs.append((raw.split(None, 1)[1].split("#", 1)[0].strip(), where))
            elif key == "usemtl" and args and args[0] not in used:
                used.append(args[0])
        except (ValueError, IndexError) as exc:
            raise ObjReadError(f"{where}: malformed '{key}' line ({exc}): {raw.strip()[:80]}") from None
    if not data["v"]:
        raise ObjReadError(f"{path}: no vertices ('v' lines) found")

    mesh = Mesh(
        torch.tensor(data["v"], dtype=torch.float32).reshape(-1, 3),
        torch.tensor(faces["v"], dtype=torch.int64).reshape(-1, 3),
    )
    if has and has[0]:
        mesh.v_tex = torch.tensor(data["vt"], dtype=torch.float32).reshape(-1, 2)
        mesh.t_tex_idx = torch.tensor(faces["vt"], dtype=torch.int64).reshape(-1, 3)
    if has and has[1]:
        mesh.v_nrm = torch.tensor(data["vn"], dtype=torch.float32).reshape(-1, 3)
        mesh.t_nrm_idx = torch.tensor(faces["vn"], dtype=torch.int64).reshape(-1, 3)
    try:
        mesh.validate(str(path))
    except ValueError as exc:
        raise ObjReadError(str(exc)) from None
    textures = {}
    if mtllibs:
        materials = {}
        for lib, where in mtllibs:
            materials.update(_read_mtl(path.parent / lib, where))
        if len(used) > 1:
            log.warning("%s uses %d materials; keeping the textures of the first, %r", path, len(used), used[0])
        chosen = used[0] if used else next(iter(materials), None)
        if chosen is not None and chosen not in materials:
            raise ObjReadError(f"{path}: material {chosen!r} is not defined in {[m for m, _ in mtllibs]}")
        textures = materials.get(chosen, {})
    return mesh, textures


def _parse_face(args: list[str], data: dict, faces: dict, has: Optional[tuple[bool, bool]]) -> tuple[bool, bool]:
    if len(args) < 3:
        raise ValueError("a face needs at least 3 corners")
    corners = []
    for token in args:
        parts = token.split("/")
        if len(parts) > 3 or not parts[0]:
            raise ValueError(f"bad corner {token!r}")
        ids = []
        for kind, part in zip(("v", "vt", "vn"), parts + [""] * (3 - len(parts))):
            if not part:
                ids.append(None)
                continue
            i = int(part)
            count = len(data[kind])
            i = i - 1 if i > 0 else count + i
            if not 0 <= i < count:
                raise ValueError(f"{kind} index {part} out of range (have {count})")
            ids.append(i)
        corners.append(ids)
    this = (corners[0][1] is not None, corners[0][2] is not None)
    if any((c[1] is not None, c[2] is not None) != this for c in corners) or (has is not None and this != has):
        raise ValueError("faces mix corners with and without texture/normal indices")
    for k in range(1, len(corners) - 1):  # fan triangulation
        tri = (corners[0], corners[k], corners[k + 1])
        for slot, kind in enumerate(("v", "vt", "vn")):
            if slot == 0 or this[slot - 1]:
                faces[kind].append([c[slot] for c in tri])
    return this


def _read_mtl(path: Path, where: str) -> dict[str, dict[str, Tensor]]:
    """Materials of an MTL file: name -> textures in memory form."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ObjReadError(f"{where}: cannot read material library {path} ({exc.strerror or exc})") from None
    materials: dict[str, dict[str, Tensor]] = {}
    current = None
    for lineno, raw in enumerate(lines, 1):
        tokens = raw.split("#", 1)[0].split()
        if not tokens:
            continue
        key, args = tokens[0].lower(), tokens[1:]
        here = f"{path}:{lineno}"
        if key == "newmtl":
            current = materials.setdefault(" ".join(args), {})
            continue
        if current is None:
            continue
        try:
            if key in ("kd", "ks") and key not in current:
                values = [float(a) for a in args[:3]]
                if len(values) != 3:
                    raise ValueError(f"'{tokens[0]}' needs 3 numbers")
                # File values: Kd sRGB (nvdiffrec's reading), Ks linear ORM.
                current[key] = decode_texture(key, np.array(values, dtype=np.float32).reshape(1, 1, 3))
            elif key in _MTL_MAPS:
                current[_MTL_MAPS[key]] = read_texture(path.parent / _map_file(args), _MTL_MAPS[key])
        except ImageReadError as exc:
            raise ObjReadError(f"{here}: {exc}") from None
        except (ValueError, IndexError) as exc:
            raise ObjReadError(f"{here}: malformed '{tokens[0]}' line ({exc})") from None
    return materials


def _map_file(args: list[str]) -> str:
    """The file name of a ``map_*`` line after its options; it may contain spaces."""
    i = 0
    while i < len(args) and args[i].lower() in _MAP_OPTIONS:
        count = _MAP_OPTIONS[args[i].lower()]
        i += 1
        for _ in range(count):
            if i < len(args) - 1 and (count != 3 or _is_number(args[i])):
                i += 1
    if i >= len(args):
        raise ValueError("no file name")
    return " ".join(args[i:])


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False
