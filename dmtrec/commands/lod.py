"""``dmtrec lod --mesh HIGH.(obj|glb) --probe P.hdr --levels 0.25 0.05 0.01 --out DIR``: appearance-driven
levels of detail (see :mod:`dmtrec.assets.lod` for the method and its defaults).

Options may also come from YAML config files, as ``dmtrec fit``'s do (``-c lod.yaml``, repeated to
override, ``--print_config``, ``${DMTREC_DATA}`` expanded): the keys are the options' names with
underscores (``mesh``, ``levels``, ``min_res``, ..., and a ``run:`` section), e.g.
``experiments/configs/lod_spot.yaml``.

``DIR`` is the run folder, as a fit's (:mod:`dmtrec.runs.folder`): the optimisation runs under the
fit's Trainer (:class:`dmtrec.runs.trainer.RunSession`: progress bar, wandb logger, offline by
default, ``--run.wandb``, and checkpoints, ``DIR/checkpoints/last.ckpt`` every
``--run.checkpoint_every`` steps). Run the same command again after an interruption and it resumes
the level it was on, skipping finished levels; a different configuration on the same ``DIR`` is
refused unless ``--run.overwrite true``.

Writes into ``DIR``: ``lodN.glb`` and ``lodN/mesh.obj`` per level (finest first), ``lods.glb`` (all
levels, glTF ``MSFT_lod`` with screen-coverage hints), ``contact_sheet.png`` (rows: levels; columns:
original | QEM-only | optimised | written, one held-out view) and, last, ``report.json``: each file atomically,
so a folder without ``report.json`` is an unfinished run. Bad inputs are reported before ``DIR`` is
created.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import pytorch_lightning as pl
import torch

from dmtrec.assets.lod import TRAINABLE, LodSettings, level_budgets, level_contact_sheet, load_lod_inputs
from dmtrec.core.atomic import atomic_path, write_json
from dmtrec.io.gltf import write_glb
from dmtrec.io.gltf_lod import write_lod_glb
from dmtrec.io.gltf_skin import has_skin
from dmtrec.io.obj import write_obj
from dmtrec.runs.command_run import check_out, open_run, run_from_args
from dmtrec.runs.folder import RunConfig
from dmtrec.systems.lod import LodSystem

from . import options

log = logging.getLogger(__name__)

HELP = "levels of detail of a PBR asset, optimised to look like it (--mesh M --probe P --levels F... --out DIR)"
CONFIG_FILES = True
"""Parsed by the CLI with LightningCLI's parser (``-c`` config files, ``--print_config``)."""


