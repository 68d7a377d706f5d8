"""``dmtrec lod --mesh HIGH.(obj|glb) --probe P.hdr --levels 0.25 0.05 0.01 --out DIR``: appearance-driven
levels of detail (see :mod:`dmtrec.assets.lod` for the method and its defaults).

Writes into ``DIR`` (atomically: a failed run leaves no folder that looks finished):
``lodN.glb`` and ``lodN/mesh.obj`` per level (finest first), ``lods.glb`` (all levels, glTF
``MSFT_lod`` with screen-coverage hints), ``report.json`` and ``contact_sheet.png`` (rows: levels;
columns: original | QEM-only | optimised, one held-out view).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from pathlib import Path

from dmtrec.assets.lod import LodSettings, contact_sheet, level_budgets, load_lod_inputs, settings_dict
from dmtrec.core.atomic import atomic_folder, write_json
from dmtrec.io.gltf import write_glb
from dmtrec.io.gltf_lod import write_lod_glb
from dmtrec.io.obj import write_obj
from dmtrec.systems.lod import build_levels

log = logging.getLogger(__name__)

HELP = "levels of detail of a PBR asset, optimised to look like it (--mesh M --probe P --levels F... --out DIR)"


# (option, LodSettings field, type, help); "nargs" options take one value per level.
_SETTINGS_OPTIONS = (
    ("--res", "res", int, "screen size (px) filled by the whole asset; level f is judged at res*sqrt(f) px"),
    ("--min-res", "min_res", int, "smallest level resolution"),
    ("--level-res", "level_res", int, "explicit resolution per level (nargs; overrides --res)"),
    ("--spp", "spp", int, "supersampling per axis"),
    ("--iterations", "iterations", int, "optimisation steps per level"),
    ("--batch", "batch", int, "views per step"),
    ("--lr", "lr", float, "Adam learning rate"),
    ("--texture-lr", "texture_lr", float, "learning rate of the textures (None: --lr)"),
    ("--laplace-weight", "laplace_weight", float, "relative Laplacian weight (None: nvdiffmodeling's automatic one)"),
    ("--texture-res", "texture_res", int, "texture size per level"),
    ("--train-views", "train_views", int, "reference views optimised on"),
    ("--heldout-views", "heldout_views", int, "held-out views for the metrics"),
    ("--probe-res", "probe_res", int, "probe cube-map face size"),
    ("--seed", "seed", int, "seed of the views and backgrounds"),
)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The :class:`LodSettings` options (shared with experiments/benchmarks/lod.py)."""
    defaults = LodSettings()
    for option, name, kind, text in _SETTINGS_OPTIONS:
        extra = {"nargs": "+"} if name == "level_res" else {}
        parser.add_argument(
            option, type=kind, default=getattr(defaults, name), help=f"{text} (default %(default)s)", **extra
        )
    parser.add_argument("--no-flip", action="store_true", help="skip FLIP even when flip-evaluator is installed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mesh", required=True, help="high-poly asset: .obj (with MTL and textures) or .glb")
    parser.add_argument("--probe", required=True, help="HDR environment probe (.hdr, equirectangular)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--levels", type=float, nargs="+", help="triangle budgets as fractions, e.g. 0.25 0.05 0.01")
    budget.add_argument("--faces", type=int, nargs="+", help="triangle budgets as counts, e.g. 20000 4000 800")
    parser.add_argument("--out", required=True, help="output folder")
    add_settings_arguments(parser)


def settings_from_args(args: argparse.Namespace) -> LodSettings:
    values = {name: getattr(args, name) for _, name, _, _ in _SETTINGS_OPTIONS}
    return LodSettings(**values, flip=not args.no_flip)


def run_lod(mesh_path, probe_path, out, settings: LodSettings, levels=None, faces=None) -> dict:
    """Check the inputs, build every level and write the output folder; returns the report."""
    start = time.perf_counter()
    for value, name in (
        (settings.spp, "--spp"),
        (settings.iterations + 1, "--iterations"),
        (settings.batch, "--batch"),
    ):
        if value < 1:
            raise ValueError(f"{name}: must be positive")
    mesh, material, light, topology, notes = load_lod_inputs(mesh_path, probe_path, settings)
    budgets = level_budgets(mesh.num_faces, levels, faces, mesh_path)
    if settings.level_res and len(settings.level_res) != len(budgets):
        raise ValueError(f"--level-res: {len(settings.level_res)} values for {len(budgets)} levels")
    built, extra = build_levels(mesh, material, light, budgets, settings)
    report = {
        "mesh": str(mesh_path),
        "probe": str(probe_path),
        "input": {"triangles": mesh.num_faces, "genus": topology["genus"]},
        "notes": notes,
        "settings": settings_dict(settings),
        "levels": [level.report for level in built],
        "screen_coverage": [level.fraction for level in built],
        "contact_sheet": "rows: levels (finest first); columns: original | QEM-only | optimised (held-out view 0)",
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
    }
    with atomic_folder(out) as tmp:
        for level in built:
            textures = level.material.to_tensors()
            write_glb(tmp / f"lod{level.index}.glb", level.mesh, textures, occlusion=False)
            write_obj(tmp / f"lod{level.index}", level.mesh, textures, name="mesh")
        # A level of fraction f is made for an asset covering about f of the screen's area; switch
        # to the next one half-way (geometrically) to its design coverage; never cull the last.
        coverage = [math.sqrt(a.fraction * b.fraction) for a, b in zip(built, built[1:])] + [0.0]
        write_lod_glb(tmp / "lods.glb", [(lv.mesh, lv.material.to_tensors()) for lv in built], coverage)
        contact_sheet(tmp / "contact_sheet.png", built, extra["reference_images"])
        report["screen_coverage"] = coverage
        report["seconds"] = time.perf_counter() - start
        write_json(tmp / "report.json", report)
    return report


def main(args: argparse.Namespace) -> int:
    report = run_lod(
        Path(args.mesh), Path(args.probe), Path(args.out), settings_from_args(args), args.levels, args.faces
    )
    for index, level in enumerate(report["levels"]):
        print(
            f"lod{index}: {level['triangles']} triangles (budget {level['budget']}), held-out PSNR "
            f"{level['optimised']['psnr']:.2f} dB (QEM-only {level['qem_only']['psnr']:.2f} dB)"
        )
    print(f"written: {args.out}")
    return 0
