"""``dmtrec eval``: the geometry report of a mesh file against a reference mesh file.

Wired like the other non-Lightning commands (``add_eval_args`` / ``run_eval``); image metrics
on held-out views come from ``dmtrec test``, which renders them.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .geometry import NORMALIZATIONS, geometry_report

log = logging.getLogger(__name__)


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mesh", required=True, help="reconstructed mesh (OBJ or GLB)")
    parser.add_argument("--ref", required=True, help="reference mesh (OBJ or GLB)")
    parser.add_argument("--out", help="write the report as JSON here (default: print it)")
    parser.add_argument("--samples", type=int, default=100_000, help="surface samples per mesh (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--normalize", choices=NORMALIZATIONS, default="ref_bbox",
                        help="ref_bbox: distances in units of the reference's longest bounding-box side")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.005, 0.01, 0.02],
                        help="F-score distance thresholds")
    parser.add_argument("--device", default="cpu", help="torch device for the nearest-neighbour search")


def run_eval(args: argparse.Namespace) -> int:
    """Read both meshes, compute :func:`geometry_report`, print or write it as JSON."""
    from dmtrec.systems.components import read_mesh

    pred, _ = read_mesh(args.mesh)
    ref, _ = read_mesh(args.ref)
    report = geometry_report(pred.to(args.device), ref.to(args.device), n_samples=args.samples, seed=args.seed,
                             normalize=args.normalize, thresholds=args.thresholds)
    report.update(mesh=str(args.mesh), ref=str(args.ref))
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        log.info("geometry report written to %s", args.out)
    else:
        print(text)
    return 0
