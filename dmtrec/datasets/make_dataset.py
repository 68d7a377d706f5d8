"""Render a reference mesh into a NeRF-synthetic folder or a COLMAP capture (the library half of
``dmtrec make-dataset``; :func:`make_colmap_dataset` for ``--format colmap``).

The folder holds ``transforms_{train,val,test}.json`` (``camera_angle_x`` and per-frame
camera-to-world ``transform_matrix``), ``<split>/r_<i>.png`` RGBA images (sRGB-encoded
colour, alpha = coverage), the probe that lit them and ``dataset.json`` recording how it was
made. The views are exactly those of the ``reference_mesh`` DataModule with the same seed,
camera and resolution settings. The folder is written under a temporary name and renamed
when complete, so an interrupted run never leaves a finished-looking dataset.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from dmtrec.core.atomic import atomic_folder
from dmtrec.core.output_folder import check_output_folder
from dmtrec.core.types import PathLike
from dmtrec.io.colmap_model import ColmapCamera, ColmapImage, ColmapPoints, world_to_camera, write_model_text
from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.render.camera import Cameras, perspective_from_intrinsics

from .colmap_undistort import distort_image
from .nerf_synthetic import WORLD_UPS, Z_UP_TO_Y_UP
from .reference_mesh import PathTracedScene, ReferenceMeshViews, ReferenceRender, load_reference_scene, with_constant_ks
from .samples import (
    SPLIT_STREAMS,
    STREAM_BACKGROUND,
    as_resolution,
    check_background,
    make_background,
    sample_generator,
)

RENDERERS = ("raster", "pathtrace")

# Views rendered per batch: large enough to amortize per-call overhead, small enough for
# 512x512 renders with spp 2 to fit a laptop's memory.
_RENDER_CHUNK = 8


def make_dataset(
    mesh: PathLike,
    probe: PathLike,
    views: int,
    res: Union[int, Sequence[int]],
    out: PathLike,
    seed: int = 0,
    val_views: int = 8,
    test_views: int = 8,
    render: ReferenceRender = ReferenceRender(),
    renderer: str = "raster",
    constant_ks: Optional[Tuple[float, float]] = None,
    overwrite: bool = False,
    world_up: str = "y",
) -> Path:
    """Render ``mesh`` lit by ``probe`` into the NeRF-synthetic folder ``out``; returns ``out``.

    Args:
        mesh: reference OBJ (with MTL and textures).
        probe: HDR environment probe (``.hdr``).
        views: training views (random cameras, as nvdiffrec's reference-mesh training).
        res: image size, an int or ``(H, W)``.
        out: the dataset folder to create.
        seed: seeds the training cameras; the same seed always gives the same dataset.
        val_views, test_views: views on the fixed validation orbit (test between val views).
        render: cameras, supersampling, probe and backend, as the ``reference_mesh`` data kind.
        renderer: ``"raster"`` (dmtrec's rasterizer, split-sum shading; ``render.spp`` is
            supersampling per axis) or ``"pathtrace"`` (Mitsuba 3, :mod:`dmtrec.render.pathtrace`:
            shadows and interreflections; ``render.spp`` is samples per pixel).
        constant_ks: ``(roughness, metallic)`` replacing the mesh's ks (occlusion 0), e.g. the
            plastic and metal variants of nvdiffrec's known-geometry experiment.
        overwrite: replace ``out`` if it exists (else that is an error).
        world_up: ``"y"`` writes the poses in the mesh's frame; ``"z"`` in a Z-up frame like
            Blender's (the mesh's +Y is the dataset's +Z), read back with the ``nerf_synthetic``
            kind's ``world_up: z``, which trains in the mesh's frame again.
    """
    out = Path(out)
    resolution = as_resolution(res, "res")
    if world_up not in WORLD_UPS:
        raise ValueError(f"world_up: must be one of {', '.join(WORLD_UPS)}, got {world_up!r}")
    # the dataset's world from the mesh's (training) frame: the loader's Z_UP_TO_Y_UP undone
    world_from_mesh = torch.linalg.inv(Z_UP_TO_Y_UP) if world_up == "z" else torch.eye(4)
    for name, value in (("views", views), ("val_views", val_views), ("test_views", test_views)):
        if value < 1:
            raise ValueError(f"{name}: must be >= 1, got {value}")
    out = check_output_folder(out, overwrite)
    scene, view_render = _scene(mesh, probe, render, renderer, constant_ks, seed)
    fovx = 2.0 * math.atan(math.tan(math.radians(render.fovy) / 2.0) * resolution[1] / resolution[0])

    with atomic_folder(out) as tmp:
        for split, count in (("train", views), ("val", val_views), ("test", test_views)):
            dataset = ReferenceMeshViews(
                scene,
                split,
                views=count,
                resolution=resolution,
                seed=seed,
                render=view_render,
            )
            frames = []
            for index, img in dataset.renders(_RENDER_CHUNK):
                img = img.cpu()
                write_png(
                    tmp / split / f"r_{index}.png", torch.cat([linear_to_srgb(img[..., :3]), img[..., 3:]], dim=-1)
                )
                c2w = world_from_mesh @ dataset.c2w(index) if world_up == "z" else dataset.c2w(index)
                frames.append({"file_path": f"./{split}/r_{index}", "transform_matrix": c2w.tolist()})
            (tmp / f"transforms_{split}.json").write_text(
                json.dumps({"camera_angle_x": fovx, "frames": frames}, indent=1)
            )
        shutil.copyfile(scene.probe_path, tmp / scene.probe_path.name)
        recipe = {
            "generator": "dmtrec make-dataset",
            "mesh": str(scene.mesh_path),
            "probe": scene.probe_path.name,
            "views": {"train": views, "val": val_views, "test": test_views},
            "resolution": list(resolution),
            "seed": seed,
            "fovy_degrees": render.fovy,
            "cam_radius": render.cam_radius,
            "translation_jitter": render.translation_jitter,
            "renderer": renderer,
            "spp": render.spp,
            "ks_override": None if constant_ks is None else [0.0, *constant_ks],
            "env_scale": render.env_scale,
            "probe_res": render.probe_res,
        }
        if world_up != "y":  # recorded only where it differs, so the default's recipe stays as it was
            recipe["world_up"] = world_up
        (tmp / "dataset.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return out


def _scene(
    mesh: PathLike,
    probe: PathLike,
    render: ReferenceRender,
    renderer: str,
    constant_ks: Optional[Tuple[float, float]],
    seed: int,
):
    """``(scene, view settings)``: the reference scene to render, rasterized or path traced, with
    ks replaced, and ``render`` as the views use it."""
    if renderer not in RENDERERS:
        raise ValueError(f"renderer: must be one of {', '.join(RENDERERS)}, got {renderer!r}")
    scene = load_reference_scene(mesh, probe, render)
    if constant_ks is not None:
        scene = with_constant_ks(scene, *constant_ks)
    if renderer == "pathtrace":
        scene = PathTracedScene(scene, samples=render.spp, seed=seed, env_scale=render.env_scale)
        # The views' supersampling: the path tracer's samples already filter each pixel.
        return scene, replace(render, spp=1)
    return scene, render


COLMAP_MODELS = ("PINHOLE", "SIMPLE_RADIAL", "OPENCV")
# Principal point offset of the synthetic COLMAP cameras, as fractions of the image size: off
# centre by default, so that a reader ignoring cx, cy fails the round trip.
PRINCIPAL_OFFSET = (0.03, -0.02)


@dataclass(frozen=True)
class ColmapCapture:
    """The synthetic COLMAP camera and photos of :func:`make_colmap_dataset`.

    Attributes:
        camera_model: one of :data:`COLMAP_MODELS`.
        distortion: SIMPLE_RADIAL ``k``; OPENCV ``k1`` (plus small ``k2, p1, p2``); the photos are
            distorted to match.
        background: what the opaque photos show behind the object (default one random colour per
            image; see :func:`dmtrec.datasets.samples.make_background`).
        principal_offset: principal point off centre, as fractions of the width and height. SfM
            assumes a centred one, so use ``(0, 0)`` to benchmark it.
    """

    camera_model: str = "PINHOLE"
    distortion: float = 0.05
    background: str = "random"
    principal_offset: Tuple[float, float] = PRINCIPAL_OFFSET


_MAX_POINTS = 2000


def make_colmap_dataset(
    mesh: PathLike,
    probe: PathLike,
    views: int,
    res: Union[int, Sequence[int]],
    out: PathLike,
    seed: int = 0,
    render: ReferenceRender = ReferenceRender(),
    renderer: str = "raster",
    constant_ks: Optional[Tuple[float, float]] = None,
    capture: ColmapCapture = ColmapCapture(),
    overwrite: bool = False,
) -> Path:
    """Render ``mesh`` lit by ``probe`` into a COLMAP capture folder ``out`` with the true poses; returns ``out``.

    ``out/images/r_NNN.png`` are opaque photos (the render over ``capture.background``, by
    default one random colour per image), ``out/masks/r_NNN.png.png`` their coverage masks and
    ``out/sparse/0/{cameras,images,points3D}.txt`` the model: one camera as :class:`ColmapCapture`
    says (focal length from ``render.fovy``), the views' true poses, and up to 2000 mesh vertices
    as points. Cameras are the random training views of the ``reference_mesh`` kind with the same
    seed; other arguments as :func:`make_dataset`.
    """
    out = Path(out)
    resolution = as_resolution(res, "res")
    camera_model, distortion, principal_offset = capture.camera_model, capture.distortion, capture.principal_offset
    if camera_model not in COLMAP_MODELS:
        raise ValueError(f"camera_model: must be one of {', '.join(COLMAP_MODELS)}, got {camera_model!r}")
    if views < 1:
        raise ValueError(f"views: must be >= 1, got {views}")
    out = check_output_folder(out, overwrite)
    background = check_background(capture.background, "background")
    scene, view_render = _scene(mesh, probe, render, renderer, constant_ks, seed)
    height, width = resolution
    focal = 0.5 * height / math.tan(math.radians(render.fovy) / 2.0)
    cx, cy = width * (0.5 + principal_offset[0]), height * (0.5 + principal_offset[1])
    extra = {"PINHOLE": (), "SIMPLE_RADIAL": (distortion,), "OPENCV": (distortion, -0.2 * distortion, 1e-3, -1e-3)}
    params = (focal, focal, cx, cy) if camera_model != "SIMPLE_RADIAL" else (focal, cx, cy)
    camera = ColmapCamera(1, camera_model, width, height, params + extra[camera_model])
    proj = perspective_from_intrinsics(focal, focal, cx, cy, width, height)

    views_ds = ReferenceMeshViews(scene, "train", views=views, resolution=resolution, seed=seed, render=view_render)
    with atomic_folder(out) as tmp:
        images = []
        for start in range(0, views, _RENDER_CHUNK):
            indices = list(range(start, min(start + _RENDER_CHUNK, views)))
            c2w = torch.stack([views_ds.c2w(i) for i in indices])
            cameras = Cameras(c2w, proj[None].expand(len(indices), 4, 4).contiguous(), resolution)
            for index, img, pose in zip(indices, scene.render(cameras, view_render.spp).cpu(), c2w):
                if camera.distorted:
                    img = distort_image(img, camera)
                generator = sample_generator(seed, STREAM_BACKGROUND, SPLIT_STREAMS["train"], index)
                photo = torch.lerp(make_background(background, resolution, generator), img[..., :3], img[..., 3:])
                name = f"r_{index:03d}.png"
                write_png(tmp / "images" / name, linear_to_srgb(photo))
                write_png(tmp / "masks" / f"{name}.png", img[..., 3:])
                qvec, tvec = world_to_camera(pose.double().numpy())
                images.append(ColmapImage(index + 1, qvec, tvec, 1, name, np.zeros((0, 2)), np.zeros(0, np.int64)))
        vertices = scene.mesh.v_pos.detach().cpu().double().numpy()
        vertices = vertices[np.random.default_rng(seed).permutation(len(vertices))[:_MAX_POINTS]]
        points = ColmapPoints(
            ids=np.arange(1, len(vertices) + 1),
            xyz=vertices,
            rgb=np.full((len(vertices), 3), 128, np.uint8),
            error=np.zeros(len(vertices)),
            track_length=np.zeros(len(vertices), np.int64),
        )
        write_model_text(tmp / "sparse" / "0", [camera], images, points)
        recipe = {
            "generator": "dmtrec make-dataset --format colmap",
            "mesh": str(scene.mesh_path),
            "probe": str(scene.probe_path),
            "views": views,
            "resolution": list(resolution),
            "seed": seed,
            "fovy_degrees": render.fovy,
            "cam_radius": render.cam_radius,
            "translation_jitter": render.translation_jitter,
            "camera": {"model": camera.model, "params": list(camera.params)},
            "background": background,
            "principal_offset": list(principal_offset),
            "renderer": renderer,
            "spp": render.spp,
            "ks_override": None if constant_ks is None else [0.0, *constant_ks],
            "env_scale": render.env_scale,
            "probe_res": render.probe_res,
        }
        (tmp / "dataset.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return out
