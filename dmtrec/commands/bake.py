"""``dmtrec bake --mesh ASSET --probe P.hdr --target texture|vertex --out DIR``: bake an asset's PBR
look under a probe into an unlit texture or per-vertex colours, for devices without PBR shading.

Renders the PBR asset from the chosen views (the reference), point-samples the bake (each
texel / vertex gets the PBR radiance of its surface point seen along the normal), then fits the
unlit texture (through its mips) or vertex colours by gradient descent from that start; for a
texture on the source mesh itself it also computes the closed-form optimum as a check. Scores
are measured on held-out views of the same distribution. See :mod:`dmtrec.assets.unlit_bake`.

Outputs (written into a temporary folder that replaces ``DIR`` only when complete):
``baked.glb`` (``KHR_materials_unlit``; texture, or ``COLOR_0``), ``baked.obj`` + ``.mtl`` +
``baked_kd.png`` (texture) or ``baked.ply`` (vertex), ``report.json`` and ``contact_sheet.png``
(held-out views: PBR reference | point-sampled | optimised).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Dict, Tuple

import torch
from PIL import Image

from dmtrec.assets.unlit_bake import (
    TARGETS,
    bake_unlit,
    check_overlap,
    display,
    premultiplied,
    view_averaged_ceiling,
    with_render_frame,
)
from dmtrec.assets.views import render_reference, view_cameras
from dmtrec.core.atomic import atomic_folder, write_json
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

from . import options

log = logging.getLogger(__name__)

HELP = "bake a PBR asset's look under a probe into an unlit texture or vertex colours (--mesh --probe --target --out)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mesh", required=True, help="the PBR asset: OBJ (with MTL and textures) or GLB")
    parser.add_argument("--probe", required=True, help="HDR environment probe (.hdr, equirectangular)")
    parser.add_argument(
        "--target", choices=TARGETS, help="bake into a texture or vertex colours (required without --shader)"
    )
    parser.add_argument("--out", required=True, help="output folder (an existing non-empty one needs --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    parser.add_argument(
        "--shader",
        help="fit this shading model's textures and constants instead of an unlit bake: a built-in name "
        "(simple_lit, lambert_vc, matcap, toon, unlit) or FILE.py:ClassName",
    )
    parser.add_argument("--onto", help="bake onto this mesh instead (e.g. a level from `dmtrec lod`); OBJ or GLB")
    parser.add_argument("--views", type=int, default=64, help="training views (default 64)")
    parser.add_argument("--held-out", type=int, default=8, help="held-out views the scores use (default 8)")
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
        "conjugate gradients; each CG iteration renders every view: minutes on a CPU)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


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


def run_bake(args: argparse.Namespace) -> Dict[str, object]:
    """Validate everything, bake, and write the outputs; returns the report."""
    torch.manual_seed(args.seed)
    options.at_least((("--views", args.views), ("--held-out", args.held_out), ("--batch", args.batch)), 1)
    options.at_least((("--res", args.res),), 16)
    options.at_least((("--texture-res", args.texture_res),), 4)
    options.at_least((("--steps", args.steps), ("--prior-weight", args.prior_weight)), 0)
    options.at_least((("--spp", args.spp),), 1)
    options.probe_res(args.probe_res)
    out = check_output_folder(args.out, args.overwrite)
    model = _check_shader_args(args)
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
    if args.distribution in DISTRIBUTIONS:
        cameras = view_cameras(args.distribution, args.views, source, args.fovy, args.res, args.seed)
        held_out = view_cameras(args.distribution, args.held_out, source, args.fovy, args.res, args.seed + 1)
    else:
        cameras, held_out = _split_views(
            view_cameras(args.distribution, 0, source, resolution=args.res), args.held_out, args.distribution
        )
    cameras, held_out = cameras.to(device), held_out.to(device)
    references = render_reference(source, material, light, cameras, rasterizer, args.spp)
    held_refs = render_reference(source, material, light, held_out, rasterizer, args.spp)
    reference_seconds = time.perf_counter() - start
    if model is not None:
        seconds = {"reference": reference_seconds}
        return _run_shader_bake(
            args, model, source, material, light, cameras, references, held_out, held_refs, seconds, onto, unwrap
        )
    result = bake_unlit(
        source,
        material,
        light,
        onto,
        args.target,
        cameras,
        references,
        held_out,
        held_refs,
        rasterizer,
        texture_res=args.texture_res,
        steps=args.steps,
        lr=args.lr,
        batch=args.batch,
        loss=args.loss,
        seed=args.seed,
        prior_weight=args.prior_weight,
        closed_form=args.check_optimum,
    )
    ceiling = None
    if source_has_uvs:  # the source's own view-averaged radiance, a texture over its UVs at twice the size
        start = time.perf_counter()
        ceiling = view_averaged_ceiling(
            source, cameras, references, held_out, held_refs, rasterizer, min(2 * args.texture_res, 2048)
        )
        result.seconds["ceiling"] = time.perf_counter() - start
    result.seconds["reference"] = reference_seconds

    report = {
        "mesh": str(mesh_path),
        "probe": str(args.probe),
        "onto": args.onto,
        "target": args.target,
        "faces": result.mesh.num_faces,
        "vertices": result.mesh.num_vertices,
        "uvs": unwrap,
        "distribution": args.distribution,
        "views": cameras.batch_size,
        "held_out_views": held_out.batch_size,
        "resolution": args.res,
        "texture_res": args.texture_res if args.target == "texture" else None,
        "loss": args.loss,
        "steps": args.steps,
        "prior_weight": args.prior_weight,
        "overlap_median_distance": overlap,
        "scores_held_out": result.scores,
        "gain_db": result.scores["optimised"]["psnr"] - result.scores["point_sampled"]["psnr"],
        "view_averaged_ceiling": ceiling,
        "clipped_fraction": result.info["clipped_fraction"],
        "cg_residuals": result.info.get("cg_residuals"),
        "loss_first_last": [result.losses[0], result.losses[-1]] if result.losses else None,
        "seconds": result.seconds,
        "threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()),
    }
    with atomic_folder(out) as tmp:
        if args.target == "texture":
            write_glb(tmp / "baked.glb", result.mesh, {"kd": result.optimised}, unlit=True)
            write_obj(tmp, result.mesh, {"kd": result.optimised}, name="baked")
        else:
            write_glb(tmp / "baked.glb", result.mesh, unlit=True, vertex_color=result.optimised)
            write_ply(tmp / "baked.ply", result.mesh, result.optimised)
        bake_contact_sheet(held_refs, result.renders).save(tmp / "contact_sheet.png")
        write_json(tmp / "report.json", report)
    return report


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
    print(f"wrote {args.out}")
    return 0
