"""Skinning cross-check: a skinned GLB posed by three.js (headless Chromium) and by dmtrec's torch
linear blend skinning, vertex by vertex.

three.js (``skinning_page.js``): ``GLTFLoader``, ``AnimationMixer.setTime(t)``, then
``SkinnedMesh.getVertexPosition`` (its ``applyBoneTransform``) and the mesh's world matrix for
every glTF vertex. dmtrec: ``read_skinned_glb`` (welded positions, skin, animations),
``sample_animation`` at ``t``, ``skinning_matrices`` and ``skin_vertices``. Each three.js vertex
is matched to dmtrec's welded vertex by its bind-shape position (the same float32 values of the
file), so every glTF vertex, seam copies included, is compared. The error is the largest
absolute coordinate difference, in the asset's units and relative to its bounding-box diagonal.

Without a GLB argument the procedural assets are written first (``--kind limb|figure``, as
``dmtrec.assets.procedural_skinned.write_skinned_asset`` makes them). Also writes a PNG of a
posed frame as three.js draws it (``--shot``).

    python experiments/crossrender/skinning.py --kind figure --out DIR [--times 0.1 0.37 0.8]
    python experiments/crossrender/skinning.py --glb character.glb --animation walk --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import Captures, find_chromium, page_files, run_page  # noqa: E402

from dmtrec.assets.procedural_skinned import write_skinned_asset  # noqa: E402
from dmtrec.commands.view import find_three, serve_in_background, static_server  # noqa: E402
from dmtrec.io.gltf_skin import read_skinned_glb, sample_animation  # noqa: E402
from dmtrec.render.skinning import skin_vertices, skinning_matrices  # noqa: E402


def three_poses(glb: Path, animation: str, times, chromium: str, shot=None, timeout: float = 300.0):
    """``([N, 3] bind positions, [[N, 3] posed positions per time], PNG bytes)`` from three.js."""
    scene = {"animation": animation, "times": list(times), "shot_time": times[0], "shot_width": 0, "shot_height": 0}
    if shot is not None:
        scene.update(shot_time=shot[0], shot_width=shot[1], shot_height=shot[2])
    captures = Captures()
    files = {**page_files("skinning_page.js"), "/scene.json": json.dumps(scene).encode()}
    files["/asset/asset.glb"] = glb.read_bytes()
    server = static_server("127.0.0.1", 0, files, {"/three/": find_three()}, captures)
    serve_in_background(server)
    try:
        run_page(f"http://127.0.0.1:{server.server_address[1]}/", captures, chromium, timeout)
    finally:
        server.shutdown()
    rows = [np.frombuffer(captures.posts[f"t{k}"], dtype=np.float32).reshape(-1, 6) for k in range(len(times))]
    return rows[0][:, :3].copy(), [r[:, 3:].copy() for r in rows], captures.posts.get("shot")


def dmtrec_poses(glb: Path, animation: str, times):
    """``(mesh, [[V, 3] posed welded positions per time])`` by dmtrec's LBS (float32, as rendered)."""
    mesh, _, skin, animations = read_skinned_glb(glb)
    if skin is None:
        raise SystemExit(f"{glb}: not a skinned GLB")
    clip = next((a for a in animations if a.name == animation), None)
    if clip is None:
        raise SystemExit(f"{glb}: no animation {animation!r} ({[a.name for a in animations]})")
    posed = []
    with torch.no_grad():
        for t in times:
            translation, rotation, scale = sample_animation(skin, clip, t)
            matrices = skinning_matrices(skin, rotation, translation, scale)
            posed.append(skin_vertices(mesh.v_pos, skin.joints, skin.weights, matrices).numpy())
    return mesh, posed


def match_vertices(bind: np.ndarray, welded: np.ndarray) -> np.ndarray:
    """``[N]`` index into ``welded [V, 3]`` of each row of ``bind [N, 3]`` (equal float32 positions)."""
    index = {row.tobytes(): i for i, row in enumerate(welded.astype(np.float32))}
    missing = [i for i, row in enumerate(bind.astype(np.float32)) if row.tobytes() not in index]
    if missing:
        raise ValueError(f"{len(missing)} three.js vertices have no dmtrec vertex at their bind position")
    return np.array([index[row.tobytes()] for row in bind.astype(np.float32)])


def compare(glb: Path, animation: str, times, chromium: str, shot=None, timeout: float = 300.0) -> dict:
    """Per-time largest absolute difference between three.js's and dmtrec's posed vertices."""
    start = time.time()
    bind, three, png = three_poses(glb, animation, times, chromium, shot, timeout)
    seconds = time.time() - start
    mesh, ours = dmtrec_poses(glb, animation, times)
    welded = mesh.v_pos.numpy()
    index = match_vertices(bind, welded)
    diagonal = float(np.linalg.norm(welded.max(0) - welded.min(0)))
    errors = [float(np.abs(t - o[index]).max()) for t, o in zip(three, ours)]
    moved = [float(np.linalg.norm(o - welded, axis=1).max()) for o in ours]
    return {
        "glb": str(glb),
        "animation": animation,
        "times": list(times),
        "vertices_three": int(bind.shape[0]),
        "vertices_dmtrec": int(welded.shape[0]),
        "bbox_diagonal": diagonal,
        "max_abs_error": errors,
        "max_abs_error_relative": [e / diagonal for e in errors],
        "max_displacement_from_bind": moved,
        "three_s": round(seconds, 1),
        "png": png,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glb", type=Path, help="a skinned GLB (default: write the procedural --kind)")
    parser.add_argument("--kind", choices=("limb", "figure"), default="figure")
    parser.add_argument("--animation", help="default: the procedural asset's (bend_twist, walk)")
    parser.add_argument("--times", type=float, nargs="+", help="seconds (default: 4 times over the clip, off its keys)")
    parser.add_argument("--shot", type=int, nargs=2, default=(320, 400), metavar=("W", "H"), help="screenshot size")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest absolute error accepted")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--chromium", default=find_chromium() or "chromium")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.out.mkdir(parents=True, exist_ok=True)
    glb = args.glb or write_skinned_asset(args.out / f"{args.kind}.glb", args.kind, texture_res=256)
    animation = args.animation or {"limb": "bend_twist", "figure": "walk"}[args.kind]
    duration = {"bend_twist": 2.0, "walk": 1.0}.get(animation, 1.0)
    times = args.times or [duration * f for f in (0.13, 0.37, 0.61, 0.88)]
    result = compare(glb, animation, times, args.chromium, (times[1], *args.shot), args.timeout)
    png = result.pop("png")
    if png:
        (args.out / f"{Path(glb).stem}_posed.png").write_bytes(png)
    result["loadavg"] = os.getloadavg()
    (args.out / "skinning.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    worst = max(result["max_abs_error"])
    if worst > args.tolerance:
        print(f"FAIL: three.js and dmtrec differ by {worst:.3g} > {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
