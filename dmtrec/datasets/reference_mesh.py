"""Views of a reference mesh rendered under an HDR probe, as nvdiffrec's spot/bob experiments.

:class:`ReferenceScene` holds the textured mesh, its light and a rasterizer and renders
straight-alpha linear RGBA for any cameras. :class:`ReferenceMeshViews` is a dataset of such
renders: a fresh random camera per training index, a fixed orbit for validation and test,
all derived from the seed (see :mod:`dmtrec.render.camera_distributions`), rendered as a
:class:`ReferenceRender` says.

Assets (OBJ or GLB) and probes are read here for every user, the asset commands included:
:func:`read_asset`, :func:`asset_material` (the one home of nvdiffrec's ks rule),
:func:`load_asset`, :func:`load_probe`; every failure is a one-line :class:`DatasetError`.

By default views render on demand, a batch at a time (``__getitems__``), on the scene's
device: nvdiffrec draws a fresh training view every iteration, so the training set may be far
too large to render up front, while the few validation/test views are cached after their
first render. On CUDA this runs in the main process (``num_workers: 0``) as nvdiffrec does; on
CPU, DataLoader workers render in parallel. :meth:`ReferenceMeshViews.prerender` instead
renders a split once, turning the training set into a fixed pool of views that later epochs
reuse for free (what a short CPU run wants).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dmtrec.core.mesh import Mesh
from dmtrec.core.types import PathLike
from dmtrec.io.image import ImageReadError
from dmtrec.io.mesh_files import read_mesh
from dmtrec.io.obj import ObjReadError
from dmtrec.render.camera import Cameras
from dmtrec.render.camera_distributions import orbit_view_c2w, random_view_c2w
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.pathtrace import fovy_of, pathtrace, probe_latlong
from dmtrec.render.raster import get_rasterizer
from dmtrec.render.render_mesh import render_mesh

from .errors import DatasetError
from .samples import (
    SPLIT_STREAMS,
    STREAM_BACKGROUND,
    STREAM_CAMERA,
    as_resolution,
    check_background,
    make_background,
    sample_generator,
)

# Test views sit half a step between validation views on the same orbit.
_ORBIT_PHASE = {"val": 0.0, "test": 0.5}


@dataclass
class ReferenceScene:
    """A textured reference mesh lit by an environment probe, ready to render.

    Attributes:
        mesh: the mesh, on the scene's device.
        material: its textured material.
        light: the environment light built from the probe.
        rasterizer: the backend rendering it.
        mesh_path, probe_path: where they came from (None for a scene built in memory).
    """

    mesh: Mesh
    material: Any
    light: Any
    rasterizer: Any
    mesh_path: Optional[Path] = None
    probe_path: Optional[Path] = None

    @property
    def device(self) -> torch.device:
        return self.mesh.device

    @torch.no_grad()
    def render(self, cameras: Cameras, spp: int = 1) -> Tensor:
        """Render ``[B, H, W, 4]`` linear RGB with straight coverage alpha, on :attr:`device`.

        ``spp`` renders at ``spp`` times the resolution per axis and area-averages down.
        """
        shaded = render_mesh(
            self.mesh, self.material, self.light, cameras.to(self.device), self.rasterizer, spp=spp, smoothness=False
        )["shaded"]
        # Over the default black background the colour is premultiplied by coverage; the
        # dataset contract is straight alpha.
        alpha = shaded[..., 3:].clamp(0.0, 1.0)
        rgb = torch.where(alpha > 0, shaded[..., :3] / alpha.clamp_min(1e-12), torch.zeros_like(shaded[..., :3]))
        return torch.cat([rgb, alpha], dim=-1)


@dataclass
class ReferenceRender:
    """How reference views of a mesh are rendered: the settings the ``reference_mesh`` data kind,
    ``dmtrec make-dataset`` and its COLMAP variant share.

    Attributes:
        fovy: vertical field of view in degrees (nvdiffrec: 45).
        cam_radius: camera distance from the object (nvdiffrec: 3).
        translation_jitter: training views shift the object uniformly in ``[-j, j]^3``.
        spp: supersampling per axis.
        env_scale: multiplies the probe's radiance.
        probe_res: cube-map face size of the probe's light (nvdiffrec: 512; 64-128 keeps CPU runs
            quick, since prefiltering it dominates setup).
        rasterizer: backend (``auto``, ``nvdiffrast``, ``torch``).
        device: where to render (None: CUDA if available).
    """

    fovy: float = 45.0
    cam_radius: float = 3.0
    translation_jitter: float = 0.25
    spp: int = 1
    env_scale: float = 1.0
    probe_res: int = 512
    rasterizer: str = "auto"
    device: Optional[str] = None

    def __post_init__(self):
        if not 0.0 < self.fovy < 180.0:
            raise ValueError(f"fovy: must be in (0, 180) degrees, got {self.fovy}")
        if self.cam_radius <= 0.0:
            raise ValueError(f"cam_radius: must be > 0, got {self.cam_radius}")
        if self.spp < 1:
            raise ValueError(f"spp: must be >= 1, got {self.spp}")

    @property
    def render_device(self) -> str:
        """:attr:`device`, or CUDA where available."""
        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")


def read_asset(path: PathLike) -> Tuple[Mesh, Dict[str, Tensor]]:
    """``(mesh, textures)`` of an OBJ (with MTL and textures) or GLB file; every failure is a
    one-line :class:`DatasetError`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "mesh file not found")
    try:
        return read_mesh(path)
    except Exception as exc:  # any reader failure, e.g. a malformed line or an unreadable texture
        raise _file_error(exc, path, "unreadable mesh") from None


