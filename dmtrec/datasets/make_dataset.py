"""Render a reference mesh into a NeRF-synthetic folder (the library half of ``dmtrec make-dataset``).

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
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from dmtrec.core.atomic import atomic_folder
from dmtrec.io.image import linear_to_srgb, write_png

from .reference_mesh import PathTracedScene, ReferenceMeshViews, load_reference_scene, with_constant_ks
from .samples import as_resolution

PathLike = Union[str, os.PathLike]

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
    fovy: float = 45.0,
    cam_radius: float = 3.0,
    translation_jitter: float = 0.25,
    spp: int = 1,
    env_scale: float = 1.0,
    probe_res: int = 512,
    overwrite: bool = False,
    device: Optional[str] = None,
    rasterizer: str = "auto",
    renderer: str = "raster",
    roughness: Optional[float] = None,
    metallic: Optional[float] = None,
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
        fovy, cam_radius, translation_jitter, spp, env_scale, probe_res: as :class:`ReconDataModule`.
        overwrite: replace ``out`` if it exists (else that is an error).
        device: where to render (default CUDA if available); ``rasterizer``: backend.
        renderer: ``"raster"`` (dmtrec's rasterizer, split-sum shading; ``spp`` is supersampling
            per axis) or ``"pathtrace"`` (Mitsuba 3, :mod:`dmtrec.render.pathtrace`: shadows and
            interreflections; ``spp`` is samples per pixel).
        roughness, metallic: replace the mesh's ks with this one value (occlusion 0), e.g. the
            plastic and metal variants of nvdiffrec's known-geometry experiment.
    """
    out = Path(out)
    if renderer not in RENDERERS:
        raise ValueError(f"renderer: must be one of {', '.join(RENDERERS)}, got {renderer!r}")
    resolution = as_resolution(res, "res")
    for name, value in (("views", views), ("val_views", val_views), ("test_views", test_views), ("spp", spp)):
        if value < 1:
            raise ValueError(f"{name}: must be >= 1, got {value}")
    if out.exists() and not overwrite:
        raise ValueError(f"{out}: output folder exists (pass --overwrite, or overwrite=True, to replace it)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    scene = load_reference_scene(
        mesh, probe, env_scale=env_scale, probe_res=probe_res, device=device, rasterizer=rasterizer
    )
    if roughness is not None or metallic is not None:
        scene = with_constant_ks(scene, 1.0 if roughness is None else roughness, metallic or 0.0)
    if renderer == "pathtrace":
        scene = PathTracedScene(scene, samples=spp, seed=seed, env_scale=env_scale)
        spp = 1  # the views' supersampling: the path tracer's samples already filter each pixel
    fovx = 2.0 * math.atan(math.tan(math.radians(fovy) / 2.0) * resolution[1] / resolution[0])

    with atomic_folder(out) as tmp:
        for split, count in (("train", views), ("val", val_views), ("test", test_views)):
            dataset = ReferenceMeshViews(
                scene,
                split,
                views=count,
                resolution=resolution,
                seed=seed,
                fovy=fovy,
                cam_radius=cam_radius,
                translation_jitter=translation_jitter,
                spp=spp,
            )
            frames = []
            for index, img in dataset.renders(_RENDER_CHUNK):
                img = img.cpu()
                write_png(
                    tmp / split / f"r_{index}.png", torch.cat([linear_to_srgb(img[..., :3]), img[..., 3:]], dim=-1)
                )
                frames.append({"file_path": f"./{split}/r_{index}", "transform_matrix": dataset.c2w(index).tolist()})
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
            "fovy_degrees": fovy,
            "cam_radius": cam_radius,
            "translation_jitter": translation_jitter,
            "renderer": renderer,
            "spp": scene.samples if renderer == "pathtrace" else spp,
            "ks_override": None if roughness is None and metallic is None else [0.0, roughness, metallic],
            "env_scale": env_scale,
            "probe_res": probe_res,
        }
        (tmp / "dataset.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return out
