"""``dmtrec bake --mesh ASSET --probe P.hdr --target texture|vertex --out DIR``: bake an asset's PBR
look under a probe into an unlit texture or per-vertex colours, for devices without PBR shading.

Renders the PBR asset from the chosen views (the reference), point-samples the bake (each
texel / vertex gets the PBR radiance of its surface point seen along the normal), then fits the
unlit texture (through its mips) or vertex colours by gradient descent from that start. The bake
kept is the better of the point sample and the optimised one on validation views (``--val-views``,
drawn apart from the held-out views the scores are measured on); ``report.json`` says which
(``kept``). ``--check-optimum`` adds the closed-form checks of the optimiser and the view-averaged
ceiling (diagnostics: minutes on a CPU). See :mod:`dmtrec.assets.unlit_bake`.

As ``dmtrec lod`` (:mod:`dmtrec.runs.command_run`): options may come from YAML config files
(``-c bake.yaml``, keys: the options' names with underscores, and a ``run:`` section), ``DIR`` is
the run folder (progress bar ``bake 120/300`` on stderr, wandb offline by default, checkpoints
every ``--run.checkpoint_every`` steps); the same command on the same ``DIR`` resumes an
interrupted bake, another configuration is refused unless ``--run.overwrite true`` (or
``--overwrite``).

Outputs (each file atomically, ``report.json`` last: a folder without it is an unfinished run):
``baked.glb`` (``KHR_materials_unlit``; texture, or ``COLOR_0``), ``baked.obj`` + ``.mtl`` +
``baked_kd.png`` (texture) or ``baked.ply`` (vertex), ``report.json`` and ``contact_sheet.png``
(held-out views: PBR reference | point-sampled | optimised). ``--shader`` fits a shading model
instead (:mod:`dmtrec.assets.shader_bake`; written in one go, without checkpoints).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from PIL import Image

from dmtrec.assets.unlit_bake import (
    TARGETS,
    BakeResult,
    check_overlap,
    display,
    finish_bake,
    point_sample,
    premultiplied,
    view_averaged_ceiling,
    with_render_frame,
)
from dmtrec.assets.views import render_reference, view_cameras
from dmtrec.core.atomic import atomic_folder, atomic_path, write_json
from dmtrec.core.mesh import Mesh
from dmtrec.core.output_folder import check_output_folder
from dmtrec.datasets.reference_mesh import load_asset, load_probe
from dmtrec.geometry.uv_unwrap import uv_unwrap
from dmtrec.io.contact_sheet import contact_sheet
from dmtrec.io.gltf import write_glb
from dmtrec.io.mesh_files import read_mesh
from dmtrec.io.obj import write_obj
from dmtrec.io.ply import write_ply
from dmtrec.metrics.image_losses import PIXEL_LOSS_ALIASES, PIXEL_LOSSES, pixel_loss_name
from dmtrec.render.camera import Cameras
from dmtrec.render.camera_distributions import DISTRIBUTIONS
from dmtrec.render.raster import get_rasterizer
from dmtrec.runs.command_run import check_out, open_run, run_from_args
from dmtrec.runs.folder import RunConfig
from dmtrec.systems.bake import BakeSystem

from . import options

log = logging.getLogger(__name__)

HELP = "bake a PBR asset's look under a probe into an unlit texture or vertex colours (--mesh --probe --target --out)"
CONFIG_FILES = True
"""Parsed by the CLI with LightningCLI's parser (``-c`` config files, ``--print_config``)."""