def asset_material(textures: Dict[str, Tensor], device: Union[str, torch.device] = "cpu") -> TexturedMaterial:
    """The frozen material of an asset's ``textures`` (a missing kd is constant grey 0.5).

    Like nvdiffrec's reference loading: a missing ks is a rough dielectric, and the ORM
    occlusion channel is cleared, since the asset must be lit by the probe alone.
    """
    kd = textures.get("kd", torch.full((1, 1, 3), 0.5))
    ks = textures.get("ks", torch.tensor([[[0.0, 1.0, 0.0]]])).clone()
    ks[..., 0] = 0.0
    material = TexturedMaterial.from_tensors(
        kd=kd.to(device), ks=ks.to(device), normal=textures["normal"].to(device) if "normal" in textures else None
    )
    return material.requires_grad_(False)


def load_asset(path: PathLike, device: Union[str, torch.device] = "cpu") -> Tuple[Mesh, TexturedMaterial]:
    """``(mesh, material)`` of an OBJ or GLB asset (:func:`read_asset`, :func:`asset_material`).

    The mesh may lack UVs (then the material is the constant kd the file gives, if any) or be
    empty; callers check.
    """
    mesh, textures = read_asset(path)
    return mesh.to(device), asset_material(textures, device)


def load_probe(
    path: PathLike, probe_res: int = 128, scale: float = 1.0, device: Union[str, torch.device] = "cpu"
) -> EnvironmentLight:
    """The frozen environment light of an ``.hdr`` probe (``probe_res`` per cube face, a power
    of two >= 32, radiance times ``scale``); every failure is a one-line :class:`DatasetError`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "probe file not found")
    try:
        light = EnvironmentLight.from_hdr(path, base_res=probe_res, scale=scale)
    except Exception as exc:  # whatever the HDR reader or resampler rejects
        message = " ".join(str(exc).split())
        raise DatasetError(path, f"unreadable probe ({type(exc).__name__}: {message})") from None
    return light.to(device).requires_grad_(False)


def load_reference_scene(
    mesh: PathLike, probe: PathLike, render: ReferenceRender = ReferenceRender()
) -> ReferenceScene:
    """The mesh (OBJ or GLB, :func:`read_asset`) under the probe (``.hdr``, :func:`load_probe`),
    on ``render.device`` with ``render.rasterizer``; errors are :class:`DatasetError`.

    ``render.probe_res`` is the light's cube-map face size (nvdiffrec: 512); its split-sum
    prefiltering dominates the first render on a CPU (minutes at 512, seconds at 64).
    """
    mesh_path, probe_path = Path(mesh), Path(probe)
    reference, textures = read_asset(mesh_path)
    if reference.is_empty:
        raise DatasetError(mesh_path, "mesh has no triangles")
    if "kd" not in textures:
        raise DatasetError(mesh_path, "mesh has no diffuse (Kd / map_Kd) material to render")
    device = torch.device(render.render_device)
    light = load_probe(probe_path, render.probe_res, render.env_scale, device)
    backend = get_rasterizer(render.rasterizer, device)
    # Prefilter now: before training, and once for all DataLoader workers (they fork after this).
    with torch.no_grad():
        light.ensure_mips(backend)
    return ReferenceScene(reference.to(device), asset_material(textures, device), light, backend, mesh_path, probe_path)


def with_constant_ks(scene: ReferenceScene, roughness: float, metallic: float) -> ReferenceScene:
    """The scene with its ks replaced by one ORM value (occlusion 0): the plastic / metal
    variants of nvdiffrec's known-geometry material experiment."""
    for name, value in (("roughness", roughness), ("metallic", metallic)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}: must be in [0, 1], got {value}")
    textures = scene.material.to_tensors()
    ks = torch.tensor([[[0.0, roughness, metallic]]], device=scene.device)
    material = TexturedMaterial.from_tensors(kd=textures["kd"], ks=ks, normal=textures.get("normal"))
    return replace(scene, material=material.requires_grad_(False))


