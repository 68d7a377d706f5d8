"""Game shading models fitted to the PBR look: held-out PSNR / FLIP of each model's start and its fit.

For each asset (Spot, Bob) renders the PBR asset under the probe from ``--views`` views of the
full sphere (the bake's references), then for every built-in game model (and the toon model
with plain autograd through its step instead of the surrogate, ``toon_autograd``; both from
``--toon-thresholds`` if given) starts its values as ``dmtrec bake --shader`` does (the base
colour as albedo, constants at their defaults; unlit: the point-sampled radiance), fits them
with Adam (``--loss``, default srgb_l2: the displayed error the scores measure; ``--fixed``
names values kept at their start), and scores start and fit on ``--held-out`` other views
(sRGB PSNR over black, and FLIP when flip_evaluator is installed). Prints one table.

``--sun K`` adds a sun (a disc of 3 degrees radius, towards ``--sun-dir``) giving K times the sky's
irradiance on a surface facing it, and exposes the probe like the sky alone (divided by 1 + K):
the outdoor scene where the main light dominates and the toon ramp's bands matter.

    OMP_NUM_THREADS=1 python experiments/benchmarks/shaders.py              # small CPU settings
    OMP_NUM_THREADS=1 python experiments/benchmarks/shaders.py --sun 6 --models toon toon_autograd --fixed albedo
    python experiments/benchmarks/shaders.py --res 256 --views 64 --steps 300 --texture-res 256 --device cuda
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

from dmtrec.assets.shader_bake import bake_shader  # noqa: E402
from dmtrec.assets.unlit_bake import with_render_frame  # noqa: E402
from dmtrec.assets.views import render_reference, view_cameras  # noqa: E402
from dmtrec.datasets.reference_mesh import load_asset, load_probe  # noqa: E402
from dmtrec.render.light import EnvironmentLight  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.render.shaders import BUILTINS, GAME_MODELS  # noqa: E402
from dmtrec.render.shaders.sh import LUMINANCE, project_cubemap, sh_irradiance, with_sun  # noqa: E402
from dmtrec.render.shaders.toon import Toon  # noqa: E402

DATA = REPO / "data"
ASSETS = {"spot": DATA / "meshes/spot/spot.obj", "bob": DATA / "meshes/bob/bob_tri.obj"}
PROBE = DATA / "envmaps/mud_road_puresky_1k.hdr"


def _flip(row) -> str:
    if row["start_flip"] is None:
        return "n/a (flip_evaluator not installed)"
    return f"{row['start_flip']:.4f} -> {row['fit_flip']:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", nargs="+", default=list(ASSETS), choices=list(ASSETS))
    parser.add_argument("--models", nargs="+", default=[*GAME_MODELS, "toon_autograd"])
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=4)
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--texture-res", type=int, default=64)
    parser.add_argument("--probe-res", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--toon-thresholds", nargs=2, type=float, help="start the toon ramp's thresholds here (default: the model's)"
    )
    parser.add_argument("--loss", default="srgb_l2", help="the fit's pixel loss (l2, log1p_l1, srgb_l2)")
    parser.add_argument(
        "--sun", type=float, default=0.0, help="add a sun giving this many times the sky's irradiance facing it"
    )
    parser.add_argument("--sun-dir", nargs=3, type=float, default=[0.5, 0.6, 0.62], help="towards the sun (world)")
    parser.add_argument("--fixed", nargs="*", default=[], help="keep these values at their start (e.g. albedo)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    device = torch.device(args.device)
    rasterizer = get_rasterizer("auto", device)
    light = load_probe(PROBE, args.probe_res, device=device)
    if args.sun > 0:
        sun = torch.tensor(args.sun_dir, dtype=torch.float64)
        sky = sh_irradiance(project_cubemap(light.base), (sun / sun.norm()).to(light.base.device))
        light = with_sun(light, sun, args.sun * float(sky @ sky.new_tensor(LUMINANCE)))
        # Exposed like the sky alone: a surface facing the sun receives the sky's irradiance there.
        light = EnvironmentLight(light.base.detach() / (1.0 + args.sun)).to(device).requires_grad_(False)
    rows = []
    for asset in args.assets:
        mesh, material = load_asset(ASSETS[asset], device)
        mesh = with_render_frame(mesh, material)
        cameras = view_cameras("sphere", args.views, mesh, resolution=args.res, seed=0).to(device)
        held_out = view_cameras("sphere", args.held_out, mesh, resolution=args.res, seed=1).to(device)
        refs = render_reference(mesh, material, light, cameras, rasterizer)
        held_refs = render_reference(mesh, material, light, held_out, rasterizer)
        for name in args.models:
            if name.startswith("toon"):
                model = Toon(surrogate=name == "toon", thresholds=args.toon_thresholds)
            else:
                model = BUILTINS[name]()
            start = time.perf_counter()
            result = bake_shader(
                mesh, material, light, model, cameras, refs, held_out, held_refs, rasterizer,
                texture_res=args.texture_res, steps=args.steps, lr=args.lr, batch=args.batch, loss=args.loss,
                fixed=[name for name in args.fixed if name in {p.name for p in model.params}],
            )  # fmt: skip
            row = {
                "asset": asset,
                "model": name,
                "start_psnr": result.scores["initial"]["psnr"],
                "fit_psnr": result.scores["fitted"]["psnr"],
                "start_flip": result.scores["initial"]["flip"],
                "fit_flip": result.scores["fitted"]["flip"],
                "constants": {
                    p.name: [round(float(v), 3) for v in result.fitted.to_tensors()[p.name]]
                    for p in model.params
                    if p.kind == "constant"
                },
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            if args.json:  # after every fit, so that an interrupted run keeps its rows
                Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
            print(
                f"{asset:<5} {name:<14} start {row['start_psnr']:6.2f} dB  fit {row['fit_psnr']:6.2f} dB  "
                f"gain {row['fit_psnr'] - row['start_psnr']:+5.2f} dB  FLIP {_flip(row)}  ({row['seconds']:.0f} s)  "
                f"{row['constants']}",
                flush=True,
            )
    print(f"\nthreads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}, settings {vars(args)}")
    print("| asset | model | start (dB) | fit (dB) | gain (dB) | FLIP start -> fit |\n|---|---|---|---|---|---|")
    for row in rows:
        gain = row["fit_psnr"] - row["start_psnr"]
        print(
            f"| {row['asset']} | {row['model']} | {row['start_psnr']:.2f} | {row['fit_psnr']:.2f} | {gain:+.2f} "
            f"| {_flip(row)} |"
        )


if __name__ == "__main__":
    main()
