"""DMTet against FlexiCubes: extraction cost, then reconstruction quality at matched triangle counts.

1. Step cost: process CPU time of one pass-1 geometry step (``mesh()``: surface, normals, UVs,
   tangents; backward; Adam) of DMTet at grid ``1.25 r`` and FlexiCubes at grid ``r`` with learned
   weights (nvdiffrec: training renders 4 triangles per quad, twice what is exported) and frozen
   ones (``model.dmtet.weight_lr 0``, the FlexiCubes quick start: it renders the exported split), on
   Spot's own SDF and on a random one, offsets drawn at random. Rendering is not included.
2. Fits: Spot and Bob rendered under the shared probe (``make_dataset``, NeRF-synthetic
   folders), pass 1 only (the geometries differ there; pass 2 keeps the topology) through the
   real ``dmtrec fit`` (quickstart.yaml settings), DMTet at ``1.25 r`` and FlexiCubes at ``r``, same
   budget and seed. Reported: triangles, Chamfer-L1 / F-score@0.01 / normal consistency
   (``geometry_report``, units of the reference's bounding box), triangle quality (minimum angle
   percentiles, slivers below 10 degrees) and topology (components, genus, watertight).

3. ``--quickstart-seeds 0,1,2``: instead of 2., the quick start itself (both passes, its data and
   budget) with DMTet (quickstart.yaml) and with FlexiCubes (+ quickstart_flexi.yaml) per seed;
   ``--pass1-iters N`` lengthens pass 1 (the quick start: 300) for a budget where both converge,
   ``--geometries`` picks one of them (two such processes run side by side). Each row adds the
   fit's CPU seconds (this process and its children), the load when it ended and how much the pass-1
   image loss fell over its last 100 iterations (mean of the logged steps against the 100 before).

    python experiments/benchmarks/geometry.py                         # defaults: CPU-sized
    python experiments/benchmarks/geometry.py --grids 48,64 --fit-grid 48 --iters 1000 --res 256
    python experiments/benchmarks/geometry.py --skip-timing --quickstart-seeds 0,1,2
    python experiments/benchmarks/geometry.py --skip-timing --quickstart-seeds 0 --pass1-iters 1000 \
        --geometries flexicubes --out /tmp/geometry

Step costs are process CPU time, fits wall clock, on whatever else the machine runs: compare the
rows of one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from dmtrec.geometry import DMTetGeometry, FlexiCubesGeometry

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
MESHES = {"spot": (DATA / "meshes/spot/spot.obj", 2.4), "bob": (DATA / "meshes/bob/bob_tri.obj", 2.1)}
PROBE = DATA / "envmaps/mud_road_puresky_1k.hdr"


def dmtet_grid(r: int) -> int:
    """DMTet's grid for FlexiCubes grid ``r`` (FlexiCubes' README: 64 ~ DMTet 80 in triangles)."""
    return int(round(1.25 * r))


def time_step(geo: torch.nn.Module, repeats: int) -> dict:
    """Median process CPU seconds of one pass-1 geometry step: ``mesh()`` (surface, normals, UVs,
    tangents), the backward of a loss on positions, normals and tangents plus the SDF regulariser
    (and L_dev), and Adam on the parameters that learn; rendering not included."""
    params = [p for p in geo.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4, foreach=True)
    seconds = []
    for _ in range(repeats + 2):  # the first runs warm up allocators
        start = time.process_time()
        mesh = geo.mesh()
        loss = mesh.v_pos.square().sum() + mesh.v_nrm.sum() + mesh.v_tng.sum() + geo.sdf_reg_loss()
        if isinstance(geo, FlexiCubesGeometry):
            loss = loss + geo.dev_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.process_time() - start)
    geo.eval()
    with torch.no_grad():
        exported = geo.mesh(with_uv=False).num_faces
    geo.train()
    return {"rendered": mesh.num_faces, "exported": exported, "seconds": statistics.median(seconds[2:])}


def extraction_table(grids: list[int], repeats: int) -> None:
    """Per-step geometry cost of DMTet at grid ``1.25 r`` and FlexiCubes at ``r`` with learned and
    with frozen weights, on Spot's own SDF (a clean surface, as late in pass 1) and on nvdiffrec's
    random SDF (the messy start); offsets drawn at random."""
    from dmtrec.io.mesh_files import read_mesh

    spot, _ = read_mesh(MESHES["spot"][0])
    scale = MESHES["spot"][1]
    print(f"{'geometry':20} {'grid':>4} {'state':6} {'exported':>9} {'rendered':>9} {'CPU ms/step':>11}")
    for r in grids:
        for state in ("spot", "random"):
            init = {"init": "mesh", "init_mesh": spot} if state == "spot" else {"init": "random", "seed": 0}
            frozen = FlexiCubesGeometry(resolution=r, scale=scale, **init)
            frozen.weights.requires_grad_(False)  # model.dmtet.weight_lr 0 (the FlexiCubes quick start)
            for name, geo in (
                ("dmtet", DMTetGeometry(resolution=dmtet_grid(r), scale=scale, **init)),
                ("flexicubes learned", FlexiCubesGeometry(resolution=r, scale=scale, **init)),
                ("flexicubes frozen", frozen),
            ):
                with torch.no_grad():
                    geo.deform.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
                t = time_step(geo, repeats)
                print(
                    f"{name:20} {geo.resolution:>4} {state:6} {t['exported']:>9,} {t['rendered']:>9,} "
                    f"{1e3 * t['seconds']:>11.1f}",
                    flush=True,
                )


def triangle_quality(v: torch.Tensor, f: torch.Tensor) -> dict:
    """Minimum interior angle per triangle (degrees): percentiles and the share below 10 / 20."""
    tri = v[f].double()
    angles = []
    for k in range(3):
        a, b, c = tri[:, k], tri[:, (k + 1) % 3], tri[:, (k + 2) % 3]
        u, w = b - a, c - a
        cos = (u * w).sum(1) / (u.norm(dim=1) * w.norm(dim=1)).clamp_min(1e-30)
        angles.append(torch.rad2deg(torch.acos(cos.clamp(-1, 1))))
    min_angle = torch.stack(angles, 1).min(1).values
    q = torch.quantile(min_angle, torch.tensor([0.01, 0.05, 0.5], dtype=torch.float64))
    return {
        "min_angle_p1": float(q[0]),
        "min_angle_p5": float(q[1]),
        "min_angle_median": float(q[2]),
        "slivers_below_10deg": float((min_angle < 10).double().mean()),
        "below_20deg": float((min_angle < 20).double().mean()),
    }


def make_data(name: str, out: Path, res: int, views: int) -> Path:
    from dmtrec.datasets.make_dataset import make_dataset
    from dmtrec.datasets.reference_mesh import ReferenceRender

    mesh, _ = MESHES[name]
    return make_dataset(
        mesh,
        PROBE,
        views=views,
        res=res,
        out=out / name,
        seed=0,
        val_views=2,
        test_views=4,
        render=ReferenceRender(probe_res=64, device="cpu", rasterizer="torch"),
    )


def run_fit(name: str, geometry: str, grid: int, data: Path, out: Path, iters: int, samples: int) -> dict:
    from dmtrec.cli import main

    mesh_path, scale = MESHES[name]
    run_name = f"{name}_{geometry}_{grid}"
    argv = ["fit", "-c", str(REPO / "experiments/configs/quickstart.yaml")]
    argv += ["--data.kind", "nerf_synthetic", "--data.reference_mesh", "null", "--data.nerf_synthetic.path", str(data)]
    argv += ["--data.resolution", "null", "--data.views", "null", "--data.val_views", "2", "--data.test_views", "4"]
    argv += ["--run.output_root", str(out), "--run.name", run_name, "--run.wandb", "disabled"]
    argv += ["--model.passes", "dmtet", "--model.iters_dmtet", str(iters), "--model.geometry", geometry]
    argv += ["--model.dmtet.resolution", str(grid), "--model.dmtet.scale", str(scale)]
    argv += ["--model.reference_mesh", str(mesh_path), "--model.metric_samples", str(samples)]
    argv += ["--model.material.texture_res", "64", "--trainer.val_check_interval", str(10 * iters)]
    start = time.perf_counter()
    if main(argv) != 0:
        raise RuntimeError(f"fit {run_name} failed")
    seconds = time.perf_counter() - start
    return {"mesh": name, "geometry": geometry, "grid": grid, "seconds": seconds, **mesh_row(out / run_name)}


def mesh_row(run_dir: Path) -> dict:
    """Triangles, the geometry report, topology and triangle quality of a finished run's mesh."""
    from dmtrec.io.mesh_files import read_mesh
    from dmtrec.metrics.topology import mesh_topology

    metrics = json.loads((run_dir / "metrics.json").read_text())
    mesh, _ = read_mesh(run_dir / "mesh" / "mesh.obj")
    topo = mesh_topology(mesh.v_pos, mesh.t_pos_idx)
    return {
        "triangles": mesh.num_faces,
        "chamfer_l1": metrics["geometry_chamfer_l1"],
        "f_score@0.01": metrics["geometry_f_score@0.01"],
        "normal_consistency": metrics["geometry_normal_consistency"],
        "test_psnr": metrics.get("test_psnr", math.nan),
        "components": topo["components"],
        "genus": topo["genus"],
        "watertight": topo["watertight"],
        **triangle_quality(mesh.v_pos, mesh.t_pos_idx),
    }


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the UV worker)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pass1_loss_fall(run_dir: Path, pass1_iters: int, window: int = 100) -> float:
    """Relative fall of the pass-1 image loss (alpha + colour) over its last ``window`` iterations:
    ``1 - mean(last window) / mean(window before)`` over the steps the CSV log holds (every
    ``trainer.log_every_n_steps``); NaN without a log or when pass 1 is shorter than two windows."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.exists() or pass1_iters < 2 * window:
        return math.nan
    last, before = [], []
    with path.open() as f:
        for row in csv.DictReader(f):
            it, alpha, color = row.get("train/iteration"), row.get("train/image_alpha"), row.get("train/image_color")
            if not (it and alpha and color):
                continue
            value, it = float(alpha) + float(color), float(it)
            if pass1_iters - window < it <= pass1_iters:
                last.append(value)
            elif pass1_iters - 2 * window < it <= pass1_iters - window:
                before.append(value)
    if not (last and before):
        return math.nan
    return 1.0 - statistics.mean(last) / statistics.mean(before)


def quickstart_fit(geometry: str, seed: int, out: Path, pass1_iters: int | None = None) -> dict:
    """The quick start itself (both passes, its data and budget) with ``geometry`` in pass 1:
    quickstart.yaml, plus quickstart_flexi.yaml for FlexiCubes; the seed varies
    ``seed_everything``, ``model.dmtet.seed`` and ``data.shared.seed`` as the README's seed table;
    ``pass1_iters`` replaces the quick start's 300 pass-1 iterations (None: keep them)."""
    from dmtrec.cli import main

    run_name = f"quickstart_{geometry}_seed{seed}" + ("" if pass1_iters is None else f"_it{pass1_iters}")
    argv = ["fit", "-c", str(REPO / "experiments/configs/quickstart.yaml")]
    if geometry == "flexicubes":
        argv += ["-c", str(REPO / "experiments/configs/quickstart_flexi.yaml")]
    argv += ["--seed_everything", str(seed), "--model.dmtet.seed", str(seed), "--data.shared.seed", str(seed)]
    argv += ["--run.output_root", str(out), "--run.name", run_name, "--run.wandb", "disabled"]
    if pass1_iters is not None:
        argv += ["--model.iters_dmtet", str(pass1_iters)]
    start, cpu_start = time.perf_counter(), cpu_seconds()
    if main(argv) != 0:
        raise RuntimeError(f"fit {run_name} failed")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    row = {"mesh": "spot", "geometry": geometry, "seed": seed, "seconds": seconds, "cpu_seconds": cpu}
    row["load"] = os.getloadavg()[0]
    row["pass1_loss_fall_last100"] = pass1_loss_fall(out / run_name, pass1_iters or 300)
    return {**row, **mesh_row(out / run_name)}