class PathTracedScene:
    """A :class:`ReferenceScene` whose renders are path-traced with Mitsuba 3
    (:func:`dmtrec.render.pathtrace.pathtrace`) instead of rasterized with split-sum shading:
    same mesh, material, probe and cameras, so either renderer's views are interchangeable.

    Args:
        scene: the rasterizer's scene (mesh, material, probe path).
        samples: samples per pixel.
        seed: seeds the sampler; consecutive render calls use consecutive seeds, so a dataset
            written in a fixed order is reproducible.
        env_scale: the probe's radiance scale (as the rasterized scene's light).
    """

    def __init__(self, scene: ReferenceScene, samples: int = 64, seed: int = 0, env_scale: float = 1.0):
        if samples < 1:
            raise ValueError(f"spp: must be >= 1 samples per pixel, got {samples}")
        self.scene, self.samples, self.seed = scene, samples, seed
        self.probe = probe_latlong(scene.probe_path) * env_scale
        self._calls = 0

    mesh = property(lambda self: self.scene.mesh)
    mesh_path = property(lambda self: self.scene.mesh_path)
    probe_path = property(lambda self: self.scene.probe_path)
    device = property(lambda self: self.scene.device)

    @torch.no_grad()
    def render(self, cameras: Cameras, spp: int = 1) -> Tensor:
        """``[B, H, W, 4]`` linear RGB with straight alpha (``spp`` is unused: ``samples`` per pixel)."""
        self._calls += 1
        images = pathtrace(
            self.scene.mesh,
            self.scene.material.to_tensors(),
            self.probe,
            cameras.c2w,
            fovy_of(cameras.proj[0]),
            cameras.resolution,
            spp=self.samples,
            seed=self.seed * 1_000_003 + self._calls * 1009,
        )
        return images.to(self.device)


def _file_error(exc: Exception, path: Path, what: str) -> DatasetError:
    """One-line DatasetError for a reader's failure on ``path``.

    The image and OBJ readers already say ``"<file>[:line]: <problem>"`` (the file may be a
    texture the mesh names), as do the other readers' one-line errors about ``path`` itself, so
    that location is kept; other failures are put on ``path``.
    """
    message = " ".join(str(exc).split())
    own = isinstance(exc, ValueError) and message.startswith(f"{path}: ")
    if (own or isinstance(exc, (ImageReadError, ObjReadError))) and ": " in message:
        location, problem = message.split(": ", 1)
        return DatasetError(location, problem)
    return DatasetError(path, f"{what} ({type(exc).__name__}: {message})")


