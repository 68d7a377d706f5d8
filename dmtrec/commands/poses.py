"""``dmtrec poses IMAGES_DIR --out DATA_DIR``: structure-from-motion through pycolmap
(:func:`dmtrec.datasets.sfm.run_sfm`), writing a capture folder the ``colmap`` data kind reads."""

from __future__ import annotations

import argparse

from dmtrec.datasets.sfm import CAMERA_MODELS, MATCHERS, run_sfm

HELP = "recover camera poses of a folder of photos with COLMAP (pycolmap): IMAGES_DIR --out DATA_DIR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run structure-from-motion (pycolmap: SIFT features, matching, incremental mapping, on the CPU) on a "
        "folder of photos of one object and write a capture folder for `--data.kind colmap --data.path DATA_DIR`."
    )
    parser.add_argument("images", help="folder of photos (.png/.jpg/.jpeg), all from one camera")
    parser.add_argument("--out", required=True, help="capture folder to create (images/, masks/, sparse/0/)")
    parser.add_argument("--masks", default=None, help="folder of object masks (NAME.png or STEM.png), copied to out")
    parser.add_argument("--camera-model", default="SIMPLE_RADIAL", choices=CAMERA_MODELS, help="intrinsics to estimate")
    parser.add_argument("--matcher", default="exhaustive", choices=MATCHERS, help="exhaustive, or sequential (video)")
    parser.add_argument(
        "--min-registered",
        type=float,
        default=0.5,
        help="fail if fewer than this fraction of the photos is registered (default 0.5)",
    )
    parser.add_argument("--max-image-size", type=int, default=3200, help="downsize for feature extraction")
    parser.add_argument("--keep-database", action="store_true", help="keep COLMAP's database.db in the output")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's progress log")


def main(args: argparse.Namespace) -> int:
    summary = run_sfm(
        args.images,
        args.out,
        masks=args.masks,
        camera_model=args.camera_model,
        matcher=args.matcher,
        min_registered=args.min_registered,
        max_image_size=args.max_image_size,
        overwrite=args.overwrite,
        keep_database=args.keep_database,
        verbose=args.verbose,
    )
    print(f"dmtrec poses: {summary.text()}")
    return 0
