"""Structure-from-motion for a folder of photos through ``pycolmap`` (the library half of ``dmtrec poses``).

:func:`run_sfm` copies the photos (and optional masks) into a capture folder, runs COLMAP's
SIFT feature extraction, matching and incremental mapping on the CPU, and writes the largest
reconstruction as a binary model into ``sparse/0``: exactly what the ``colmap`` dataset kind
(:mod:`dmtrec.datasets.colmap`) reads. ``pycolmap`` is an optional dependency
(``pip install dmtrec[colmap]``), imported only here and only when SfM runs.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dmtrec.core.atomic import atomic_folder
from dmtrec.core.output_folder import check_output_folder
from dmtrec.core.types import PathLike
from dmtrec.io.colmap_model import MIN_IMAGES

from .base import IMAGE_SUFFIXES

CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
MATCHERS = ("exhaustive", "sequential")


@dataclass(frozen=True)
class SfmSummary:
    """What one SfM run recovered."""

    out: Path
    images: int
    registered: int
    points: int
    mean_reprojection_error: float
    mean_track_length: float
    seconds: float

    def text(self) -> str:
        return (
            f"registered {self.registered} of {self.images} images, {self.points} points, mean reprojection "
            f"error {self.mean_reprojection_error:.3f} px, mean track length {self.mean_track_length:.2f} "
            f"({self.seconds:.0f} s); model in {self.out / 'sparse' / '0'}"
        )


def import_pycolmap():
    """``pycolmap``, or a one-line error saying how to install it."""
    try:
        import pycolmap
    except ImportError:
        raise ValueError(
            "pycolmap: not installed; `pip install dmtrec[colmap]` (or `pip install pycolmap`), "
            "or run COLMAP yourself and point --data.path at its output (images/ and sparse/0/)"
        ) from None
    return pycolmap


def run_sfm(
    images: PathLike,
    out: PathLike,
    masks: Optional[PathLike] = None,
    camera_model: str = "SIMPLE_RADIAL",
    matcher: str = "exhaustive",
    min_registered: float = 0.5,
    max_image_size: int = 3200,
    overwrite: bool = False,
    keep_database: bool = False,
    verbose: bool = False,
    deterministic: bool = False,
) -> SfmSummary:
    """Recover the cameras of the photos in ``images`` and write the capture folder ``out``.

    Args:
        images: a folder of photos (``.png``, ``.jpg``, ``.jpeg``) of one object; all share one
            camera (one intrinsics estimate), as from one camera and zoom setting.
        out: the capture folder to create: ``images/`` (copies), ``masks/`` (copies of
            ``masks``, if given), ``sparse/0/`` (the model).
        masks: optional folder of object masks, named as the ``colmap`` kind expects
            (``NAME.png`` or ``STEM.png``); copied, not used by SfM.
        camera_model: the COLMAP camera model to estimate (SIMPLE_RADIAL, COLMAP's default,
            suits most photos).
        matcher: ``exhaustive`` (every pair; up to a few hundred photos) or ``sequential``
            (video frames in name order).
        min_registered: fewer registered images than this fraction (or than 3) is an error.
        max_image_size: photos are downsized to this for feature extraction.
        overwrite: replace an existing ``out``.
        keep_database: keep COLMAP's ``database.db`` (features and matches) in ``out``.
        verbose: let COLMAP log its progress (else warnings and errors only).
        deterministic: seed COLMAP's RANSAC and run every stage on one thread, so that the same
            photos give the same model (threaded matching and bundle adjustment otherwise vary
            from run to run); slower.
    """
    images, out = Path(images), Path(out)
    if camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model: must be one of {', '.join(CAMERA_MODELS)}, got {camera_model!r}")
    if matcher not in MATCHERS:
        raise ValueError(f"matcher: must be one of {', '.join(MATCHERS)}, got {matcher!r}")
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: image folder not found")
    photos = sorted(p for p in images.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(photos) < MIN_IMAGES:
        raise ValueError(
            f"{images}: holds {len(photos)} photos (.png/.jpg/.jpeg); structure-from-motion needs at least "
            f"{MIN_IMAGES}, and 30-100 overlapping ones work best"
        )
    if masks is not None and not Path(masks).is_dir():
        raise FileNotFoundError(f"{masks}: mask folder not found")
    out = check_output_folder(out, overwrite)
    pycolmap = import_pycolmap()
    pycolmap.logging.minloglevel = 0 if verbose else 1  # glog levels: 0 info, 1 warning
    threads = 1 if deterministic else -1
    if deterministic:
        pycolmap.set_random_seed(0)

    start = time.perf_counter()
    with atomic_folder(out) as tmp:
        (tmp / "images").mkdir(parents=True)
        for photo in photos:
            shutil.copy2(photo, tmp / "images" / photo.name)
        if masks is not None:
            shutil.copytree(masks, tmp / "masks")
        database, work = tmp / "database.db", tmp / "sfm"
        work.mkdir()
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = camera_model
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.max_image_size = max_image_size
        extraction.use_gpu = False
        extraction.num_threads = threads
        # Affine-adapted, domain-size-pooled SIFT: more, and more robust, matches on objects
        # (COLMAP's recommendation for hard scenes; costs extraction time only).
        extraction.sift.estimate_affine_shape = True
        extraction.sift.domain_size_pooling = True
        pycolmap.extract_features(
            database,
            tmp / "images",
            camera_mode=pycolmap.CameraMode.SINGLE,
            reader_options=reader,
            extraction_options=extraction,
            device=pycolmap.Device.cpu,
        )
        matching = pycolmap.FeatureMatchingOptions()
        matching.use_gpu = False
        matching.num_threads = threads
        matching.guided_matching = True
        if matcher == "exhaustive":
            pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
        else:
            pycolmap.match_sequential(database, matching_options=matching, device=pycolmap.Device.cpu)
        mapping = pycolmap.IncrementalPipelineOptions()
        mapping.num_threads = threads
        reconstructions = pycolmap.incremental_mapping(database, tmp / "images", work, options=mapping)
        best = max(reconstructions.values(), key=lambda r: r.num_reg_images(), default=None)
        registered = best.num_reg_images() if best is not None else 0
        needed = max(MIN_IMAGES, math.ceil(min_registered * len(photos)))
        if registered < needed:
            raise ValueError(
                f"{images}: structure-from-motion registered only {registered} of {len(photos)} photos "
                f"(needs {needed}); take more photos with more overlap (neighbours 10-20 degrees apart), "
                "of a textured object on a textured, static background, without motion blur"
            )
        (tmp / "sparse" / "0").mkdir(parents=True)
        best.write(tmp / "sparse" / "0")
        shutil.rmtree(work)
        if not keep_database:
            database.unlink()
        summary = SfmSummary(
            out=out,
            images=len(photos),
            registered=registered,
            points=best.num_points3D(),
            mean_reprojection_error=float(best.compute_mean_reprojection_error()),
            mean_track_length=float(best.compute_mean_track_length()),
            seconds=time.perf_counter() - start,
        )
    return summary
