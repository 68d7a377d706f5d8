"""The topology report of a run's exported mesh (issue 31): components, genus and where the handles
are, for ``metrics.json``, and a picture of each handle's loop in the run's ``inspect/`` folder.

Loops are :func:`dmtrec.metrics.handle_loops.handle_loops`: per closed component of genus ``g``,
``2 g`` short non-contractible loops along mesh edges, independent in homology. For a handle they
come as a pair: the shorter goes around the handle's tube, the other through its tunnel. The report
gives each loop's length, centroid and bounding box (in the training frame, as the mesh); the
pictures show it over the mesh, the parts hidden behind the surface thinner and lighter.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from dmtrec.core.atomic import atomic_path
from dmtrec.core.mesh import Mesh
from dmtrec.metrics.handle_loops import handle_loops
from dmtrec.metrics.topology import mesh_topology
from dmtrec.render.camera import Cameras, look_at
from dmtrec.render.raster import get_rasterizer

FOLDER = "inspect"
PANEL = 320
_FOVY = math.radians(40.0)


def topology_report(mesh: Mesh, max_genus: int = 20) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """``(report, components)``: the JSON-ready report (``components``, ``genus``,
    ``component_genus``, ``watertight``, ``handle_loops``: per loop ``component``, ``length``,
    ``centroid``, ``bbox_min``, ``bbox_max``; ``skipped`` components with the reason) and
    :func:`handle_loops`'s full result (loop points included) for :func:`draw_handle_loops`."""
    topo = mesh_topology(mesh.v_pos, mesh.t_pos_idx)
    components = handle_loops(mesh.v_pos, mesh.t_pos_idx, max_genus=max_genus)
    loops = [
        {"component": c["component"], **{k: loop[k] for k in ("length", "centroid", "bbox_min", "bbox_max")}}
        for c in components
        for loop in c["loops"]
    ]
    report = {
        "components": topo["components"],
        "genus": topo["genus"],
        "component_genus": topo["component_genus"],
        "watertight": topo["watertight"],
        "handle_loops": loops,
        "handle_loops_skipped": [
            {"component": c["component"], "reason": c["skipped"]} for c in components if c["skipped"]
        ],
    }
    return report, components


def draw_handle_loops(
    mesh: Mesh, components: List[Dict[str, Any]], out_dir: Path, max_pictures: int = 16
) -> List[Path]:
    """One PNG per loop, ``out_dir/inspect/handle_loop_<n>.png``: the whole mesh and a close-up,
    seen across the loop's plane, the loop drawn in red. Loop ``n`` is the ``n``-th of the
    report's ``handle_loops``; past ``max_pictures`` (a surface riddled with handles) no more are
    drawn. Returns the written paths."""
    v_pos = mesh.v_pos.detach().cpu().float()
    faces = mesh.t_pos_idx.detach().cpu().int()
    lo, hi = v_pos.min(0).values, v_pos.max(0).values
    center, radius = (lo + hi) / 2, float((hi - lo).norm()) / 2
    paths = []
    loops = [(c["component"], loop) for c in components for loop in c["loops"]][:max_pictures]
    for n, (comp, loop) in enumerate(loops):
        points = torch.tensor(loop["points"], dtype=torch.float32)
        direction = _view_direction(points)
        loop_center = points.mean(0)
        loop_radius = max(float((points - loop_center).norm(dim=1).max()), 1e-3 * radius)
        panels = [
            _panel(v_pos, faces, points, center, direction, radius),
            _panel(v_pos, faces, points, loop_center, direction, 2.5 * loop_radius),
        ]
        sheet = Image.new("RGB", (2 * PANEL, PANEL + 18), (255, 255, 255))
        for i, panel in enumerate(panels):
            sheet.paste(panel, (i * PANEL, 18))
        ImageDraw.Draw(sheet).text(
            (4, 3),
            f"component {comp}, loop {n}: length {loop['length']:.3g}, centre {_fmt(loop['centroid'])}",
            fill=(0, 0, 0),
        )
        path = Path(out_dir) / FOLDER / f"handle_loop_{n}.png"
        with atomic_path(path) as tmp:
            sheet.save(tmp, format="PNG")
        paths.append(path)
    return paths


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


def _view_direction(points: Tensor) -> Tensor:
    """Across the loop's plane (its points' least-variance axis), tilted 30 degrees so a loop
    around a tube seen end-on is not all on the silhouette."""
    centred = (points - points.mean(0)).double()
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    normal, major = vh[-1], vh[0]
    tilt = math.radians(30.0)
    return torch.nn.functional.normalize(math.cos(tilt) * normal + math.sin(tilt) * major, dim=0).float()


def _panel(
    v_pos: Tensor, faces: Tensor, points: Tensor, target: Tensor, direction: Tensor, radius: float
) -> Image.Image:
    """The mesh shaded grey (facing ratio), the loop over it: red where seen, pale where hidden."""
    distance = radius / math.sin(_FOVY / 2) * 1.05
    c2w = look_at((target + direction * distance)[None], target[None])
    cameras = Cameras.from_fov(
        c2w, _FOVY, (PANEL, PANEL), near=max(distance - 4 * radius, 1e-3), far=distance + 8 * radius
    )
    clip = cameras.project(v_pos)  # [1, V, 4]
    rast, _ = get_rasterizer("torch", "cpu").rasterize(clip.contiguous(), faces, (PANEL, PANEL), grad_db=False)
    tri = rast[0, ..., 3].long() - 1
    covered = tri >= 0
    f = faces.long()
    normal = torch.linalg.cross(v_pos[f[:, 1]] - v_pos[f[:, 0]], v_pos[f[:, 2]] - v_pos[f[:, 0]])
    normal = torch.nn.functional.normalize(normal, dim=1)
    facing = (normal[tri.clamp_min(0)] @ direction).abs()
    grey = torch.where(covered, 0.35 + 0.6 * facing, torch.ones_like(facing))
    # camera depth per pixel: the perspective-correct barycentrics interpolate the clip w
    w = clip[0, :, 3][f[tri.clamp_min(0)]]
    u, v = rast[0, ..., 0], rast[0, ..., 1]
    depth = torch.where(
        covered, u * w[..., 0] + v * w[..., 1] + (1 - u - v) * w[..., 2], torch.full_like(u, float("inf"))
    )
    image = Image.fromarray((grey.numpy() * 255).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(image)
    loop_clip = cameras.project(points)[0]
    xy = (loop_clip[:, :2] / loop_clip[:, 3:]).numpy()
    px = np.stack([(xy[:, 0] + 1) * PANEL / 2, (xy[:, 1] + 1) * PANEL / 2], 1)  # the projection flips y
    ix = np.clip(px.astype(int), 0, PANEL - 1)
    seen = loop_clip[:, 3].numpy() <= depth.numpy()[ix[:, 1], ix[:, 0]] + 0.02 * radius
    for k in range(len(px)):
        j = (k + 1) % len(px)
        both = seen[k] and seen[j]
        draw.line([tuple(px[k]), tuple(px[j])], fill=(220, 20, 20) if both else (240, 170, 170), width=3 if both else 1)
    return image
