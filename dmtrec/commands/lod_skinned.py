"""``dmtrec lod`` on a skinned ``.glb``: levels fitted over poses (:mod:`dmtrec.assets.skinned_lod`).

:mod:`dmtrec.commands.lod` hands a ``--mesh`` whose GLB has a skinned mesh node to :func:`run_skinned_lod`.
Each level is judged at the static lod's resolution for its fraction (``--res``, ``--min-res``,
:func:`dmtrec.assets.lod.level_resolution`); ``--iterations``, ``--batch``, ``--spp``,
``--texture-res``, ``--heldout-views``, ``--probe-res``, ``--seed`` carry over, ``--poses N`` is
the pool of training poses (animation frames, or random rotations for an asset without
animations) and ``--animation NAME`` picks the animation they come from. Learning rates are the
skinned defaults (:class:`~dmtrec.assets.skinned_lod.SkinnedLodSettings`).

Writes into ``DIR``: ``lodN.glb`` per level (skin and animations included), ``lods.glb`` (every
level skinned by one skeleton, ``MSFT_lod`` chain, the animations), ``contact_sheet.png`` (rows:
levels; columns: original | bind-pose QEM | pose-fitted, in the level's worst held-out pose for the
fitted level, held-out view 0) and, last, ``report.json``. Unlike the static path there is no
checkpoint or resume: a rerun starts again (``--run.overwrite true`` over a finished folder).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from dmtrec.assets.lod import LodSettings, level_budgets, level_resolution
from dmtrec.assets.skinned_lod import SkinnedLodSettings, SkinnedScene, level_skin, posed_mesh, skinned_lod
from dmtrec.core.atomic import atomic_path, write_json
from dmtrec.datasets.reference_mesh import load_asset, load_probe
from dmtrec.io.gltf import write_glb
from dmtrec.io.gltf_lod import write_lod_glb
from dmtrec.io.gltf_skin import read_skinned_glb
from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.render.raster import get_rasterizer


def skinned_settings(static: LodSettings, poses=None, animation=None) -> SkinnedLodSettings:
    """The skinned settings that ``dmtrec lod``'s options carry over (module docstring)."""
    carried = {
        name: getattr(static, name)
        for name in ("iterations", "batch", "spp", "texture_res", "heldout_views", "probe_res", "seed", "fovy")
    }
    settings = SkinnedLodSettings(**carried, animation=animation, xatlas_timeout=static.xatlas_timeout)
    return replace(settings, train_poses=int(poses)) if poses else settings


def run_skinned_lod(mesh_path, probe_path, out, static: LodSettings, levels=None, faces=None, poses=None,
                    animation=None, overwrite: bool = False) -> dict:  # fmt: skip
    """Build every level of a skinned asset and write the outputs; returns the report."""
    start_time = time.perf_counter()
    out = Path(out)
    if (out / "report.json").exists() and not overwrite:
        raise ValueError(f"{out}: holds a finished lod run; use --run.overwrite true to replace it")
    mesh, _, skin, animations = read_skinned_glb(mesh_path)
    if skin is None:
        raise ValueError(f"{mesh_path}: has no skin")
    _, material = load_asset(mesh_path)
    budgets = level_budgets(mesh.num_faces, levels, faces, mesh_path)
    base = skinned_settings(static, poses, animation)
    if animation is not None and not any(a.name == animation for a in animations):
        raise ValueError(f"{mesh_path}: no animation named {animation!r} (has {[a.name for a in animations]})")
    light = load_probe(probe_path, base.probe_res)
    rasterizer = get_rasterizer("auto", "cpu")
    out.mkdir(parents=True, exist_ok=True)
    built, rows, reports = [], [], []
    for index, budget in enumerate(budgets):
        fraction = budget / mesh.num_faces
        settings = replace(base, res=level_resolution(fraction, static, index))
        scene = SkinnedScene(mesh, material, skin, animations, light, rasterizer, settings)
        ((baseline, fitted),) = skinned_lod(scene, [budget])
        built.append(fitted)
        rows.append(_sheet_row(scene, baseline, fitted))
        write_glb(out / f"lod{index}.glb", fitted.mesh, fitted.material.to_tensors(), occlusion=False,
                  skin=level_skin(skin, fitted), animations=animations)  # fmt: skip
        reports.append(
            {
                "budget": budget,
                "fraction": fraction,
                "triangles": fitted.mesh.num_faces,
                "resolution": settings.res,
                "bind_pose_qem": baseline.report,
                "pose_fitted": fitted.report,
            }
        )
    coverage = [math.sqrt(a["fraction"] * b["fraction"]) for a, b in zip(reports, reports[1:])] + [0.0]
    write_lod_glb(out / "lods.glb", [(lv.mesh, lv.material.to_tensors()) for lv in built], coverage,
                  skins=[level_skin(skin, lv) for lv in built], animations=animations)  # fmt: skip
    cell = max(row.shape[0] for row in rows)
    rows = [
        torch.nn.functional.interpolate(r.permute(2, 0, 1)[None], size=(cell, 3 * cell))[0].permute(1, 2, 0)
        for r in rows
    ]
    with atomic_path(out / "contact_sheet.png") as tmp:
        write_png(tmp, linear_to_srgb(torch.cat(rows, 0).clamp(0, 1)))
    report = {
        "mesh": str(mesh_path),
        "probe": str(probe_path),
        "skinned": True,
        "input": {"triangles": mesh.num_faces, "joints": skin.num_joints, "animations": [a.name for a in animations]},
        "settings": asdict(base),
        "levels": reports,
        "screen_coverage": coverage,
        "contact_sheet": "rows: levels; columns: original | bind-pose QEM | pose-fitted (worst held-out pose, view 0)",
        "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - start_time,
    }
    write_json(out / "report.json", report)
    return report


def _sheet_row(scene: SkinnedScene, baseline, fitted) -> torch.Tensor:
    """``[H, 3W, 3]``: original | (a) | (c) in (c)'s worst held-out pose, held-out view 0, over white."""
    pose = fitted.report["worst_index"]
    cams = scene.cameras["heldout"][:1]
    white = torch.ones(1, *cams.resolution, 3)
    ref = scene.references["heldout"][pose][:1]
    cells = [torch.lerp(white, ref[..., :3], ref[..., 3:4])]
    with torch.no_grad():
        for level in (baseline, fitted):
            cells.append(scene.render(posed_mesh(scene, level, "heldout", pose), level.material, cams, white)[..., :3])
    return torch.cat([c[0] for c in cells], 1)


def print_report(report: dict, out) -> None:
    for index, level in enumerate(report["levels"]):
        a, c = level["bind_pose_qem"], level["pose_fitted"]
        print(
            f"lod{index}: {level['triangles']} triangles (budget {level['budget']}), held-out poses x views PSNR "
            f"{c['psnr']:.2f} dB (bind-pose QEM {a['psnr']:.2f} dB), worst pose {c['worst_pose_psnr']:.2f} dB "
            f"({a['worst_pose_psnr']:.2f} dB)"
        )
    print(f"written: {out}")
