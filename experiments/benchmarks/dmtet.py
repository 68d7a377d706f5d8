"""DMTet surface extraction timings: forward + backward at grid 32 / 64 / 128.

For each resolution and SDF state, times ``DMTetGeometry.mesh()`` (offsets, marching
tetrahedra, normals, per-triangle UVs and tangents) and the backward pass of a loss on
positions, normals and tangents plus the SDF regularizer, and prints the median of
``--repeats`` runs with the output size. States:

- ``sphere``: a clean surface (sphere of radius scale/4), like late pass 1;
- ``random``: nvdiffrec's random initialisation (``U(0, 1) - 0.1``), the worst case: most
  tets are crossed at the start of training.

    python experiments/benchmarks/dmtet.py                    # CPU, and CUDA when present
    python experiments/benchmarks/dmtet.py --device cpu --resolutions 32,64 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dmtrec.geometry import DMTetGeometry
from dmtrec.geometry.tetgrid import generate_tet_grid


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_extraction(geo: torch.nn.Module, device: torch.device, repeats: int) -> dict:
    """Median forward (``geo.mesh()``) and backward (a loss on positions, normals, tangents and
    the SDF regularizer) seconds of a DMTet or FlexiCubes module, with the output size."""
    forward, backward = [], []
    for _ in range(repeats + 1):  # the first run warms up allocators and kernels
        geo.zero_grad(set_to_none=True)
        sync(device)
        start = time.perf_counter()
        mesh = geo.mesh()
        sync(device)
        middle = time.perf_counter()
        loss = mesh.v_pos.square().sum() + mesh.v_nrm.sum() + mesh.v_tng.sum() + geo.sdf_reg_loss()
        loss.backward()
        sync(device)
        forward.append(middle - start)
        backward.append(time.perf_counter() - middle)
    return {
        "verts": mesh.num_vertices,
        "faces": mesh.num_faces,
        "forward": statistics.median(forward[1:]),
        "backward": statistics.median(backward[1:]),
    }


def bench(resolution: int, init: str, device: torch.device, repeats: int) -> dict:
    geo = DMTetGeometry(resolution=resolution, scale=2.1, init=init, seed=0).to(device)
    with torch.no_grad():
        geo.deform.normal_(0.0, 0.5, generator=torch.Generator(device).manual_seed(1))
    return {"tets": geo.tets.shape[0], **time_extraction(geo, device, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda when available)")
    parser.add_argument("--resolutions", default="32,64,128")
    parser.add_argument("--inits", default="sphere,random")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    resolutions = [int(r) for r in args.resolutions.split(",")]
    for res in resolutions:
        start = time.perf_counter()
        grid = generate_tet_grid(res)
        print(
            f"grid {res}: {grid.num_vertices:,} vertices, {grid.num_tets:,} tets "
            f"(generated or loaded from cache in {time.perf_counter() - start:.2f} s)"
        )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        f"{'device':6} {'grid':>4} {'init':6} {'tets':>10} {'out verts':>10} {'out faces':>10} "
        f"{'fwd ms':>8} {'bwd ms':>8} {'total ms':>9}"
    )
    for device in devices:
        name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
        for res in resolutions:
            for init in args.inits.split(","):
                r = bench(res, init, torch.device(device), args.repeats)
                print(
                    f"{device:6} {res:>4} {init:6} {r['tets']:>10,} {r['verts']:>10,} {r['faces']:>10,} "
                    f"{1e3 * r['forward']:>8.1f} {1e3 * r['backward']:>8.1f} "
                    f"{1e3 * (r['forward'] + r['backward']):>9.1f}"
                )
        if device == "cuda":
            print(f"(cuda device: {name})")


if __name__ == "__main__":
    main()