# (option, LodSettings field, type, help); "nargs" options take one value per level.
_SETTINGS_OPTIONS = (
    ("--res", "res", int, "screen size (px) filled by the whole asset; level f is judged at res*sqrt(f) px"),
    ("--min-res", "min_res", int, "smallest level resolution"),
    ("--level-res", "level_res", int, "explicit resolution per level (nargs; overrides --res)"),
    ("--spp", "spp", int, "supersampling per axis of the training renders"),
    (
        "--eval-spp",
        "eval_spp",
        int,
        "supersampling per axis of the original's references and of the levels judged on them (None: --spp)",
    ),
    ("--iterations", "iterations", int, "optimisation steps per level"),
    ("--batch", "batch", int, "views per step"),
    ("--lr", "lr", float, "Adam learning rate"),
    ("--texture-lr", "texture_lr", float, "learning rate of the textures (None: --lr)"),
    ("--laplace-weight", "laplace_weight", float, "relative Laplacian weight (None: nvdiffmodeling's automatic one)"),
    ("--texture-res", "texture_res", int, "texture size per level"),
    ("--train-views", "train_views", int, "reference views optimised on"),
    ("--heldout-views", "heldout_views", int, "held-out views for the metrics"),
    ("--validation-views", "validation_views", int, "views deciding whether a level keeps its start"),
    ("--freeze-below-px", "freeze_below_px", float, "positions frozen when the start is within this many pixels"),
    ("--probe-res", "probe_res", int, "probe cube-map face size"),
    ("--seed", "seed", int, "seed of the views and backgrounds"),
    ("--skip-train", "skip_train", str, "parameters kept as transferred (nargs; of position normal kd ks)"),
)
_LIST_OPTIONS = ("level_res", "skip_train")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The :class:`LodSettings` options (shared with experiments/benchmarks/lod.py)."""
    defaults = LodSettings()
    for option, name, kind, text in _SETTINGS_OPTIONS:
        extra = {"nargs": "+"} if name in _LIST_OPTIONS else {}
        parser.add_argument(
            option, type=kind, default=getattr(defaults, name), help=f"{text} (default %(default)s)", **extra
        )
    parser.add_argument("--no-flip", action="store_true", help="skip FLIP even when flip-evaluator is installed")
    parser.add_argument(
        "--no-retry-frozen",
        action="store_true",
        help="keep the start when the optimised level loses to it, without training it again with frozen positions",
    )


def add_arguments(parser) -> None:
    """Options of ``dmtrec lod``; ``parser`` is the CLI's LightningArgumentParser (jsonargparse)."""
    parser.add_argument("--mesh", required=True, help="high-poly asset: .obj (with MTL and textures) or .glb")
    parser.add_argument("--probe", required=True, help="HDR environment probe (.hdr, equirectangular)")
    parser.add_argument("--levels", type=float, nargs="+", help="triangle budgets as fractions, e.g. 0.25 0.05 0.01")
    parser.add_argument("--faces", type=int, nargs="+", help="triangle budgets as counts, e.g. 20000 4000 800")
    parser.add_argument("--out", required=True, help="output (run) folder")
    parser.add_argument(
        "--poses", type=int, help="skinned .glb: training poses (default 256; dmtrec.commands.lod_skinned)"
    )
    parser.add_argument("--animation", help="skinned .glb: the animation the poses come from (default: all)")
    add_settings_arguments(parser)
    parser.add_class_arguments(RunConfig, "run", skip={"name", "output_root", "export_frame"})


def settings_from_args(args) -> LodSettings:
    values = {name: getattr(args, name) for _, name, _, _ in _SETTINGS_OPTIONS}
    values["skip_train"] = list(values["skip_train"] or [])
    unknown = sorted(set(values["skip_train"]) - set(TRAINABLE))
    if unknown:
        raise ValueError(f"--skip-train: unknown parameter {unknown[0]!r}; choose from {', '.join(TRAINABLE)}")
    return LodSettings(**values, flip=not args.no_flip, retry_frozen=not args.no_retry_frozen)


def check_settings(settings: LodSettings) -> None:
    """Every option in its range, before any work (one line naming the option)."""
    options.at_least(
        (
            ("--spp", settings.spp),
            ("--eval-spp", settings.eval_spp),
            ("--batch", settings.batch),
            ("--train-views", settings.train_views),
            ("--heldout-views", settings.heldout_views),
            ("--validation-views", settings.validation_views),
        ),
        1,
    )
    options.at_least((("--iterations", settings.iterations),), 0)
    options.at_least((("--res", settings.res), ("--min-res", settings.min_res)), 8)
    options.at_least((("--level-res", min(settings.level_res)),) if settings.level_res else (), 8)
    options.at_least((("--texture-res", settings.texture_res),), 4)
    options.at_least(
        (
            ("--lr", settings.lr),
            ("--texture-lr", settings.texture_lr),
            ("--laplace-weight", settings.laplace_weight),
            ("--freeze-below-px", settings.freeze_below_px),
        ),
        0,
    )
    options.probe_res(settings.probe_res)


def _resolved_config(mesh_path, probe_path, levels, faces, settings: LodSettings) -> dict:
    """What decides a lod run's result; a rerun on the same folder must match it to resume."""
    return {
        "mesh": str(Path(mesh_path).resolve()),
        "probe": str(Path(probe_path).resolve()),
        "levels": list(levels) if levels is not None else None,
        "faces": list(faces) if faces is not None else None,
        "settings": asdict(settings),
    }


