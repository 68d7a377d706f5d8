"""``dmtrec make-dataset``: render a reference mesh into a NeRF-synthetic folder.

The folder holds ``transforms_{train,val,test}.json`` (``camera_angle_x`` and per-frame
camera-to-world ``transform_matrix``), ``<split>/r_<i>.png`` RGBA images (sRGB-encoded
colour, alpha = coverage), the probe that lit them and ``dataset.json`` recording how it was
made. The views are exactly those of the ``reference_mesh`` DataModule with the same seed,
camera and resolution settings. The folder is written under a temporary name and renamed
when complete, so an interrupted run never leaves a finished-looking dataset.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from dmtrec.io.image import linear_to_srgb, write_png

from .reference_mesh import ReferenceMeshViews, load_reference_scene
from .samples import as_resolution

PathLike = Union[str, os.PathLike]

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
    """
    out = Path(out)
    resolution = as_resolution(res, "res")
    for name, value in (("views", views), ("val_views", val_views), ("test_views", test_views), ("spp", spp)):
        if value < 1:
            raise ValueError(f"{name}: must be >= 1, got {value}")
    if out.exists() and not overwrite:
        raise ValueError(f"{out}: output folder exists (pass --overwrite, or overwrite=True, to replace it)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    scene = load_reference_scene(mesh, probe, env_scale=env_scale, probe_res=probe_res, device=device, rasterizer=rasterizer)
    fovx = 2.0 * math.atan(math.tan(math.radians(fovy) / 2.0) * resolution[1] / resolution[0])

    from dmtrec.io.atomic import atomic_folder

    with atomic_folder(out) as tmp:
        for split, count in (("train", views), ("val", val_views), ("test", test_views)):
            dataset = ReferenceMeshViews(scene, split, views=count, resolution=resolution, seed=seed, fovy=fovy,
                                         cam_radius=cam_radius, translation_jitter=translation_jitter, spp=spp)
            frames = []
            for index, img in dataset.renders(_RENDER_CHUNK):
                img = img.cpu()
                write_png(tmp / split / f"r_{index}.png", torch.cat([linear_to_srgb(img[..., :3]), img[..., 3:]], dim=-1))
                frames.append({"file_path": f"./{split}/r_{index}", "transform_matrix": dataset.c2w(index).tolist()})
            (tmp / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fovx, "frames": frames}, indent=1))
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
            "spp": spp,
            "env_scale": env_scale,
            "probe_res": probe_res,
        }
        (tmp / "dataset.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return out


def add_make_dataset_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``dmtrec make-dataset`` options to ``parser``."""
    parser.description = "Render a reference mesh under an HDR probe into a NeRF-synthetic dataset folder."
    parser.add_argument("--mesh", required=True, help="reference mesh (OBJ with MTL and textures)")
    parser.add_argument("--probe", required=True, help="HDR environment probe (.hdr)")
    parser.add_argument("--views", type=int, default=100, help="training views (default 100)")
    parser.add_argument("--res", type=_resolution_arg, default=(256, 256), help="image size: N or HxW (default 256)")
    parser.add_argument("--out", required=True, help="dataset folder to create")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training cameras (default 0)")
    parser.add_argument("--val-views", type=int, default=8, help="validation views (default 8)")
    parser.add_argument("--test-views", type=int, default=8, help="test views (default 8)")
    parser.add_argument("--fovy", type=float, default=45.0, help="vertical field of view in degrees (default 45)")
    parser.add_argument("--cam-radius", type=float, default=3.0, help="camera distance (default 3)")
    parser.add_argument("--jitter", type=float, default=0.25, help="object translation jitter of training views (default 0.25)")
    parser.add_argument("--spp", type=int, default=1, help="supersampling per axis (default 1)")
    parser.add_argument("--env-scale", type=float, default=1.0, help="probe radiance scale (default 1)")
    parser.add_argument("--probe-res", type=int, default=512, help="cube-map face size of the light (default 512, as nvdiffrec)")
    parser.add_argument("--device", default=None, help="render device (default: cuda if available, else cpu)")
    parser.add_argument("--rasterizer", default="auto", choices=("auto", "nvdiffrast", "torch"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser


def run_make_dataset(args: argparse.Namespace) -> int:
    """Run ``dmtrec make-dataset`` with parsed ``args``; errors raise ValueError (one line)."""
    out = make_dataset(
        args.mesh, args.probe, args.views, args.res, args.out, seed=args.seed, val_views=args.val_views,
        test_views=args.test_views, fovy=args.fovy, cam_radius=args.cam_radius, translation_jitter=args.jitter,
        spp=args.spp, env_scale=args.env_scale, probe_res=args.probe_res, overwrite=args.overwrite, device=args.device, rasterizer=args.rasterizer,
    )
    print(f"dmtrec make-dataset: wrote {args.views}+{args.val_views}+{args.test_views} views to {out}")
    return 0


def _resolution_arg(text: str):
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return (values[0], values[0]) if len(values) == 1 else tuple(values)
