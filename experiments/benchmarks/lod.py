"""Appearance-driven LODs vs their QEM-only start and vs MeshLab: held-out PSNR / SSIM / FLIP, triangle counts, time.

Runs ``dmtrec lod`` (the command's own code path, :func:`dmtrec.commands.lod.run_lod`) on each asset
and prints one Markdown table row per (asset, level) from the written ``report.json``:

* ``spot``: data/meshes/spot (5,856 triangles), ``bob``: data/meshes/bob (10,688 triangles);
* ``torus``: the procedural displaced torus (:mod:`dmtrec.assets.procedural`, 204,800 triangles,
  generated into the output folder).

QEM-only is the decimated mesh with its xatlas atlas and the textures transferred from the
original (closest-surface lookup, normal map baked): the optimisation's starting point. Metrics
are on held-out views (never optimised on) at the level's resolution, sRGB over white. Each row
says which of the start and the optimised level was kept (chosen on separate validation views,
:mod:`dmtrec.assets.lod`), the start's one-sided Hausdorff distance in pixels and whether the
positions were frozen.

The anchor: MeshLab's texture-preserving quadric edge collapse (``meshlab_anchor.py``, extra
``benchmark``: ``pip install -e ".[benchmark]"``) at each level's triangle budget, the original's
UVs and textures kept, scored on the same held-out views (same seed and resolution) with the same
renderer and metrics; ``--no-meshlab`` skips it. ``OUT/ASSET/meshlab.json`` holds its scores and
triangle counts.

    python experiments/benchmarks/lod.py --assets spot bob torus --levels 0.05 0.01
    python experiments/benchmarks/lod.py --assets torus --levels 0.01 --level-res 256 --spp 1 \
        --train-views 32 --heldout-views 4 --threads 1

The judge. The benchmark's default is ``--eval-spp 8``: the original's references (validation,
held-out and training views) and every candidate scored on them (start, optimised, retry, MeshLab)
are rendered with 8 x 8 samples per pixel, while the level's training renders stay at ``--spp``
(2). A 2 x 2 judge aliases on outlines: on the torus at 5 % the original itself, at 8 x 8, scored
35.73 dB against the 2 x 2 reference, and 83 % of the start's error was on outlines
(``lod_error_map.py``). The first line above (one thread; Spot and Bob load 1-4, the torus load 6):
written - MeshLab +6.81 / +3.78 dB (Spot 5 / 1 %), +3.99 / +4.76 (Bob), +2.10 / +2.74 (torus; the
start is written at 5 %, 37.95 dB); written - start +1.65, +2.34, +1.57, +2.60, 0.00, +1.01 dB.
With the training references at 2 x 2 (the judge at 8 x 8) the torus at 1 % was written 0.009 dB
below its start (README). ``--eval-spp 2`` gives the old judge; every figure below was measured
with it.

Torus 1 % level at 256^2 (the second line: 400 steps, batch 4, 512^2 textures, one thread),
measured on the shared 2-core machine at load average 4.5-5.2: 2,048 / 2,048 triangles, held-out
PSNR 26.08 -> 27.70 dB (+1.62), SSIM 0.9207 -> 0.9409, FLIP 0.0411 -> 0.0335; the level took
246 s wall (prepare 12 s: decimation + xatlas + transfer 4.9 s, 36 reference views of the
204,800-triangle original 7.3 s; 400 steps 233 s; evaluation 1.4 s) and 167 CPU s, the whole
benchmark (imports, generating the torus) 269 s wall.

Torus at the defaults (the first line, torus only, one thread, load 4.5-5.3): 5 % (10,240 / 10,240
triangles, 114^2) QEM-only 34.04 dB / FLIP 0.0186, optimised 32.41 dB / FLIP 0.0224 (worse: the
issue's 5 % target is not met on the torus), 223 s wall, 153 CPU s; 1 % (2,048 / 2,048, 64^2)
29.67 -> 31.30 dB (+1.63), FLIP 0.0331 -> 0.0270, 98 s wall, 66 CPU s. At 5 % the positions are
what hurts: ``--skip-train position`` gives 34.42 dB / FLIP 0.0161 and ``--lr 0.001`` 34.47 dB /
FLIP 0.0162 (both better than QEM-only, by +0.38 / +0.43 dB, short of 1.5 dB; defaults unchanged).
With the frozen-position retry of never-worse (``dmtrec.systems.lod``), the default run writes that
level: ``--assets torus --levels 0.05`` (one thread, load 8.9-9.7) optimised 32.45 dB (lost on the
validation views), retry 34.42 dB / FLIP 0.0161 written, MeshLab 33.42 dB / FLIP 0.0254 (+1.00 dB);
1,302 s wall, 419 CPU s. ``lod_error_map.py`` measures where the remaining error is.

Threads. Run it with one thread (``--threads 1``, the default unless ``OMP_NUM_THREADS`` is set)
on a shared machine: a step is a few thousand small tensor ops, and with two OpenMP threads on
two busy cores every op's barrier waits for a descheduled thread. The same 1 % run with
``--threads 2`` at load 4-7 took 3.7 CPU s per step (875 CPU s for 235 steps, stopped), with one
thread 0.42 CPU s per step at load 4.8; a 20-step profile (no Lightning) gave 1-10 s wall per step
with two threads at load 3-5 and 0.45-0.70 s with one at load 5.3. The reference views were
rendered once per level already (a pool, not per step); the step itself is the level's render
and its backward (about 0.3 s each), the Laplacian and Adam are negligible.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dmtrec.assets.lod import LodScene, load_lod_inputs  # noqa: E402
from dmtrec.assets.procedural import write_procedural_asset  # noqa: E402
from dmtrec.commands.lod import add_settings_arguments, run_lod, settings_from_args  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.runs.folder import RunConfig  # noqa: E402
from dmtrec.systems.lod import evaluate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meshlab_anchor import MeshlabError, meshlab_decimate  # noqa: E402

ASSETS = {
    "spot": REPO / "data" / "meshes" / "spot" / "spot.obj",
    "bob": REPO / "data" / "meshes" / "bob" / "bob_tri.obj",
    "torus": None,  # generated
}
PROBE = REPO / "data" / "envmaps" / "mud_road_puresky_1k.hdr"


def meshlab_scores(path, report: dict, settings) -> dict:
    """``{budget: held-out scores of MeshLab's decimation at that budget}`` (or ``{"error": ...}``):
    the same held-out views (same seed), resolution, renderer and metrics as the level's, the
    original's material on MeshLab's UVs."""
    mesh, material, light, _, _ = load_lod_inputs(path, PROBE, settings)
    scene = LodScene(mesh, material, light, get_rasterizer("auto", mesh.device), settings)
    out = {}
    for level in report["levels"]:
        start = time.perf_counter()
        try:
            decimated, info = meshlab_decimate(path, level["budget"])
        except MeshlabError as exc:
            print(f"MeshLab at {level['budget']} triangles: {exc}", flush=True)
            out[level["budget"]] = {"error": "failed"}
            continue
        seconds = time.perf_counter() - start
        scores = evaluate(scene, decimated, material, level["resolution"], settings.flip)
        scores.pop("images")
        out[level["budget"]] = {**scores, **info, "seconds": seconds}
        print(f"MeshLab {level['budget']}: {json.dumps(out[level['budget']])}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", nargs="+", default=["spot", "bob", "torus"], choices=sorted(ASSETS))
    parser.add_argument("--levels", type=float, nargs="+", default=[0.05, 0.01])
    parser.add_argument("--out", default="outputs/bench_lod")
    parser.add_argument("--no-meshlab", dest="meshlab", action="store_false", help="skip the MeshLab anchor")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    add_settings_arguments(parser)
    # The judge at 8 x 8 samples per pixel (the command's default is --spp's 2 x 2, which aliases:
    # dmtrec.assets.lod, "The judge"); training stays at --spp.
    parser.set_defaults(eval_spp=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    settings = settings_from_args(args)
    out_root = Path(args.out)
    print(f"settings: {json.dumps({k: v for k, v in vars(args).items() if k not in ('assets', 'out')})}")
    columns = ["asset", "f", "triangles dmtrec / MeshLab / budget", "res", "Hausdorff px", "positions"]
    columns += [
        "PSNR start",
        "PSNR opt",
        "PSNR opt frozen",
        "kept",
        "PSNR dmtrec",
        "PSNR MeshLab",
        "dmtrec - MeshLab",
        "dmtrec - start",
    ]
    columns += ["FLIP start", "FLIP dmtrec", "FLIP MeshLab", "s", "cpu s", "MeshLab s", "load"]
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name in args.assets:
        path = ASSETS[name]
        if path is None:
            path = write_procedural_asset(out_root / "torus_asset")
        start = time.perf_counter()
        # A fresh run each time (overwrite), CSV log instead of wandb: the benchmark measures the method.
        run = RunConfig(wandb="disabled", overwrite=True)
        report = run_lod(path, PROBE, out_root / name, settings, levels=args.levels, run=run)
        load = os.getloadavg()[0]
        anchors = meshlab_scores(path, report, settings) if args.meshlab else {}
        (out_root / name / "meshlab.json").write_text(json.dumps(anchors, indent=1) + "\n")
        for level in report["levels"]:
            q, o, f = level["qem_only"], level["optimised"], level["final"]
            m = anchors.get(level["budget"], {})
            flip = lambda d: f"{d['flip']:.4f}" if "flip" in d else "-"  # noqa: E731
            # The frozen-position retry runs only where the optimised level lost to its start.
            retry = f"{level['optimised_frozen']['psnr']:.2f}" if "optimised_frozen" in level else "-"
            meshlab = (
                (f"{m['psnr']:.2f}", f"{f['psnr'] - m['psnr']:+.2f}", m["triangles"], f"{m['seconds']:.0f}")
                if "psnr" in m
                else (m.get("error", "-"), "-", "-", "-")
            )
            rows.append(
                f"| {name} | {level['fraction']:.3f} | {level['triangles']} / {meshlab[2]} / {level['budget']} | "
                f"{level['resolution']} | {level['geometric_error']['max_px']:.2f} | {level['positions']} | "
                f"{q['psnr']:.2f} | {o['psnr']:.2f} | {retry} | {level['kept']} | {f['psnr']:.2f} | "
                f"{meshlab[0]} | {meshlab[1]} | "
                f"{f['psnr'] - q['psnr']:+.2f} | {flip(q)} | {flip(f)} | {flip(m)} | "
                f"{level['seconds']['total']:.0f} | {level['seconds']['cpu']:.0f} | {meshlab[3]} | {load:.1f} |"
            )
        print(f"{name}: {time.perf_counter() - start:.0f} s, load average {os.getloadavg()}", flush=True)
    print("\n".join(rows))
    (out_root / "table.md").write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