def add_arguments(parser) -> None:
    """Options of ``dmtrec bake``; ``parser`` is the CLI's LightningArgumentParser (jsonargparse)."""
    parser.add_argument("--mesh", required=True, help="the PBR asset: OBJ (with MTL and textures) or GLB")
    parser.add_argument("--probe", required=True, help="HDR environment probe (.hdr, equirectangular)")
    parser.add_argument(
        "--target", choices=TARGETS, help="bake into a texture or vertex colours (required without --shader)"
    )
    parser.add_argument("--out", required=True, help="output folder (an existing non-empty one needs --overwrite)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out folder (= --run.overwrite true)"
    )
    parser.add_argument(
        "--shader",
        help="fit this shading model's textures and constants instead of an unlit bake: a built-in name "
        "(simple_lit, lambert_vc, matcap, toon, unlit) or FILE.py:ClassName",
    )
    parser.add_argument("--onto", help="bake onto this mesh instead (e.g. a level from `dmtrec lod`); OBJ or GLB")
    parser.add_argument("--views", type=int, default=64, help="training views (default 64)")
    parser.add_argument("--held-out", type=int, default=8, help="held-out views the scores use (default 8)")
    parser.add_argument(
        "--val-views",
        type=int,
        default=8,
        help="validation views, apart from the held-out ones, that choose between the point sample and the "
        "optimised bake (default 8; 0: keep the optimised bake)",
    )
    parser.add_argument(
        "--distribution",
        default="sphere",
        help=f"view distribution: {' | '.join(DISTRIBUTIONS)} | a camera-list JSON (NeRF transforms layout)",
    )
    parser.add_argument("--res", type=int, default=256, help="render resolution (default 256)")
    parser.add_argument("--texture-res", type=int, default=256, help="baked texture size (default 256)")
    parser.add_argument(
        "--loss",
        type=pixel_loss_name,
        choices=tuple(PIXEL_LOSSES),
        default="l2",
        help="l2 (squared error of linear radiance), log1p_l1 (|log1p(a) - log1p(b)|) or srgb_l2 (squared error of "
        "the displayed sRGB values, what the held-out PSNR scores); "
        f"old names accepted: {', '.join(f'{k} = {v}' for k, v in PIXEL_LOSS_ALIASES.items())} (default l2)",
    )
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam learning rate (default 0.02)")
    parser.add_argument("--batch", type=int, default=8, help="views per step (default 8)")
    parser.add_argument(
        "--prior-weight",
        type=float,
        default=0.0,
        help="pull towards the point sample: each texel/vertex counts as this many pixels seeing it (default 0)",
    )
    parser.add_argument("--spp", type=int, default=1, help="supersampling of the reference renders per axis")
    parser.add_argument("--fovy", type=float, default=45.0, help="vertical field of view in degrees (default 45)")
    parser.add_argument("--probe-res", type=int, default=128, help="cube-map face size of the probe (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the views and the optimiser")
    parser.add_argument(
        "--check-optimum",
        action="store_true",
        help="also compute the closed forms that check the optimiser (footprint mean, least-squares optimum by "
        "conjugate gradients; each CG iteration renders every view: minutes on a CPU), every bake's training-view "
        "PSNR and the view-averaged ceiling",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    if hasattr(parser, "add_class_arguments"):  # the CLI's parser; a plain argparse one runs with RunConfig()
        parser.add_class_arguments(RunConfig, "run", skip={"name", "output_root", "export_frame"})


def _load_target(path: Path, target: str, texture_res: int) -> Tuple[Mesh, str]:
    """The ``--onto`` mesh (geometry only), unwrapped when a texture target needs UVs."""
    mesh, _ = read_mesh(path)
    if mesh.num_vertices == 0 or mesh.is_empty:
        raise ValueError(f"{path}: mesh has no vertices or faces")
    unwrap = "file"
    if target == "texture" and mesh.v_tex is None:
        result = uv_unwrap(mesh, texture_res=texture_res)
        mesh, unwrap = result.mesh, result.method
    return mesh, unwrap


def _split_views(cameras: Cameras, held_out: int, path: str) -> Tuple[Cameras, Cameras]:
    """A camera list's training views and every k-th one held out."""
    n = cameras.batch_size
    if n < 2:
        raise ValueError(f"{path}: a camera list needs at least 2 cameras (training and held-out views)")
    stride = max(2, n // max(held_out, 1))
    held = list(range(stride - 1, n, stride))[:held_out]
    train = [i for i in range(n) if i not in held]
    return Cameras(cameras.c2w[train], cameras.proj[train], cameras.resolution), Cameras(
        cameras.c2w[held], cameras.proj[held], cameras.resolution
    )


def _views(args, source: Mesh, device) -> Tuple[Cameras, Cameras, Optional[Cameras]]:
    """``(training, held-out, validation)`` cameras; validation None with ``--val-views 0`` (or a
    camera list too short to spare any: fewer than 4 training cameras)."""
    if args.distribution in DISTRIBUTIONS:

        def draw(count: int, seed: int) -> Cameras:
            return view_cameras(args.distribution, count, source, args.fovy, args.res, seed)

        cameras, held_out = draw(args.views, args.seed), draw(args.held_out, args.seed + 1)
        validation = draw(args.val_views, args.seed + 2) if args.val_views else None
    else:
        listed = view_cameras(args.distribution, 0, source, resolution=args.res)
        cameras, held_out = _split_views(listed, args.held_out, args.distribution)
        validation = None
        if args.val_views and cameras.batch_size >= 4:
            cameras, validation = _split_views(cameras, min(args.val_views, cameras.batch_size // 4), args.distribution)
    return cameras.to(device), held_out.to(device), None if validation is None else validation.to(device)


def _resolved_config(args) -> dict:
    """What decides a bake's result; a rerun on the same folder must match it to resume."""
    paths = {k: str(Path(getattr(args, k)).resolve()) if getattr(args, k) else None for k in ("mesh", "probe", "onto")}
    options = (
        "target", "distribution", "views", "held_out", "val_views", "res", "texture_res", "loss", "steps", "lr",
        "batch", "prior_weight", "spp", "fovy", "probe_res", "seed", "check_optimum", "device",
    )  # fmt: skip
    return {**paths, "settings": {k: getattr(args, k) for k in options}}


def run_bake(args, callbacks: Sequence[pl.Callback] = ()) -> Dict[str, object]:
    """Validate everything, bake in the run folder ``args.out`` (resuming it), and write the
    outputs; returns the report. ``callbacks`` join the Trainer's (tests interrupt bakes with one)."""
    wall, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(args.seed)
    options.at_least((("--views", args.views), ("--held-out", args.held_out), ("--batch", args.batch)), 1)
    options.at_least((("--val-views", args.val_views),), 0)
    options.at_least((("--res", args.res),), 16)
    options.at_least((("--texture-res", args.texture_res),), 4)
    options.at_least((("--steps", args.steps), ("--prior-weight", args.prior_weight)), 0)
    options.at_least((("--spp", args.spp),), 1)
    options.probe_res(args.probe_res)
    run = run_from_args(args) if getattr(args, "run", None) is not None else RunConfig()
    run = dataclasses.replace(run, overwrite=bool(run.overwrite or getattr(args, "overwrite", False)))
    out = Path(args.out)
    model = _check_shader_args(args)
    if model is None:
        check_out(out, run, flag="--overwrite")
    else:
        check_output_folder(out, run.overwrite)
    device = torch.device(args.device)
    mesh_path = Path(args.mesh)
    # Every input is read and checked before anything is written.
    source, material = load_asset(mesh_path, device)
    if source.num_vertices == 0 or source.is_empty:
        raise ValueError(f"{mesh_path}: mesh has no vertices or faces")
    light = load_probe(args.probe, args.probe_res, device=device)
    onto, unwrap, source_has_uvs = None, "file", source.v_tex is not None
    if args.onto:
        onto, unwrap = _load_target(Path(args.onto), args.target, args.texture_res)
        onto = onto.to(device)
    if source.v_tex is None:
        if any(t.shape[0] * t.shape[1] > 1 for t in material.to_tensors().values()):
            raise ValueError(f"{mesh_path}: mesh has textures but no UVs")
        if args.target == "texture" and onto is None:
            result = uv_unwrap(source, texture_res=args.texture_res)
            source, unwrap = result.mesh, result.method
        else:  # a constant material: any UVs read it
            source = source.copy(v_tex=torch.zeros(1, 2, device=device), t_tex_idx=torch.zeros_like(source.t_pos_idx))
    source = with_render_frame(source, material)
    overlap = check_overlap(source, onto, args.onto) if onto is not None else 0.0

    rasterizer = get_rasterizer("auto", device)
    start = time.perf_counter()
    cameras, held_out, validation = _views(args, source, device)
    views = cameras.batch_size + held_out.batch_size + (validation.batch_size if validation is not None else 0)
    log.info("bake: rendering %d PBR reference views at %d px", views, args.res)
    references = render_reference(source, material, light, cameras, rasterizer, args.spp)
    held_refs = render_reference(source, material, light, held_out, rasterizer, args.spp)
    val_refs = (
        None if validation is None else render_reference(source, material, light, validation, rasterizer, args.spp)
    )
    reference_seconds = time.perf_counter() - start
    if model is not None:
        seconds = {"reference": reference_seconds}
        return _run_shader_bake(
            args, model, source, material, light, cameras, references, held_out, held_refs, seconds, onto, unwrap
        )
    start = time.perf_counter()
    mesh, point = point_sample(source, material, light, onto, args.target, rasterizer, args.texture_res)
    seconds = {"reference": reference_seconds, "point_sample": time.perf_counter() - start}
    with open_run(out, run, _resolved_config(args), "bake") as fit:
        start = time.perf_counter()
        system = BakeSystem(
            mesh, args.target, point, cameras, references, rasterizer,
            steps=args.steps, lr=args.lr, batch=args.batch, loss=args.loss, seed=args.seed,
            prior_weight=args.prior_weight,
        )  # fmt: skip
        fit(system, callbacks, accelerator="gpu" if device.type == "cuda" else "cpu")
        seconds["optimise_this_session"] = time.perf_counter() - start
        log.info("bake: scoring the bakes on %d held-out views", held_out.batch_size)
        result = BakeResult(args.target, mesh, point, system.values().to(device), seconds=seconds, losses=system.losses)
        result = finish_bake(
            result, onto is None, cameras, references, held_out, held_refs, rasterizer, args.texture_res,
            args.batch, args.check_optimum, prior_weight=args.prior_weight,
            validation=None if validation is None else (validation, val_refs),
        )  # fmt: skip
        ceiling = None
        if args.check_optimum and source_has_uvs:  # the source's own view-averaged radiance, twice the texture size
            start = time.perf_counter()
            log.info("bake: the view-averaged ceiling (--check-optimum)")
            ceiling = view_averaged_ceiling(
                source, cameras, references, held_out, held_refs, rasterizer, min(2 * args.texture_res, 2048)
            )
            seconds["ceiling"] = time.perf_counter() - start
        seconds["total_this_session"] = time.perf_counter() - wall
        seconds["cpu_this_session"] = time.process_time() - cpu
        report = _report(args, result, cameras, held_out, validation, unwrap, overlap, ceiling)
        _write_outputs(out, args.target, result, held_refs, report)
    return report


def _report(args, result: BakeResult, cameras, held_out, validation, unwrap, overlap, ceiling) -> Dict[str, object]:
    return {
        "mesh": str(args.mesh),
        "probe": str(args.probe),
        "onto": args.onto,
        "target": args.target,
        "faces": result.mesh.num_faces,
        "vertices": result.mesh.num_vertices,
        "uvs": unwrap,
        "distribution": args.distribution,
        "views": cameras.batch_size,
        "held_out_views": held_out.batch_size,
        "validation_views": 0 if validation is None else validation.batch_size,
        "resolution": args.res,
        "texture_res": args.texture_res if args.target == "texture" else None,
        "loss": args.loss,
        "steps": args.steps,
        "prior_weight": args.prior_weight,
        "overlap_median_distance": overlap,
        # The bake written: the better of the two on the validation views (never the held-out ones).
        "kept": result.kept,
        "selection_psnr_validation": result.selection,
        "scores_held_out": result.scores,
        "final_held_out": result.scores[result.kept],
        "gain_db": result.scores["optimised"]["psnr"] - result.scores["point_sampled"]["psnr"],
        "view_averaged_ceiling": ceiling,
        "clipped_fraction": result.info["clipped_fraction"],
        "cg_residuals": result.info.get("cg_residuals"),
        "loss_first_last": [result.losses[0], result.losses[-1]] if result.losses else None,
        "seconds": result.seconds,
        "threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()),
    }


def _write_outputs(out: Path, target: str, result: BakeResult, held_refs: torch.Tensor, report: dict) -> None:
    """Each file atomically, ``report.json`` last (its presence marks a finished bake)."""
    final = result.final
    if target == "texture":
        write_glb(out / "baked.glb", result.mesh, {"kd": final}, unlit=True)
        write_obj(out, result.mesh, {"kd": final}, name="baked")
    else:
        write_glb(out / "baked.glb", result.mesh, unlit=True, vertex_color=final)
        write_ply(out / "baked.ply", result.mesh, final)
    with atomic_path(out / "contact_sheet.png") as tmp:
        bake_contact_sheet(held_refs, result.renders).save(tmp, format="PNG")
    write_json(out / "report.json", report)


def _check_shader_args(args: argparse.Namespace):
    """The ``--shader`` model (None without), after checking the options that go with it."""
    if not getattr(args, "shader", None):
        if args.target is None:
            raise ValueError("--target texture|vertex is required (or --shader NAME_OR_FILE)")
        return None
    if args.target == "vertex":
        raise ValueError("--shader fits textures: --target vertex does not apply")
    args.target = "texture"
    from dmtrec.render.shaders import load_shader

    return load_shader(args.shader)


def _run_shader_bake(
    args, model, source, material, light, cameras, references, held_out, held_refs, seconds, onto=None, unwrap="file"
):
    """``bake --shader``: fit the model (:mod:`dmtrec.assets.shader_bake`) on the asset or ``onto``
    (with ``unwrap``, how its UVs were made), write its outputs and report."""
    from dmtrec.assets.shader_bake import bake_shader, write_shader_bake

    rasterizer = get_rasterizer("auto", source.device)
    result = bake_shader(
        source, material, light, model, cameras, references, held_out, held_refs, rasterizer,
        texture_res=args.texture_res, onto=onto, steps=args.steps, lr=args.lr, batch=args.batch, loss=args.loss,
        seed=args.seed,
    )  # fmt: skip
    result.seconds.update(seconds)
    scores = result.scores
    report = {
        "mesh": str(args.mesh),
        "probe": str(args.probe),
        "shader": args.shader,
        "model": model.name,
        "onto": args.onto,
        "faces": result.mesh.num_faces,
        "uvs": unwrap,
        "distribution": args.distribution,
        "views": cameras.batch_size,
        "held_out_views": held_out.batch_size,
        "resolution": args.res,
        "texture_res": args.texture_res,
        "loss": args.loss,
        "steps": args.steps,
        "scores_held_out": scores,
        "gain_db": scores["fitted"]["psnr"] - scores["initial"]["psnr"],
        "flip": "flip_evaluator" if scores["fitted"]["flip"] is not None else "not installed: skipped",
        "loss_first_last": [result.losses[0], result.losses[-1]] if result.losses else None,
        "seconds": result.seconds,
        "threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()),
    }
    with atomic_folder(check_output_folder(args.out, args.overwrite)) as tmp:
        write_shader_bake(tmp, result)
        renders = {"point_sampled": result.renders["initial"], "optimised": result.renders["fitted"]}
        bake_contact_sheet(held_refs, renders).save(tmp / "contact_sheet.png")
        write_json(tmp / "report.json", report)
    return report


def bake_contact_sheet(references: torch.Tensor, renders: Dict[str, torch.Tensor], rows: int = 4) -> Image.Image:
    """PBR reference | point-sampled | optimised, one row per held-out view (``rows`` at most)."""
    columns = [premultiplied(references), renders["point_sampled"][..., :3], renders["optimised"][..., :3]]
    tiles = [display(column[view]) for view in range(min(rows, references.shape[0])) for column in columns]
    return contact_sheet(tiles, columns=3)


def main(args: argparse.Namespace) -> int:
    report = run_bake(args)
    scores = report["scores_held_out"]
    for name, score in scores.items():
        flip = f", FLIP {score['flip']:.4f}" if score.get("flip") is not None else ""
        print(f"{name}: PSNR {score['psnr']:.2f} dB, SSIM {score['ssim']:.4f}{flip} (held-out)")
    if report.get("view_averaged_ceiling") is not None:
        print(f"view-averaged ceiling: PSNR {report['view_averaged_ceiling']['psnr']:.2f} dB")
    if report.get("kept"):
        psnr = ", ".join(f"{k} {v:.2f} dB" for k, v in (report["selection_psnr_validation"] or {}).items())
        print(f"kept: {report['kept']}" + (f" (validation PSNR: {psnr})" if psnr else " (no validation views)"))
    print(f"wrote {args.out}")
    return 0
