"""Cross-render check: a run's exported GLB rendered by three.js (headless Chromium) and by dmtrec.

Both renderers read the same files, ``RUN_DIR/mesh.glb`` and ``RUN_DIR/probe.hdr``, and render
the run's test cameras: three.js through the page ``dmtrec view`` serves (GLTFLoader,
MeshStandardMaterial, PMREM image-based lighting, capture mode: linear float pixels posted back),
dmtrec through ``read_glb`` + ``render_mesh`` (split-sum). Written to ``--out``: per-view PNGs
(three.js, dmtrec, |difference| x ``--diff-gain``), a side-by-side strip, and ``crossrender.json``
with PSNR/SSIM per view (sRGB over white, as ``dmtrec eval``), and PSNR over covered pixels only.

Needs chromium (Debian package ``chromium``) and three.js (``npm ci --prefix tools/viewer``);
it is a harness, not part of the test suite. Usage::

    python experiments/crossrender/crossrender.py RUN_DIR --out DIR [--scale 2] [--env-rotation 90]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import Captures, compare_renders, dmtrec_cameras, find_chromium, float_rgba, run_page  # noqa: E402

from dmtrec.commands.view import find_three, make_server, serve_in_background, test_cameras  # noqa: E402
from dmtrec.io.gltf import read_glb  # noqa: E402
from dmtrec.render.light import EnvironmentLight  # noqa: E402
from dmtrec.render.material import TexturedMaterial  # noqa: E402
from dmtrec.render.raster import get_rasterizer  # noqa: E402
from dmtrec.render.render_mesh import render_mesh  # noqa: E402


def capture_three(
    run_dir: Path, cameras: list, env_rotation: float, chromium: str, timeout: float = 300, debug: str = ""
) -> list:
    """``[H, W, 4]`` linear float renders of three.js, one per camera (rows top to bottom)."""
    captures = Captures()
    server = make_server(run_dir, "127.0.0.1", 0, find_three(), cameras=cameras, on_capture=captures)
    serve_in_background(server)
    port = server.server_address[1]
    url = f"http://127.0.0.1:{port}/?capture=1&env_rotation={env_rotation:g}&debug={debug}"
    try:
        run_page(url, captures, chromium, timeout)
    finally:
        server.shutdown()
    return [float_rgba(captures.posts[str(i)], cam["height"], cam["width"]) for i, cam in enumerate(cameras)]


def render_dmtrec(run_dir: Path, cameras: list, probe_res: int, bsdf: str = "pbr") -> torch.Tensor:
    """``[B, H, W, 4]`` dmtrec renders of the exported GLB under the exported probe (over black)."""
    mesh, textures = read_glb(run_dir / "mesh.glb")
    material = TexturedMaterial.from_tensors(textures["kd"], textures["ks"], textures.get("normal"))
    light = EnvironmentLight.from_hdr(run_dir / "probe.hdr", base_res=probe_res)
    rasterizer = get_rasterizer("torch", "cpu")
    cams = dmtrec_cameras(cameras)
    out = []
    with torch.no_grad():
        for i in range(cams.batch_size):
            out.append(render_mesh(mesh, material, light, cams[i], rasterizer, bsdf=bsdf)["shaded"][0])
    return torch.stack(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=2.0, help="test views at this multiple of the run's size")
    parser.add_argument("--env-rotation", type=float, default=90.0, help="three.js environment y rotation (deg)")
    parser.add_argument("--probe-res", type=int, default=128, help="dmtrec's cube-map size for probe.hdr")
    parser.add_argument("--views", type=int, default=None, help="only the first N test views")
    parser.add_argument("--diff-gain", type=float, default=4.0)
    parser.add_argument(
        "--debug", choices=("", "kd"), default="", help="kd: unlit base colour in both (UVs, colour spaces)"
    )
    parser.add_argument("--chromium", default=find_chromium() or "chromium")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    cameras = test_cameras(args.run_dir, args.scale)[: args.views]
    if not cameras:
        raise SystemExit(f"{args.run_dir}: no test cameras (config.yaml and its dataset are needed)")
    start = time.time()
    three = torch.stack(capture_three(args.run_dir, cameras, args.env_rotation, args.chromium, debug=args.debug))
    three_s = time.time() - start
    ours = render_dmtrec(args.run_dir, cameras, args.probe_res, bsdf=args.debug or "pbr")
    scores = compare_renders(three, ours, args.out, args.diff_gain)
    report = {
        "run_dir": str(args.run_dir),
        "env_rotation_deg": args.env_rotation,
        **scores,
        "three_capture_s": round(three_s, 1),
        "loadavg": os.getloadavg(),
    }
    (args.out / "crossrender.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list) or k == "psnr"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