class ReferenceMeshViews(Dataset):
    """Renders of a :class:`ReferenceScene`, one sample per camera index.

    Args:
        scene: what to render.
        split: ``"train"`` (a random camera per index) or ``"val"``/``"test"`` (fixed orbit).
        views: number of samples.
        resolution: ``(H, W)`` of the renders.
        background: see :func:`dmtrec.datasets.samples.make_background`.
        seed: seeds cameras and backgrounds.
        render: cameras (``fovy``, ``cam_radius``, ``translation_jitter``) and supersampling
            (``spp``); its scene settings were used by :func:`load_reference_scene`.
        near, far: clip planes.

    Samples follow :mod:`dmtrec.datasets.samples`, with tensors on the scene's device.
    """

    def __init__(
        self,
        scene: ReferenceScene,
        split: str = "train",
        views: int = 1000,
        resolution: Sequence[int] = (512, 512),
        background: str = "white",
        seed: int = 0,
        render: ReferenceRender = ReferenceRender(),
        near: float = 0.1,
        far: float = 1000.0,
    ):
        if split not in SPLIT_STREAMS:
            raise ValueError(f"split: unknown split {split!r}; choose one of {', '.join(SPLIT_STREAMS)}")
        if views < 1:
            raise ValueError(f"views: must be >= 1, got {views}")
        self.scene = scene
        self.split = split
        self.views = int(views)
        self.resolution = as_resolution(resolution, "resolution")
        self.background = check_background(background, "background")
        self.seed = int(seed)
        self.fovy = math.radians(render.fovy)
        self.cam_radius = float(render.cam_radius)
        self.translation_jitter = float(render.translation_jitter)
        self.near, self.far = float(near), float(far)
        self.spp = int(render.spp)
        self._orbit = None if split == "train" else orbit_view_c2w(self.views, self.cam_radius, _ORBIT_PHASE[split])
        self._cache: Dict[int, Tensor] = {}

    def __len__(self) -> int:
        return self.views

    def c2w(self, index: int) -> Tensor:
        """``[4, 4]`` camera-to-world of view ``index``."""
        if self._orbit is not None:
            return self._orbit[index]
        generator = sample_generator(self.seed, STREAM_CAMERA, SPLIT_STREAMS[self.split], index)
        return random_view_c2w(generator, self.cam_radius, self.translation_jitter)

    def cameras(self, indices: Sequence[int]) -> Cameras:
        """The cameras of ``indices`` as one batch."""
        c2w = torch.stack([self.c2w(i) for i in indices])
        return Cameras.from_fov(c2w, self.fovy, self.resolution, self.near, self.far)

    def render(self, indices: Sequence[int]) -> Tensor:
        """``[N, H, W, 4]`` straight-alpha linear renders of ``indices``, in one batch."""
        return self.scene.render(self.cameras(indices), self.spp)

    def renders(self, chunk: int = 8) -> Iterator[Tuple[int, Tensor]]:
        """Yield ``(index, [H, W, 4] render)`` for every view, rendering ``chunk`` views per call."""
        for start in range(0, self.views, chunk):
            indices = list(range(start, min(start + chunk, self.views)))
            yield from zip(indices, self.render(indices))

    def prerender(self, chunk: int = 8) -> None:
        """Render every view now and serve them from memory from now on (``views * H * W * 16`` bytes)."""
        self._cache.update(self.renders(chunk))

    def __getitem__(self, index: int) -> Dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> List[Dict]:
        """Samples of ``indices``; the DataLoader calls this per batch, so that the views a
        batch still needs are rendered in one call."""
        for index in indices:
            if not 0 <= index < self.views:
                raise IndexError(f"view index {index} out of range for {self.views} views")
        missing = [i for i in dict.fromkeys(indices) if i not in self._cache]
        fresh = dict(zip(missing, self.render(missing))) if missing else {}
        if self._orbit is not None:
            self._cache.update(fresh)
        cameras = self.cameras(indices).to(self.scene.device)
        return [
            self._sample(index, fresh[index] if index in fresh else self._cache[index], cameras[k])
            for k, index in enumerate(indices)
        ]

    def _sample(self, index: int, img: Tensor, camera: Cameras) -> Dict:
        generator = sample_generator(self.seed, STREAM_BACKGROUND, SPLIT_STREAMS[self.split], index)
        device = self.scene.device
        return {
            "c2w": camera.c2w[0],
            "proj": camera.proj[0],
            "img": img,
            "background": make_background(self.background, self.resolution, generator).to(device),
            "index": torch.tensor(index, dtype=torch.int64, device=device),
            "resolution": self.resolution,
        }
