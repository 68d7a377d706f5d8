"""``dmtrec eval``: evaluate a run folder, or compare two mesh files.

* ``dmtrec eval RUN_DIR [--data D] [--reference MESH] [--ckpt C] [--out DIR]``: render the run's
  test split and write image metrics, per-view images, a comparison grid and the geometry report
  (:func:`dmtrec.runs.evaluation.evaluate_run`).
* ``dmtrec eval --mesh M --ref R``: the geometry report of a mesh file against a reference file.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from dmtrec.core.atomic import write_text_atomic
from dmtrec.io.mesh_files import read_mesh
from dmtrec.metrics.geometry import NORMALIZATIONS, geometry_report
from dmtrec.runs.evaluation import evaluate_run

log = logging.getLogger(__name__)

MESH_MODE_SAMPLES = 100_000

HELP = (
    "evaluate a run's test views and geometry (RUN_DIR [--data D] [--reference MESH]),\n"
    "                or compare mesh files (--mesh M --ref R)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", help="run folder of `dmtrec fit` (config.yaml, checkpoints/last.ckpt)")
    run = parser.add_argument_group("run folder (RUN_DIR)")
    run.add_argument("--data", help="dataset folder replacing the config's data.path")
    run.add_argument("--reference", help="reference mesh for the geometry report (default: the run's own, if any)")
    run.add_argument("--ckpt", help="checkpoint (default RUN_DIR/checkpoints/last.ckpt)")
    run.add_argument("--grid-views", type=int, default=8, help="views in the comparison grid (default 8)")
    run.add_argument(
        "--wandb",
        choices=("offline", "disabled"),
        default="offline",
        help="log the per-view table into the run's wandb id, offline (default), or not at all",
    )
    files = parser.add_argument_group("mesh files (no RUN_DIR)")
    files.add_argument("--mesh", help="reconstructed mesh (OBJ or GLB)")
    files.add_argument("--ref", help="reference mesh (OBJ or GLB)")
    files.add_argument(
        "--normalize",
        choices=NORMALIZATIONS,
        default="ref_bbox",
        help="ref_bbox: distances in units of the reference's longest bounding-box side",
    )
    files.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.005, 0.01, 0.02], help="F-score distance thresholds"
    )
    files.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", help="RUN_DIR: output folder (default RUN_DIR/eval); mesh files: JSON file (default: print it)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help=f"surface samples per mesh (default: the run's metric_samples; mesh files {MESH_MODE_SAMPLES})",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--overwrite", action="store_true", help="RUN_DIR: replace an existing non-empty --out folder")


def main(args: argparse.Namespace) -> int:
    """Dispatch on RUN_DIR (run evaluation) or --mesh/--ref (file comparison)."""
    if args.run_dir is not None:
        if args.mesh or args.ref:
            raise ValueError("--mesh/--ref compare two mesh files; with RUN_DIR use --reference")
        metrics = evaluate_run(
            Path(args.run_dir),
            data=args.data,
            reference=args.reference,
            ckpt=None if args.ckpt is None else Path(args.ckpt),
            out=None if args.out is None else Path(args.out),
            samples=args.samples,
            device=args.device,
            grid_views=args.grid_views,
            wandb_mode=args.wandb,
            overwrite=args.overwrite,
        )
        print(json.dumps({k: v for k, v in metrics.items() if k != "per_view"}, indent=1))
        return 0
    if not (args.mesh and args.ref):
        raise ValueError("give RUN_DIR (a fit run folder) or both --mesh and --ref (mesh files)")
    return _compare_mesh_files(args)


def _compare_mesh_files(args: argparse.Namespace) -> int:
    """Read both meshes, compute :func:`geometry_report`, print or write it as JSON."""
    pred, _ = read_mesh(args.mesh)
    ref, _ = read_mesh(args.ref)
    report = geometry_report(
        pred.to(args.device),
        ref.to(args.device),
        n_samples=args.samples or MESH_MODE_SAMPLES,
        seed=args.seed,
        normalize=args.normalize,
        thresholds=args.thresholds,
    )
    report.update(mesh=str(args.mesh), ref=str(args.ref))
    text = json.dumps(report, indent=1)
    if args.out:
        write_text_atomic(args.out, text + "\n")
        log.info("geometry report written to %s", args.out)
    else:
        print(text)
    return 0
