"""``dmtrec shader-check MODEL``: check a shading model's backward against float64 finite differences.

``MODEL`` is a built-in name, ``FILE.py:ClassName`` (a user model) or ``all`` (every built-in).
Prints the worst relative error per parameter over random G-buffers (see
:mod:`dmtrec.render.shaders.check`); exits 1 with ``error: <model>: derivative disagrees ...``
when any exceeds the tolerance.
"""

from __future__ import annotations

import argparse

from dmtrec.render.shaders import BUILTINS, load_shader
from dmtrec.render.shaders.check import TOLERANCE, check_model

HELP = "check a shading model's derivatives against float64 finite differences (MODEL: name, FILE.py:Class or all)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=f"{' | '.join(BUILTINS)} | FILE.py:ClassName | all")
    parser.add_argument("--fragments", type=int, default=64, help="fragments per random G-buffer (default 64)")
    parser.add_argument("--gbuffers", type=int, default=3, help="random G-buffers (default 3)")
    parser.add_argument("--directions", type=int, default=4, help="random directions per parameter (default 4)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help=f"relative error (default {TOLERANCE})")
    parser.add_argument("--seed", type=int, default=0, help="seeds the G-buffers and directions")


def main(args: argparse.Namespace) -> int:
    specs = list(BUILTINS) if args.model == "all" else [args.model]
    reports = []
    for spec in specs:
        report = check_model(
            load_shader(spec),
            fragments=args.fragments,
            gbuffers=args.gbuffers,
            directions=args.directions,
            tolerance=args.tolerance,
            seed=args.seed,
        )
        print(report.table())
        reports.append(report)
    for report in reports:
        if not report.ok:
            wrong = ", ".join(f"{k} ({v:.2e})" for k, v in report.failed.items())
            raise ValueError(f"{report.model}: derivative disagrees with finite differences for {wrong}")
    return 0
