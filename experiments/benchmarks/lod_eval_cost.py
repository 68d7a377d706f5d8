"""What the lod judge's supersampling costs: ``eval_spp`` 8 against the training ``spp`` (2), per level.

The validation and held-out references and every candidate judged on them are rendered at
``eval_spp`` (:func:`dmtrec.assets.lod.split_spp`); training renders stay at ``spp``. This times
(CPU seconds of this process, :func:`time.process_time`, so that other jobs on the machine count
less) the parts that change, at both supersamplings, at the benchmarks' settings:

* static (``lod.py``'s assets and levels, the defaults): the held-out and validation references of
  the original, and the judging of one candidate (held-out PSNR / SSIM / FLIP, the held-out loss,
  the validation score), done for the start, the optimised level, the retry where it runs, and
  MeshLab's anchor in the benchmark. Compare with a level's CPU seconds (``report.json``);
* skinned (``skinned_lod.py``'s assets at ``--res 96``, 150 steps): the held-out and validation
  references (the scene), one held-out and one validation judging of a level (a level is judged
  2 times held-out and 8 times on validation: (a), 4 + 2 candidates at the two halvings, (c)),
  and the level's training, estimated from 4 timed steps at 4, 2 and 1 candidates.

    python experiments/benchmarks/lod_eval_cost.py [--static-only | --skinned-only]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dmtrec.assets.lod import LodScene, LodSettings, decimate, level_resolution, load_lod_inputs  # noqa: E402
from dmtrec.assets.lod_transfer import transfer_textures  # noqa: E402
from dmtrec.assets.procedural import write_procedural_asset  # noqa: E402
from dmtrec.assets.procedural_skinned import write_skinned_asset  # noqa: E402
from dmtrec.assets.skinned_lod import (  # noqa: E402
    LevelFit,
    SkinnedLodSettings,
    SkinnedScene,
    validation_psnr,
)
from dmtrec.assets.skinned_lod import evaluate as skinned_evaluate  # noqa: E402
from dmtrec.assets.views import render_reference  # noqa: E402
from dmtrec.datasets.reference_mesh import load_asset, load_probe  # noqa: E402
from dmtrec.geometry.uv_unwrap import uv_unwrap  # noqa: E402
from dmtrec.io.gltf_skin import read_skinned_glb  # noqa: E402
from dmtrec.render.material import TexturedMaterial  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.systems.lod import evaluate, heldout_loss, validation_score  # noqa: E402

PROBE = REPO / "data" / "envmaps" / "mud_road_puresky_1k.hdr"
ASSETS = {
    "spot": REPO / "data" / "meshes" / "spot" / "spot.obj",
    "bob": REPO / "data" / "meshes" / "bob" / "bob_tri.obj",
}
SPPS = (None, 8)  # None: the training spp (2), the old judge


def _cpu(fn):
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def static_costs(out: Path) -> list:
    rows = []
    paths = dict(ASSETS, torus=write_procedural_asset(out / "torus_asset"))
    for name, path in paths.items():
        for fraction in (0.05, 0.01):
            row = {"asset": name, "fraction": fraction}
            for eval_spp in SPPS:
                # One training view: the training pool's renders (at spp either way) are not timed.
                settings = LodSettings(eval_spp=eval_spp, train_views=1)
                mesh, material, light, _, _ = load_lod_inputs(path, PROBE, settings)
                rasterizer = get_rasterizer("auto", mesh.device)
                scene = LodScene(mesh, material, light, rasterizer, settings)
                res = level_resolution(fraction, settings, 0)
                views = scene.views(res)
                spp = eval_spp or settings.spp
                refs, _ = _cpu(
                    lambda: [
                        render_reference(mesh, material, light, views[s][0], rasterizer, spp)
                        for s in ("heldout", "validation")
                    ]
                )
                if "start" not in row:
                    budget = int(math.floor(fraction * mesh.num_faces))
                    start = uv_unwrap(decimate(mesh, budget), texture_res=settings.texture_res).mesh
                    textures = transfer_textures(mesh, material, start, settings.texture_res, rasterizer)
                    row["start"] = (start, TexturedMaterial.from_tensors(**textures))
                level, level_material = row["start"]
                judge, _ = _cpu(
                    lambda: (
                        evaluate(scene, level, level_material, res, settings.flip),
                        heldout_loss(scene, level, level_material, res),
                        validation_score(scene, level, level_material, res),
                    )
                )
                row[f"references_{spp}"], row[f"judge_{spp}"] = refs, judge
            row.pop("start")
            row["extra_references"] = row["references_8"] - row["references_2"]
            row["extra_per_candidate"] = row["judge_8"] - row["judge_2"]
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def skinned_costs(out: Path) -> list:
    rows = []
    for kind in ("limb", "figure"):
        path = write_skinned_asset(out / f"{kind}.glb", kind, texture_res=512)
        mesh, _, skin, animations = read_skinned_glb(path)
        _, material = load_asset(path)
        light = load_probe(PROBE, 32)
        row = {"asset": kind}
        scenes = {}
        for eval_spp in SPPS:
            settings = SkinnedLodSettings(iterations=150, res=96, spp=2, eval_spp=eval_spp)
            seconds, scene = _cpu(
                lambda: SkinnedScene(mesh, material, skin, animations, light, get_rasterizer("auto", "cpu"), settings)
            )
            scenes[eval_spp or 2] = scene
            row[f"scene_{eval_spp or 2}"] = seconds
        for fraction in (0.05, 0.01):
            budget = int(fraction * mesh.num_faces)
            level_row = dict(row, fraction=fraction)
            build, fit = _cpu(lambda: LevelFit(scenes[2], budget, flip=True))
            level_row["level_start_2"] = build  # prepare + (a)'s held-out and validation judging
            level = fit.baseline
            for spp, scene in scenes.items():
                args = (scene, level.mesh, level.joints, level.weights, level.material)
                level_row[f"heldout_{spp}"], _ = _cpu(lambda: skinned_evaluate(*args, flip=True))
                level_row[f"validation_{spp}"], _ = _cpu(lambda: validation_psnr(scene, level))
            steps = {}
            for active in (4, 2, 1):
                fit.active = list(range(active))
                steps[active], _ = _cpu(lambda: [fit.step() for _ in range(4)])
            # 150 steps: 50 at each of 4, 2, 1 candidates (selection at steps 50 and 100).
            level_row["training_2"] = sum(50 * t / 4 for t in steps.values())
            for spp in (2, 8):
                level_row[f"judging_{spp}"] = 2 * level_row[f"heldout_{spp}"] + 8 * level_row[f"validation_{spp}"]
            level_row["level_2"] = (
                level_row["level_start_2"]
                + level_row["training_2"]
                + level_row["judging_2"]
                - level_row["heldout_2"]
                - level_row["validation_2"]
            )
            level_row["extra_judging"] = level_row["judging_8"] - level_row["judging_2"]
            level_row["extra_scene"] = row["scene_8"] - row["scene_2"]
            print(json.dumps(level_row), flush=True)
            rows.append(level_row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_lod_eval_cost"))
    parser.add_argument("--static-only", action="store_true")
    parser.add_argument("--skinned-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {}
    if not args.skinned_only:
        report["static"] = static_costs(args.out)
    if not args.static_only:
        report["skinned"] = skinned_costs(args.out)
    (args.out / "costs.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
