"""Unlit bakes: held-out PSNR / SSIM of point-sampled vs optimised bakes, and timings.

For each asset (Spot, Bob, and a decimated Spot: ``--decimate`` of its triangles kept with
fast-simplification, the LOD stand-in) and each target (texture, vertex colours), renders the
PBR asset under the probe from ``--views`` views of the full sphere, bakes (point sample, then
Adam from it) and scores both against PBR renders of ``--held-out`` other views of the same
distribution, in sRGB (PSNR, SSIM) and linear radiance (PSNR, what the L2 fit minimises). For
textures on the source mesh it also reports the closed forms (footprint mean; least squares by
CG), and for every asset the view-averaged ceiling: the PBR renders against the source's own
least-squares view-averaged texture, i.e. the view-dependent look any unlit bake loses.

As ``dmtrec bake`` does, ``--val-views`` further views (their own seed, neither trained on nor
scored) choose the bake written: the better of the point sample and the optimised bake
(never-worse); each row says which was kept, with both validation PSNRs, and the kept bake's
held-out PSNR. ``--val-views 0`` keeps the optimised bake without a check.

    OMP_NUM_THREADS=1 python experiments/benchmarks/bake.py               # small CPU settings
    python experiments/benchmarks/bake.py --res 256 --views 64 --steps 300 --texture-res 256
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dmtrec.assets.unlit_bake import bake_unlit, view_averaged_ceiling, with_render_frame  # noqa: E402
from dmtrec.assets.views import render_reference, view_cameras  # noqa: E402
from dmtrec.core.mesh import Mesh  # noqa: E402
from dmtrec.datasets.reference_mesh import load_asset, load_probe  # noqa: E402
from dmtrec.geometry.uv_unwrap import uv_unwrap  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402

DATA = REPO / "data"
ASSETS = {"spot": DATA / "meshes/spot/spot.obj", "bob": DATA / "meshes/bob/bob_tri.obj"}
PROBE = DATA / "envmaps/mud_road_puresky_1k.hdr"


def decimated(mesh: Mesh, keep: float) -> Mesh:
    import fast_simplification  # lazy: optional (extra "lod")

    v, f = fast_simplification.simplify(
        mesh.v_pos.numpy().astype("float32"), mesh.t_pos_idx.numpy().astype("int64"), 1.0 - keep
    )
    return Mesh(torch.from_numpy(v).float(), torch.from_numpy(f).long())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--views", type=int, default=32)
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--val-views", type=int, default=8, help="views choosing point sample vs optimised (0: none)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--texture-res", type=int, default=64)
    parser.add_argument("--probe-res", type=int, default=64)
    parser.add_argument("--decimate", type=float, default=0.05, help="fraction of Spot's triangles kept")
    parser.add_argument("--cg", type=int, default=30, help="CG iterations of the least-squares texture")
    parser.add_argument("--prior-weight", type=float, default=0.0, help="pull towards the point sample")
    parser.add_argument("--cases", default="spot,bob,lod", help="comma-separated subset of spot, bob, lod")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rasterizer = get_rasterizer("torch")
    light = load_probe(PROBE, args.probe_res)
    rows = []
    cases = {"spot": ("spot", None), "bob": ("bob", None), "lod": (f"spot {args.decimate:.0%}", "spot")}
    cases = [cases[name] for name in args.cases.split(",")]
    for name, base in cases:
        mesh, material = load_asset(ASSETS[base or name])
        mesh = with_render_frame(mesh, material)
        onto = None
        if base is not None:
            try:
                onto = decimated(mesh, args.decimate)
            except ImportError:
                print(f"{name}: skipped (fast-simplification not installed)")
                continue
        start = time.perf_counter()
        cams = view_cameras("sphere", args.views, mesh, resolution=args.res, seed=0)
        held = view_cameras("sphere", args.held_out, mesh, resolution=args.res, seed=1)
        refs = render_reference(mesh, material, light, cams, rasterizer)
        held_refs = render_reference(mesh, material, light, held, rasterizer)
        validation = None
        if args.val_views:  # dmtrec bake's draw: seed + 2, apart from the training and held-out views
            val = view_cameras("sphere", args.val_views, mesh, resolution=args.res, seed=2)
            validation = (val, render_reference(mesh, material, light, val, rasterizer))
        reference_s = time.perf_counter() - start
        start = time.perf_counter()
        ceiling = view_averaged_ceiling(
            mesh, cams, refs, held, held_refs, rasterizer, args.texture_res * 2, iterations=args.cg
        )
        ceiling_s = time.perf_counter() - start
        for target in ("texture", "vertex"):
            target_mesh = onto
            if target == "texture" and onto is not None:
                target_mesh = uv_unwrap(onto, texture_res=args.texture_res).mesh
            result = bake_unlit(
                mesh, material, light, target_mesh, target, cams, refs, held, held_refs, rasterizer,
                texture_res=args.texture_res, steps=args.steps, cg_iterations=args.cg, prior_weight=args.prior_weight,
                validation=validation,
            )  # fmt: skip
            row = {
                "asset": name,
                "target": target,
                "faces": result.mesh.num_faces,
                "vertices": result.mesh.num_vertices,
                "scores": result.scores,
                "kept": result.kept,
                "selection_psnr_validation": result.selection,
                "ceiling": ceiling,
                "seconds": {**result.seconds, "reference": reference_s, "ceiling": ceiling_s},
            }
            rows.append(row)
            s = result.scores
            extra = f" | least squares {s['least_squares']['psnr']:.2f} (train: Adam {s['optimised']['train_psnr']:.2f}"
            extra += f", LS {s['least_squares']['train_psnr']:.2f})"
            if "closed_form" in s:
                extra += f" | footprint mean {s['closed_form']['psnr']:.2f}"
            extra += (
                f" | interior: point {s['point_sampled']['psnr_interior']:.2f},"
                f" optimised {s['optimised']['psnr_interior']:.2f}"
            )
            kept = f" | kept {result.kept} ({s[result.kept]['psnr']:.2f} dB"
            if result.selection:
                kept += "; validation " + ", ".join(f"{k} {v:.2f}" for k, v in result.selection.items())
            extra += kept + ")"
            print(
                f"{name:9s} {target:7s} F={result.mesh.num_faces:5d}: point {s['point_sampled']['psnr']:.2f} dB"
                f" / {s['point_sampled']['ssim']:.4f} (lin {s['point_sampled']['psnr_linear']:.2f}) -> optimised"
                f" {s['optimised']['psnr']:.2f} dB / {s['optimised']['ssim']:.4f}"
                f" (lin {s['optimised']['psnr_linear']:.2f})"
                f"{extra} | ceiling {ceiling['psnr']:.2f} | point {result.seconds['point_sample']:.2f} s,"
                f" optimise {result.seconds['optimise']:.1f} s",
                flush=True,
            )
    print(f"settings: {vars(args)}; loadavg {os.getloadavg()}, 1 thread, torch backend on CPU")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