def run_lod(
    mesh_path,
    probe_path,
    out,
    settings: LodSettings,
    levels=None,
    faces=None,
    run: Optional[RunConfig] = None,
    callbacks: Sequence[pl.Callback] = (),
) -> dict:
    """Check the inputs, open (or resume) the run folder ``out``, build every level and write the
    outputs; returns the report. ``callbacks`` join the Trainer's (tests interrupt runs with one)."""
    start_time = time.perf_counter()
    out = Path(out)
    run = run or RunConfig()
    check_settings(settings)
    check_out(out, run)
    mesh, material, light, topology, notes = load_lod_inputs(mesh_path, probe_path, settings)
    budgets = level_budgets(mesh.num_faces, levels, faces, mesh_path)
    if settings.level_res and len(settings.level_res) != len(budgets):
        raise ValueError(f"--level-res: {len(settings.level_res)} values for {len(budgets)} levels")
    config = _resolved_config(mesh_path, probe_path, levels, faces, settings)
    with open_run(out, run, config, "lod") as fit:
        system = LodSystem(mesh, material, light, budgets, settings)
        # The asset, probe and level preparation (QEM, xatlas, KD-tree) are CPU-side.
        fit(system, callbacks, accelerator="cpu")
        report = _write_outputs(out, system, mesh_path, probe_path, mesh.num_faces, topology, notes, settings)
        report["seconds_this_session"] = time.perf_counter() - start_time
    return report


def _write_outputs(out: Path, system: LodSystem, mesh_path, probe_path, faces, topology, notes, settings) -> dict:
    """Each file atomically, ``report.json`` last (its presence marks a finished run)."""
    built = system.levels()
    for level in built:
        textures = level.material.to_tensors()
        write_glb(out / f"lod{level.index}.glb", level.mesh, textures, occlusion=False)
        write_obj(out / f"lod{level.index}", level.mesh, textures, name="mesh")
    # A level of fraction f is made for an asset covering about f of the screen's area; switch
    # to the next one half-way (geometrically) to its design coverage; never cull the last.
    coverage = [math.sqrt(a.fraction * b.fraction) for a, b in zip(built, built[1:])] + [0.0]
    write_lod_glb(out / "lods.glb", [(lv.mesh, lv.material.to_tensors()) for lv in built], coverage)
    with atomic_path(out / "contact_sheet.png") as tmp:
        level_contact_sheet(built, system.reference_images()).save(tmp, format="PNG")
    report = {
        "mesh": str(mesh_path),
        "probe": str(probe_path),
        "input": {"triangles": faces, "genus": topology["genus"]},
        "notes": notes,
        "settings": asdict(settings),
        "levels": [level.report for level in built],
        "screen_coverage": coverage,
        "contact_sheet": "rows: levels (finest first); columns: original | QEM-only | optimised | written "
        "(the kept one; held-out view 0)",
        # torch's own count: callers (the benchmark) may set it without OMP_NUM_THREADS.
        "threads": torch.get_num_threads(),
    }
    write_json(out / "report.json", report)
    return report


def main(args) -> int:
    run = run_from_args(args)
    if Path(args.mesh).suffix.lower() == ".glb" and Path(args.mesh).is_file() and has_skin(args.mesh):
        from dmtrec.commands.lod_skinned import print_report, run_skinned_lod  # skinned assets fit over poses

        settings = settings_from_args(args)
        check_settings(settings)
        report = run_skinned_lod(
            args.mesh, args.probe, args.out, settings, args.levels, args.faces, args.poses, args.animation, run
        )
        print_report(report, args.out)
        return 0
    report = run_lod(
        Path(args.mesh), Path(args.probe), Path(args.out), settings_from_args(args), args.levels, args.faces, run
    )
    for index, level in enumerate(report["levels"]):
        print(
            f"lod{index}: {level['triangles']} triangles (budget {level['budget']}), held-out PSNR "
            f"{level['final']['psnr']:.2f} dB (QEM-only {level['qem_only']['psnr']:.2f} dB, optimised "
            f"{level['optimised']['psnr']:.2f} dB"
            + (
                f", retried with frozen positions {level['optimised_frozen']['psnr']:.2f} dB"
                if "optimised_frozen" in level
                else ""
            )
            + f"; kept the {level['kept']}, positions {level['positions']})"
        )
    print(f"written: {args.out}")
    return 0
