"""``dmtrec make-dataset --mesh M --probe P --views N --res R --out D``: render a reference mesh
under an HDR probe into a NeRF-synthetic dataset folder (:func:`dmtrec.datasets.make_dataset.make_dataset`)
or, with ``--format colmap``, a COLMAP capture with the true poses
(:func:`dmtrec.datasets.make_dataset.make_colmap_dataset`)."""

from __future__ import annotations

import argparse

from dmtrec.datasets.make_dataset import (
    COLMAP_MODELS,
    PRINCIPAL_OFFSET,
    RENDERERS,
    ColmapCapture,
    make_colmap_dataset,
    make_dataset,
)
from dmtrec.datasets.reference_mesh import ReferenceRender

HELP = "render a reference mesh into a NeRF-synthetic dataset folder (or a COLMAP capture: --format colmap)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--jitter", type=float, default=0.25, help="object translation jitter of training views (default 0.25)"
    )
    parser.add_argument(
        "--renderer",
        choices=RENDERERS,
        default="raster",
        help="raster: dmtrec's rasterizer with split-sum shading (default); pathtrace: Mitsuba 3 "
        "(pip install 'dmtrec[pathtrace]'): shadows, interreflections, the true GGX lobe",
    )
    parser.add_argument(
        "--spp",
        type=int,
        default=None,
        help="raster: supersampling per axis (default 1); pathtrace: samples per pixel (default 64)",
    )
    parser.add_argument("--roughness", type=float, default=None, help="replace the mesh's ks: this roughness")
    parser.add_argument("--metallic", type=float, default=None, help="replace the mesh's ks: this metalness")
    parser.add_argument("--env-scale", type=float, default=1.0, help="probe radiance scale (default 1)")
    parser.add_argument(
        "--probe-res", type=int, default=512, help="cube-map face size of the light (default 512, as nvdiffrec)"
    )
    parser.add_argument(
        "--world-up",
        default="y",
        choices=("y", "z"),
        help="nerf_synthetic: the poses' up axis: y (the mesh's frame, default) or z (Blender's; read "
        "it with data.nerf_synthetic.world_up z)",
    )
    parser.add_argument(
        "--format",
        default="nerf_synthetic",
        choices=("nerf_synthetic", "colmap"),
        help="nerf_synthetic (default) or colmap: images/, masks/, sparse/0/*.txt with the true poses",
    )
    parser.add_argument(
        "--camera-model", default="PINHOLE", choices=COLMAP_MODELS, help="colmap: camera model (default PINHOLE)"
    )
    parser.add_argument(
        "--distortion", type=float, default=0.05, help="colmap: radial k (k1) of distorted models (default 0.05)"
    )
    parser.add_argument(
        "--background",
        default="random",
        choices=("random", "white", "black", "noise"),
        help="colmap: what the opaque photos show behind the object (default random: one colour per image)",
    )
    parser.add_argument(
        "--principal-offset",
        type=float,
        nargs=2,
        default=PRINCIPAL_OFFSET,
        metavar=("DX", "DY"),
        help="colmap: principal point offset from the centre, fractions of width and height (default 0.03 -0.02)",
    )
    parser.add_argument("--device", default=None, help="render device (default: cuda if available, else cpu)")
    parser.add_argument("--rasterizer", default="auto", choices=("auto", "nvdiffrast", "torch"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def main(args: argparse.Namespace) -> int:
    """Run ``dmtrec make-dataset`` with parsed ``args``; errors raise ValueError (one line)."""
    roughness, metallic = args.roughness, args.metallic
    common = dict(
        seed=args.seed,
        render=ReferenceRender(
            fovy=args.fovy,
            cam_radius=args.cam_radius,
            translation_jitter=args.jitter,
            spp=args.spp if args.spp is not None else (64 if args.renderer == "pathtrace" else 1),
            env_scale=args.env_scale,
            probe_res=args.probe_res,
            rasterizer=args.rasterizer,
            device=args.device,
        ),
        renderer=args.renderer,
        # Either one alone replaces ks too, the other at a rough dielectric's value.
        constant_ks=None
        if roughness is None and metallic is None
        else (1.0 if roughness is None else roughness, metallic or 0.0),
        overwrite=args.overwrite,
    )
    if args.format == "colmap":
        if args.world_up != "y":
            raise ValueError("--world-up z: only for --format nerf_synthetic (COLMAP models have no up axis)")
        out = make_colmap_dataset(
            args.mesh,
            args.probe,
            args.views,
            args.res,
            args.out,
            capture=ColmapCapture(args.camera_model, args.distortion, args.background, tuple(args.principal_offset)),
            **common,
        )
        print(f"dmtrec make-dataset: wrote {args.views} views ({args.camera_model}) as a COLMAP capture to {out}")
        return 0
    out = make_dataset(
        args.mesh,
        args.probe,
        args.views,
        args.res,
        args.out,
        val_views=args.val_views,
        test_views=args.test_views,
        world_up=args.world_up,
        **common,
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
