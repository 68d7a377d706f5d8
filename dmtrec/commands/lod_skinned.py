"""``dmtrec lod`` on a skinned ``.glb``: levels fitted over poses (:mod:`dmtrec.assets.skinned_lod`).

:mod:`dmtrec.commands.lod` hands a ``--mesh`` whose GLB has a skinned mesh node to :func:`run_skinned_lod`.
Each level is judged at the static lod's resolution for its fraction (``--res``, ``--min-res``,
:func:`dmtrec.assets.lod.level_resolution`); ``--iterations``, ``--batch``, ``--spp``, ``--eval-spp``,
``--texture-res``, ``--heldout-views``, ``--validation-views``, ``--probe-res``, ``--seed`` carry
over, ``--poses N`` is the pool of training poses (animation frames, or random rotations for an
asset without animations) and ``--animation NAME`` picks the animation they come from. Learning
rates are the skinned defaults (:class:`~dmtrec.assets.skinned_lod.SkinnedLodSettings`: position
rate candidates chosen per level on validation poses x views), and ``--no-flip`` drops FLIP.

``DIR`` is the run folder, as the static path's: the fit runs under the fit's Trainer
(:class:`dmtrec.systems.skinned_lod.SkinnedLodSystem` under :func:`dmtrec.runs.command_run.open_run`:
progress bar, wandb logger, checkpoints every ``--run.checkpoint_every`` steps); the same command
on the same ``DIR`` resumes, another configuration is refused unless ``--run.overwrite true``.

Writes into ``DIR``: ``lodN.glb`` per level (skin and animations included), ``lods.glb`` (every
level skinned by one skeleton, ``MSFT_lod`` chain, the animations), ``contact_sheet.png`` (rows:
levels; columns: original | bind-pose QEM | pose-fitted, in the fitted level's worst held-out pose,
held-out view 0) and, last, ``report.json``: per level the bind-pose QEM (a) and pose-fitted (c)
scores (held-out poses x views PSNR, worst pose, FLIP), the validation scores, which of the two
was written (``"kept"``: never worse on validation) and the position rate chosen.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional, Sequence

import pytorch_lightning as pl
import torch

from dmtrec.assets.lod import LodSettings, level_budgets, level_resolution
from dmtrec.assets.skinned_lod import SkinnedLodSettings, level_skin
from dmtrec.core.atomic import atomic_path, write_json
from dmtrec.datasets.reference_mesh import load_asset, load_probe
from dmtrec.io.gltf import write_glb
from dmtrec.io.gltf_lod import write_lod_glb
from dmtrec.io.gltf_skin import read_skinned_glb
from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.runs.command_run import check_out, open_run
from dmtrec.runs.folder import RunConfig
from dmtrec.systems.skinned_lod import SkinnedLodSystem


def skinned_settings(static: LodSettings, poses=None, animation=None) -> SkinnedLodSettings:
    """The skinned settings that ``dmtrec lod``'s options carry over (module docstring)."""
    carried = {
        name: getattr(static, name)
        for name in (
            "iterations",
            "batch",
            "spp",
            "eval_spp",
            "texture_res",
            "heldout_views",
            "probe_res",
            "seed",
            "fovy",
        )
    }
    settings = SkinnedLodSettings(
        **carried,
        validation_views=static.validation_views,
        animation=animation,
        xatlas_timeout=static.xatlas_timeout,
    )
    return replace(settings, train_poses=int(poses)) if poses else settings


def run_skinned_lod(
    mesh_path,
    probe_path,
    out,
    static: LodSettings,
    levels=None,
    faces=None,
    poses=None,
    animation=None,
    run: Optional[RunConfig] = None,
    callbacks: Sequence[pl.Callback] = (),
) -> dict:
    """Check the inputs, open (or resume) the run folder ``out``, build every level and write the
    outputs; returns the report. ``callbacks`` join the Trainer's (tests interrupt runs with one)."""
    start_time = time.perf_counter()
    out, run = Path(out), run or RunConfig()
    check_out(out, run)
    mesh, _, skin, animations = read_skinned_glb(mesh_path)
    if skin is None:
        raise ValueError(f"{mesh_path}: has no skin")
    _, material = load_asset(mesh_path)
    budgets = level_budgets(mesh.num_faces, levels, faces, mesh_path)
    base = skinned_settings(static, poses, animation)
    if animation is not None and not any(a.name == animation for a in animations):
        raise ValueError(f"{mesh_path}: no animation named {animation!r} (has {[a.name for a in animations]})")
    light = load_probe(probe_path, base.probe_res)
    fractions = [b / mesh.num_faces for b in budgets]
    resolutions = [level_resolution(f, static, index) for index, f in enumerate(fractions)]
    config = {
        "mesh": str(Path(mesh_path).resolve()),
        "probe": str(Path(probe_path).resolve()),
        "budgets": budgets,
        "resolutions": resolutions,
        "flip": static.flip,
        "skinned_settings": asdict(base),
    }
    with open_run(out, run, config, "lod") as fit:
        system = SkinnedLodSystem(mesh, material, skin, animations, light, budgets, resolutions, base, flip=static.flip)
        fit(system, callbacks, accelerator="cpu")
        report = _write_outputs(out, system, skin, animations, mesh_path, probe_path, mesh.num_faces, base)
        report["seconds_this_session"] = time.perf_counter() - start_time
    return report


def _write_outputs(out: Path, system: SkinnedLodSystem, skin, animations, mesh_path, probe_path, faces, base) -> dict:
    """Each file atomically, ``report.json`` last (its presence marks a finished run)."""
    built = system.levels()
    reports = []
    for index, level in enumerate(built):
        write_glb(out / f"lod{index}.glb", level.mesh, level.material.to_tensors(), occlusion=False,
                  skin=level_skin(skin, level), animations=animations)  # fmt: skip
        reports.append(dict(system.results[index]["report"], fraction=system.budgets[index] / faces))
    coverage = [math.sqrt(a["fraction"] * b["fraction"]) for a, b in zip(reports, reports[1:])] + [0.0]
    write_lod_glb(out / "lods.glb", [(lv.mesh, lv.material.to_tensors()) for lv in built], coverage,
                  skins=[level_skin(skin, lv) for lv in built], animations=animations)  # fmt: skip
    rows = [r["sheet_row"] for r in system.results]
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
        "input": {"triangles": faces, "joints": skin.num_joints, "animations": [a.name for a in animations]},
        "settings": asdict(base),
        "levels": reports,
        "screen_coverage": coverage,
        "contact_sheet": "rows: levels; columns: original | bind-pose QEM | pose-fitted (worst held-out pose, view 0)",
        "threads": torch.get_num_threads(),
    }
    write_json(out / "report.json", report)
    return report


def print_report(report: dict, out) -> None:
    for index, level in enumerate(report["levels"]):
        a, c = level["bind_pose_qem"], level["pose_fitted"]
        print(
            f"lod{index}: {level['triangles']} triangles (budget {level['budget']}), held-out poses x views PSNR "
            f"{c['psnr']:.2f} dB (bind-pose QEM {a['psnr']:.2f} dB), worst pose {c['worst_pose_psnr']:.2f} dB "
            f"({a['worst_pose_psnr']:.2f} dB); kept the {level['kept']} (position rate {c['lr']:g})"
        )
    print(f"written: {out}")
