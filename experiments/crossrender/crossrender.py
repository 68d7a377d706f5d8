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
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from dmtrec.commands.view import find_three, make_server, serve_in_background, test_cameras
from dmtrec.io.gltf import read_glb
from dmtrec.io.image import linear_to_srgb, write_png
from dmtrec.metrics.image import image_metrics, psnr
from dmtrec.render.camera import Cameras, perspective
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.raster import get_rasterizer
from dmtrec.render.render_mesh import render_mesh

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # WebGL without a GPU: Chromium's software rasterizer (SwiftShader through ANGLE).
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def capture_three(
    run_dir: Path, cameras: list, env_rotation: float, chromium: str, timeout: float = 300, debug: str = ""
) -> list:
    """``[H, W, 4]`` linear float renders of three.js, one per camera (rows top to bottom)."""
    captures: dict = {}
    done = threading.Event()

    def on_capture(name: str, body: bytes) -> None:
        if name == "done":
            done.set()
        else:
            captures[int(name)] = body

    server = make_server(run_dir, "127.0.0.1", 0, find_three(), cameras=cameras, on_capture=on_capture)
    serve_in_background(server)
    port = server.server_address[1]
    url = f"http://127.0.0.1:{port}/?capture=1&env_rotation={env_rotation:g}&debug={debug}"
    with tempfile.TemporaryDirectory() as profile:
        process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if not done.wait(timeout):
                raise RuntimeError(f"three.js page did not finish within {timeout:.0f} s ({len(captures)} views)")
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            server.shutdown()
    out = []
    for i, cam in enumerate(cameras):
        pixels = np.frombuffer(captures[i], dtype=np.float32).reshape(cam["height"], cam["width"], 4)
        out.append(torch.from_numpy(pixels[::-1].copy()))  # readPixels starts at the bottom row
    return out


def dmtrec_cameras(cameras: list) -> Cameras:
    c2w = torch.tensor([c["c2w_column_major"] for c in cameras], dtype=torch.float32).reshape(-1, 4, 4)
    c2w = c2w.transpose(1, 2)
    first = cameras[0]
    proj = torch.stack(
        [perspective(np.radians(c["fovy_deg"]), c["width"] / c["height"], c["near"], c["far"]) for c in cameras]
    )
    return Cameras(c2w=c2w, proj=proj, resolution=(first["height"], first["width"]))


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


def over_white(rgba: torch.Tensor) -> torch.Tensor:
    """Premultiplied (over black) linear RGBA -> linear RGB over white."""
    return rgba[..., :3] + (1.0 - rgba[..., 3:4].clamp(0, 1))


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
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    cameras = test_cameras(args.run_dir, args.scale)[: args.views]
    if not cameras:
        raise SystemExit(f"{args.run_dir}: no test cameras (config.yaml and its dataset are needed)")
    start = time.time()
    three = torch.stack(capture_three(args.run_dir, cameras, args.env_rotation, args.chromium, debug=args.debug))
    three_s = time.time() - start
    ours = render_dmtrec(args.run_dir, cameras, args.probe_res, bsdf=args.debug or "pbr")
    metrics = image_metrics(over_white(three), over_white(ours))
    # PSNR where either renderer covers the pixel (the white background inflates whole-image PSNR).
    covered = (three[..., 3:4] > 0) | (ours[..., 3:4] > 0)
    a, b = linear_to_srgb(over_white(three)).clamp(0, 1), linear_to_srgb(over_white(ours)).clamp(0, 1)
    masked = [
        float(psnr(a[i][covered[i, ..., 0]][None, :, None], b[i][covered[i, ..., 0]][None, :, None]))
        for i in range(len(cameras))
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    strips = []
    for i in range(len(cameras)):
        diff = ((a[i] - b[i]).abs() * args.diff_gain).clamp(0, 1)
        write_png(args.out / f"view{i:02d}_three.png", a[i])
        write_png(args.out / f"view{i:02d}_dmtrec.png", b[i])
        write_png(args.out / f"view{i:02d}_diff.png", diff)
        strips.append(torch.cat([a[i], b[i], diff], 1))
    write_png(args.out / "strip.png", torch.cat(strips, 0))
    report = {
        "run_dir": str(args.run_dir),
        "env_rotation_deg": args.env_rotation,
        "resolution": [cameras[0]["height"], cameras[0]["width"]],
        "psnr": [float(x) for x in metrics["psnr"]],
        "ssim": [float(x) for x in metrics["ssim"]],
        "psnr_covered": masked,
        "mean_psnr": float(metrics["psnr"].mean()),
        "mean_ssim": float(metrics["ssim"].mean()),
        "mean_psnr_covered": float(np.mean(masked)),
        "three_capture_s": round(three_s, 1),
        "loadavg": os.getloadavg(),
    }
    (args.out / "crossrender.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list) or k == "psnr"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
