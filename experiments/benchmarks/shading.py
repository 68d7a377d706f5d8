"""Shading timings: one training step's render + backward (pass 1: volumetric material).

For each setting, extracts the DMTet surface of Spot (the grid's SDF initialised from the mesh),
then times ``render_mesh`` (light prefiltering, rasterization, hash-grid material with the
smoothness lookups, split-sum shading, antialiasing) and the backward pass of an L1 image loss
plus the material smoothness and light regularizers into the SDF / offsets, the hash grid,
the MLP and the light. Prints medians over ``--repeats`` runs after one warm-up run (which
also builds the cached prefiltering operators, timed separately as "first build").

Settings:

- ``quickstart``: the CPU quick start: 128 x 128, batch 4, grid-32 DMTet Spot, hash grid with
  8 levels and 2^14 entries, light cube 32 x 32.
- ``nvdiffrec``: nvdiffrec's training settings: 512 x 512, batch 8, grid 64, hash grid with
  16 levels x 2 features, 2^19 entries, resolutions 16..4096, light cube 512 x 512.

    python experiments/benchmarks/shading.py                         # both settings, CPU (+ CUDA)
    python experiments/benchmarks/shading.py --settings quickstart --device cpu --repeats 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from dmtrec.geometry import DMTetGeometry
from dmtrec.io.mesh_files import read_mesh
from dmtrec.render.camera import Cameras
from dmtrec.render.camera_distributions import random_orbit_c2w
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import VolumetricMaterial
from dmtrec.render.raster import get_rasterizer, nvdiffrast_available
from dmtrec.render.render_mesh import render_mesh

DATA = Path(__file__).resolve().parents[2] / "data"

SETTINGS = {
    "quickstart": dict(
        resolution=128,
        batch=4,
        grid=32,
        light_res=32,
        hashgrid=dict(n_levels=8, log2_table_size=14, base_resolution=16, finest_resolution=1024),
    ),
    "nvdiffrec": dict(
        resolution=512,
        batch=8,
        grid=64,
        light_res=512,
        hashgrid=dict(n_levels=16, log2_table_size=19, base_resolution=16, finest_resolution=4096),
    ),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(setting: str, device: torch.device, backend: str, repeats: int, data: Path) -> dict:
    cfg = SETTINGS[setting]
    rasterizer = get_rasterizer(backend, device)
    geometry = DMTetGeometry(
        resolution=cfg["grid"], scale=2.4, init="mesh", init_mesh=read_mesh(data / "meshes" / "spot" / "spot.obj")[0]
    ).to(device)
    lo, hi = geometry.grid_aabb()
    material = VolumetricMaterial(torch.stack([lo, hi]).cpu(), **cfg["hashgrid"]).to(device)
    light = EnvironmentLight.random(base_res=cfg["light_res"], generator=torch.Generator().manual_seed(0)).to(device)
    res = cfg["resolution"]
    c2w = random_orbit_c2w(cfg["batch"], 3.0, torch.Generator().manual_seed(0))
    cameras = Cameras.from_fov(c2w, math.radians(45), (res, res)).to(device)
    target = torch.rand(cfg["batch"], res, res, 4, generator=torch.Generator().manual_seed(1)).to(device)
    background = torch.ones(cfg["batch"], res, res, 3, device=device)

    sync(device)
    start = time.perf_counter()
    light.build_mips(rasterizer)  # builds (and caches) the prefiltering operators
    sync(device)
    first_build = time.perf_counter() - start

    timings = {"extract": [], "render": [], "backward": []}
    for _ in range(repeats + 1):
        for module in (geometry, material, light):
            module.zero_grad(set_to_none=True)
        sync(device)
        t0 = time.perf_counter()
        mesh = geometry.mesh()
        sync(device)
        t1 = time.perf_counter()
        out = render_mesh(mesh, material, light, cameras, rasterizer, background=background)
        sync(device)
        t2 = time.perf_counter()
        loss = (out["shaded"] - target).abs().mean() + 0.03 * out["kd_grad"].mean() + 0.005 * light.regularizer()
        loss.backward()
        sync(device)
        t3 = time.perf_counter()
        for key, seconds in zip(timings, (t1 - t0, t2 - t1, t3 - t2)):
            timings[key].append(seconds)
    medians = {key: statistics.median(values[1:]) for key, values in timings.items()}
    coverage = out["mask"].mean().item()
    return {"faces": mesh.num_faces, "coverage": coverage, "first_build": first_build, **medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default="quickstart,nvdiffrec")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda when available)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--data", type=Path, default=DATA, help="data folder with meshes/spot (default: the repository's data/)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    print(
        f"{'setting':<11} {'device':<6} {'backend':<10} {'faces':>7} {'cover':>6} {'1st build':>9} "
        f"{'extract':>8} {'render':>8} {'backward':>8} {'step':>8}  (seconds)"
    )
    for setting in args.settings.split(","):
        for device in map(torch.device, devices):
            backends = ["torch"] + (["nvdiffrast"] if device.type == "cuda" and nvdiffrast_available() else [])
            for backend in backends:
                r = bench(setting, device, backend, args.repeats, args.data)
                step = r["render"] + r["backward"]
                print(
                    f"{setting:<11} {device.type:<6} {backend:<10} {r['faces']:>7} {r['coverage']:>6.2f} "
                    f"{r['first_build']:>9.3f} {r['extract']:>8.3f} {r['render']:>8.3f} {r['backward']:>8.3f} "
                    f"{step:>8.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
