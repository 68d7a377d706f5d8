"""Views of a game asset and its PBR reference renders, shared by ``dmtrec bake`` and ``dmtrec lod``.

An *asset* is a mesh file (OBJ with MTL and textures, or GLB) with a PBR material, lit by an
HDR probe. The views it is judged from follow one of three distributions:

* ``"sphere"``: cameras uniformly distributed over the full sphere around the asset;
* ``"hemisphere"``: only the upper half (elevation >= 0, +Y up), e.g. a prop standing on the ground
  (both drawn by :func:`dmtrec.render.camera_distributions.sample_cameras`);
* a camera list: a JSON file in the NeRF-synthetic ``transforms.json`` layout
  (``camera_angle_x`` in radians or ``fovy`` in degrees, ``frames[*].transform_matrix``
  camera-to-world, optional ``w`` / ``h``), e.g. the views a game actually uses.

The cameras look at the centre of the mesh's bounding box from a distance that fits its
bounding sphere into the field of view (:func:`fit_radius`), unless a radius is given.
Assets and probes are read by :func:`dmtrec.datasets.reference_mesh.load_asset` and
:func:`~dmtrec.datasets.reference_mesh.load_probe` and
reference renders reuse :class:`~dmtrec.datasets.reference_mesh.ReferenceScene` (straight
alpha, linear radiance).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from dmtrec.core.mesh import Mesh
from dmtrec.core.types import PathLike
from dmtrec.datasets.reference_mesh import ReferenceScene
from dmtrec.render.camera import Cameras
from dmtrec.render.camera_distributions import DISTRIBUTIONS, sample_cameras, size_hw
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial


def mesh_bounds(mesh: Mesh) -> Tuple[Tensor, float]:
    """``(centre [3], radius)`` of the mesh's bounding box (centre) and its bounding sphere about it."""
    if mesh.num_vertices == 0:
        raise ValueError("mesh_bounds: the mesh has no vertices")
    pos = mesh.v_pos.detach().float()
    centre = (pos.min(0).values + pos.max(0).values) / 2
    return centre, float((pos - centre).norm(dim=-1).max())


def fit_radius(mesh: Mesh, fovy: float = 45.0, margin: float = 1.1) -> float:
    """Camera distance at which the mesh's bounding sphere (times ``margin``) fits a ``fovy``-degree view."""
    _, radius = mesh_bounds(mesh)
    return max(radius, 1e-6) * margin / math.sin(math.radians(fovy) / 2)


def load_camera_list(
    path: PathLike, resolution: Optional[Union[int, Sequence[int]]] = None, near: float = 0.1, far: float = 1000.0
) -> Cameras:
    """Cameras from a JSON camera list (NeRF-synthetic ``transforms.json`` layout).

    The file holds ``frames: [{"transform_matrix": 4x4 camera-to-world}, ...]`` and a field of
    view: ``camera_angle_x`` (horizontal, radians, as NeRF-synthetic) or ``fovy`` (vertical,
    degrees). ``resolution`` overrides the file's ``h`` / ``w`` (default 256 x 256).

    Raises:
        FileNotFoundError / ValueError: one line ``"<file>: <problem>"``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: camera list not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable camera list ({' '.join(str(exc).split())})") from None
    frames = doc.get("frames") if isinstance(doc, dict) else None
    if not frames:
        raise ValueError(f"{path}: camera list has no frames (expected NeRF-style 'frames': [{{transform_matrix}}])")
    try:
        c2w = torch.tensor([frame["transform_matrix"] for frame in frames], dtype=torch.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: every frame needs a 4x4 transform_matrix ({type(exc).__name__}: {exc})") from None
    if c2w.shape[1:] != (4, 4) or not bool(torch.isfinite(c2w).all()):
        raise ValueError(f"{path}: transform_matrix must be finite 4x4, got {tuple(c2w.shape[1:])}")
    if resolution is None:
        resolution = (int(doc.get("h", 256)), int(doc.get("w", 256)))
    size = size_hw(resolution)
    if "fovy" in doc:
        fovy = math.radians(float(doc["fovy"]))
    elif "camera_angle_x" in doc:
        fovy = Cameras.fovy_from_fovx(float(doc["camera_angle_x"]), size)
    else:
        raise ValueError(f"{path}: camera list needs camera_angle_x (radians) or fovy (degrees)")
    if not 0.0 < fovy < math.pi:
        raise ValueError(f"{path}: field of view out of range ({math.degrees(fovy):.1f} degrees)")
    return Cameras.from_fov(c2w, fovy, size, near, far)


def view_cameras(
    distribution: str,
    n: int,
    mesh: Mesh,
    fovy: float = 45.0,
    resolution: Union[int, Sequence[int]] = 256,
    seed: int = 0,
    radius: Optional[float] = None,
) -> Cameras:
    """Views of ``mesh``: ``n`` cameras of a named distribution aimed at its bounding box centre from
    :func:`fit_radius` (or ``radius``), or every camera of a camera-list file (``n`` ignored)."""
    if distribution not in DISTRIBUTIONS:
        return load_camera_list(distribution, resolution)
    centre, _ = mesh_bounds(mesh)
    radius = fit_radius(mesh, fovy) if radius is None else radius
    return sample_cameras(n, distribution, radius, fovy, resolution, seed, target=centre.tolist())


@torch.no_grad()
def render_reference(
    mesh: Mesh,
    material: TexturedMaterial,
    light: EnvironmentLight,
    cameras: Cameras,
    rasterizer,
    spp: int = 1,
    chunk: int = 8,
) -> Tensor:
    """PBR renders ``[B, H, W, 4]`` of the asset: straight-alpha linear RGB and coverage alpha.

    ``spp`` supersamples ``spp x spp`` per pixel; views are rendered ``chunk`` at a time.
    """
    scene = ReferenceScene(mesh, material, light, rasterizer)
    out = [scene.render(cameras[start : start + chunk], spp) for start in range(0, cameras.batch_size, chunk)]
    return torch.cat(out, 0)
