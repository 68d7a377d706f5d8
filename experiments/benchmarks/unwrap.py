"""UV unwrap of big pass-1 meshes: xatlas (in its time-limited child process) against the chart
atlas fallback: wall time, UV count and texel utilisation.

The meshes are what pass 1 extracts on a grid-128 DMTet: the surface of Spot's SDF on the
generated 128 grid (noise 0: about 31k triangles) and the same with per-vertex SDF noise of
``--noise`` grid cells (bumps, handles and floaters as in an unconverged fit: 100k-600k triangles).

    python experiments/benchmarks/unwrap.py --timeout 400
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dmtrec.geometry import DMTetGeometry, Mesh  # noqa: E402
from dmtrec.geometry.uv_unwrap import XatlasError, chart_atlas, texel_utilisation, xatlas_unwrap  # noqa: E402
from dmtrec.io.mesh_files import read_mesh  # noqa: E402


def pass_one_meshes(resolution: int, noises, seed: int = 0):
    spot = read_mesh(REPO / "data" / "meshes" / "spot" / "spot.obj")[0]
    geo = DMTetGeometry(resolution=resolution, scale=2.4, init="mesh", init_mesh=spot)
    sdf = geo.sdf.detach().clone()
    cell = 2.4 / resolution
    for noise in noises:
        with torch.no_grad():
            geo.sdf.copy_(sdf + torch.randn(sdf.shape, generator=torch.Generator().manual_seed(seed)) * noise * cell)
        mesh = geo.mesh(with_uv=False)
        yield f"noise {noise:g} cells", Mesh(v_pos=mesh.v_pos.detach(), t_pos_idx=mesh.t_pos_idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 1.0, 2.0], help="SDF noise, in grid cells")
    parser.add_argument("--timeout", type=float, default=400.0, help="xatlas time limit (s)")
    parser.add_argument("--texture-res", type=int, default=2048)
    parser.add_argument("--skip-xatlas", action="store_true", help="time the chart atlas only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()}")
    for name, mesh in pass_one_meshes(args.resolution, args.noise):
        print(f"{name}: {mesh.num_faces} triangles, {mesh.num_vertices} vertices", flush=True)
        start = time.perf_counter()
        v_tex, t_tex = chart_atlas(mesh.v_pos, mesh.t_pos_idx, args.texture_res)
        util = texel_utilisation(mesh.copy(v_tex=v_tex, t_tex_idx=t_tex))
        print(
            f"  charts: {time.perf_counter() - start:.1f} s, {v_tex.shape[0]} UVs, utilisation {util:.3f}", flush=True
        )
        if args.skip_xatlas:
            continue
        start = time.perf_counter()
        try:
            v_tex, t_tex = xatlas_unwrap(mesh.v_pos, mesh.t_pos_idx, args.timeout)
            util = texel_utilisation(mesh.copy(v_tex=v_tex, t_tex_idx=t_tex))
            print(
                f"  xatlas: {time.perf_counter() - start:.1f} s, {v_tex.shape[0]} UVs, utilisation {util:.3f}",
                flush=True,
            )
        except XatlasError as exc:
            print(f"  xatlas: {exc} ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