def print_table(rows: list[dict]) -> None:
    keys = [k for k in rows[0] if k not in ("mesh", "geometry")]
    print(f"{'mesh':5} {'geometry':10} " + " ".join(f"{k[:12]:>12}" for k in keys))
    for row in rows:
        cells = [
            f"{row[k]:>12.4g}" if isinstance(row[k], float) and math.isfinite(row[k]) else f"{row[k]!s:>12}"
            for k in keys
        ]
        print(f"{row['mesh']:5} {row['geometry']:10} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", default="26,38,48", help="FlexiCubes grids r of the timing table")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit-grid", type=int, default=26, help="FlexiCubes grid r of the fits (DMTet: 1.25 r)")
    parser.add_argument("--meshes", default="spot,bob")
    parser.add_argument("--iters", type=int, default=200, help="pass-1 iterations per fit")
    parser.add_argument("--res", type=int, default=64, help="training image size")
    parser.add_argument("--views", type=int, default=64)
    parser.add_argument("--samples", type=int, default=10000, help="surface samples of the geometry report")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-fits", action="store_true")
    parser.add_argument("--out", default=None, help="folder for datasets and runs (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--quickstart-seeds",
        default=None,
        help="instead of the pass-1 fits: the quick start itself (both passes) with DMTet and with "
        "quickstart_flexi.yaml for these seeds, e.g. 0,1,2 (rows print as each fit ends)",
    )
    parser.add_argument(
        "--pass1-iters", type=int, default=None, help="with --quickstart-seeds: pass-1 iterations (quick start: 300)"
    )
    parser.add_argument("--geometries", default="dmtet,flexicubes", help="with --quickstart-seeds: which to fit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load {os.getloadavg()}")
    if args.quickstart_seeds is not None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out or tmp) / "runs"
            rows = []
            for seed in (int(s) for s in args.quickstart_seeds.split(",")):
                for geometry in args.geometries.split(","):
                    rows.append(quickstart_fit(geometry, seed, out, args.pass1_iters))
                    print(json.dumps(rows[-1]), f"load {os.getloadavg()}", flush=True)
            print_table(rows)
        return
    if not args.skip_timing:
        extraction_table([int(r) for r in args.grids.split(",")], args.repeats)
    if args.skip_fits:
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        rows = []
        for name in args.meshes.split(","):
            data = make_data(name, out / "data", args.res, args.views)
            for geometry, grid in (("dmtet", dmtet_grid(args.fit_grid)), ("flexicubes", args.fit_grid)):
                rows.append(run_fit(name, geometry, grid, data, out / "runs", args.iters, args.samples))
                print(json.dumps(rows[-1]), flush=True)
        print(f"load {os.getloadavg()}")
        print_table(rows)


if __name__ == "__main__":
    sys.exit(main())
