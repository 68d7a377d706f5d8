"""How the pure-PyTorch rasterizer's cost grows with resolution and triangle count, per op and
against Mitsuba 3's ``direct`` integrator on the same scene, in the same run.

The scene: experiments/benchmarks/raster.py's bumpy UV sphere (1k-1M triangles) seen by 4
cameras on a circle (60 deg fov), a 64^2 RGB texture. dmtrec's chain is rasterize ->
interpolate (uv with pixel derivatives) -> texture (linear-mipmap-linear) -> antialias, forward
+ backward to the clip-space vertices and the texture. Mitsuba (``llvm_ad_rgb``, 1 spp, a
diffuse BSDF with the same texture under a constant environment) renders the same 4 views and
back-propagates to the vertex positions and the texture. Mitsuba's ``direct`` gives no
silhouette gradients; dmtrec's chain does (antialias).

For every configuration each code version runs in its own subprocess (so peak memory, the
process's ``ru_maxrss``, is its own); versions run back to back, so machine load affects them
alike. ``--before DIR`` adds the code in DIR (e.g. ``git archive <commit> | tar -x -C DIR``) as
a "before" column. Times are medians of ``--repeats`` calls after one warm-up, by wall clock and
by the process's CPU time (the better measure on a shared machine: other processes stretch the
wall time, not the CPU time); CPU threads are pinned (``--threads``, default 1) for torch and
Dr.Jit alike.

    python experiments/benchmarks/raster_scaling.py --quick
    python experiments/benchmarks/raster_scaling.py --before /tmp/raster_before --repeats 5
    python experiments/benchmarks/raster_scaling.py --configs 1024x1000000x8 --ops chain --repeats 1

Memory: ``--configs 1024x1000000x8 --ops chain`` (1024^2, batch 8, 1M triangles, chain forward +
backward) peaks at 3.8 GB RSS, within 8 GB: the rasterizer sets up at most
``TRIANGLES_PER_CHUNK`` triangles and tests at most ``CANDIDATES_PER_CHUNK`` (triangle, pixel)
pairs at once (dmtrec/render/raster/torch_rasterize.py), so its temporaries do not grow with the
mesh; interpolate and texture run as autograd Functions over ``CHUNK`` pixels at a time
(torch_common.py) and save only a few values per pixel for their backward; what remains is
proportional to the pixels (images, per-pixel gradients).

Mitsuba needs ``pip install mitsuba`` (the ``pathtrace`` extra) and an LLVM >= 16 shared library
(Debian: ``apt-get install libllvm19``); the benchmark points ``DRJIT_LIBLLVM_PATH`` at it when it
is unset. Without them the Mitsuba column is left out.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
FULL = [(r, t, 4) for r in (128, 256, 512, 1024) for t in (1_000, 10_000, 100_000, 1_000_000)]
DEFAULT = [(128, 10_000, 4), (256, 10_000, 4), (512, 10_000, 4), (128, 100_000, 4), (512, 100_000, 4)]
DEFAULT += [(128, 1_000, 4), (1024, 10_000, 4), (128, 1_000_000, 4), (1024, 1_000_000, 4)]
QUICK = [(128, 10_000, 4), (256, 10_000, 4), (128, 100_000, 4)]
OPS = ("rasterize", "interpolate", "texture", "antialias")
TEXTURE_RES = 64
LLVM_GLOBS = ("/usr/lib/x86_64-linux-gnu/libLLVM-1[6-9]*.so*", "/usr/lib/llvm-1[6-9]/lib/libLLVM*.so*")


# ---------------------------------------------------------------------------------------------
# Child process: one code version, one configuration.


def _timed(fwd: Callable[[], object], bwd: Callable[[object], None], repeats: int) -> List[float]:
    """Medians after one untimed warm-up: ``[forward wall, backward wall, forward CPU, backward CPU]``
    seconds. CPU time is the process's (all its threads); on a loaded machine it tracks the work
    better than wall time does."""
    bwd(fwd())
    samples = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fwd()
        t1, c1 = time.perf_counter(), time.process_time()
        bwd(out)
        samples.append((t1 - t0, time.perf_counter() - t1, c1 - c0, time.process_time() - c1))
        del out
    return [statistics.median(column) for column in zip(*samples)]


def run_torch(res: int, num_tris: int, batch: int, repeats: int, ops: List[str]) -> Dict[str, object]:
    import torch

    from dmtrec.render.raster import get_rasterizer

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from raster import bumpy_sphere, clip_positions  # the same scene as raster.py

    r = get_rasterizer("torch", torch.device("cpu"))
    verts, uv, tri = bumpy_sphere(num_tris, torch.device("cpu"))
    pos = clip_positions(verts, batch)
    gen = torch.Generator().manual_seed(0)
    tex = torch.rand(1, TEXTURE_RES, TEXTURE_RES, 3, generator=gen)
    weights = torch.rand(batch, res, res, 4, generator=gen)
    resolution = (res, res)
    base_rss = _maxrss_mb()
    results: Dict[str, object] = {"triangles": int(tri.shape[0])}
    topo = r.construct_topology_hash(tri)

    def chain_fwd():
        p, t = pos.clone().requires_grad_(True), tex.clone().requires_grad_(True)
        a, b = r.rasterize(p, tri, resolution)
        u, ud = r.interpolate(uv, a, tri, b, diff_attrs="all")
        c = r.texture(t, u, ud, filter_mode="linear-mipmap-linear")
        o = r.antialias(c, a, p, tri, topology_hash=topo)
        return (o * weights[..., :3]).sum()

    def backward(loss):
        loss.backward()

    if "chain" in ops:
        results["chain"] = _timed(chain_fwd, backward, repeats)
    if set(ops) & set(OPS):
        with torch.no_grad():
            rast, rast_db = r.rasterize(pos, tri, resolution)
            tc, tc_da = r.interpolate(uv, rast, tri, rast_db, diff_attrs="all")
        color = torch.rand(batch, res, res, 3, generator=gen)

        def op_rasterize():
            a, b = r.rasterize(pos.clone().requires_grad_(True), tri, resolution)
            return (a[..., :2] * weights[..., :2]).sum() + (b * weights).sum()

        def op_interpolate():
            ra, rb = rast.clone().requires_grad_(True), rast_db.clone().requires_grad_(True)
            o, d = r.interpolate(uv.clone().requires_grad_(True), ra, tri, rb, diff_attrs="all")
            return (o * weights[..., :2]).sum() + (d * weights).sum()

        def op_texture():
            t, u = tex.clone().requires_grad_(True), tc.clone().requires_grad_(True)
            return (r.texture(t, u, tc_da, filter_mode="linear-mipmap-linear") * weights[..., :3]).sum()

        def op_antialias():
            c, p = color.clone().requires_grad_(True), pos.clone().requires_grad_(True)
            return (r.antialias(c, rast, p, tri, topology_hash=topo) * weights[..., :3]).sum()

        for name, fn in zip(OPS, (op_rasterize, op_interpolate, op_texture, op_antialias)):
            if name in ops:
                results[name] = _timed(fn, backward, repeats)
    results["peak_mb"] = _maxrss_mb()
    results["peak_delta_mb"] = results["peak_mb"] - base_rss
    return results


def find_llvm() -> Optional[str]:
    """An LLVM >= 16 shared library for Dr.Jit's LLVM backend, newest first, or None."""
    found = sorted({p for pattern in LLVM_GLOBS for p in glob.glob(pattern)}, reverse=True)
    return found[0] if found else None


def run_mitsuba(res: int, num_tris: int, batch: int, repeats: int, threads: int) -> Dict[str, object]:
    import drjit as dr  # optional: imported only here
    import mitsuba as mi
    import torch

    mi.set_variant("llvm_ad_rgb")
    dr.set_thread_count(threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from raster import bumpy_sphere

    verts, uv, tri = bumpy_sphere(num_tris, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    tex = torch.rand(TEXTURE_RES, TEXTURE_RES, 3, generator=gen)
    mesh = mi.Mesh("sphere", verts.shape[0], tri.shape[0], has_vertex_texcoords=True)
    mesh_params = mi.traverse(mesh)
    mesh_params["vertex_positions"] = mi.Float(verts.reshape(-1).numpy())
    mesh_params["faces"] = mi.UInt32(tri.reshape(-1).numpy().astype("uint32"))
    mesh_params["vertex_texcoords"] = mi.Float(uv.reshape(-1).numpy())
    mesh_params.update()
    bsdf = mi.load_dict(
        {"type": "diffuse", "reflectance": {"type": "bitmap", "bitmap": mi.Bitmap(tex.numpy()), "raw": True}}
    )
    mesh.set_bsdf(bsdf)
    sensors = {}
    for k in range(batch):  # clip_positions' cameras: distance 3 on a circle around y, 60 deg vertical fov
        ang = 2 * math.pi * k / batch
        origin = [3 * math.sin(ang), 0.0, 3 * math.cos(ang)]
        sensors[f"cam{k}"] = {
            "type": "perspective",
            "fov": 60,
            "fov_axis": "y",
            "near_clip": 0.1,
            "far_clip": 10.0,
            "to_world": mi.ScalarTransform4f().look_at(origin=origin, target=[0, 0, 0], up=[0, 1, 0]),
            "film": {"type": "hdrfilm", "width": res, "height": res, "rfilter": {"type": "box"}},
            "sampler": {"type": "independent", "sample_count": 1},
        }
    scene = mi.load_dict(
        {"type": "scene", "integrator": {"type": "direct"}, "light": {"type": "constant"}, "sphere": mesh, **sensors}
    )
    params = mi.traverse(scene)
    pos_key = next(k for k in params.keys() if k.endswith("vertex_positions"))
    tex_key = next(k for k in params.keys() if k.endswith("reflectance.data"))
    weights = mi.TensorXf(torch.rand(res, res, 3, generator=gen).numpy())
    base_rss = _maxrss_mb()
    seed = [0]

    def fwd():
        dr.enable_grad(params[pos_key])
        dr.enable_grad(params[tex_key])
        params.update()
        loss = None
        for k in range(batch):
            seed[0] += 1
            img = mi.render(scene, params, sensor=k, spp=1, seed=seed[0])
            term = dr.sum(img * weights, axis=None)
            loss = term if loss is None else loss + term
        dr.eval(loss)
        dr.sync_thread()
        return loss

    def bwd(loss):
        dr.backward(loss)
        dr.eval(dr.grad(params[pos_key]), dr.grad(params[tex_key]))
        dr.sync_thread()

    chain = _timed(fwd, bwd, repeats)
    return {"chain": chain, "peak_mb": _maxrss_mb(), "peak_delta_mb": _maxrss_mb() - base_rss}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def child_main(spec: dict) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    res, num_tris, batch = spec["config"]
    try:
        if spec["kind"] == "mitsuba":
            out = run_mitsuba(res, num_tris, batch, spec["repeats"], spec["threads"])
        else:
            out = run_torch(res, num_tris, batch, spec["repeats"], spec["ops"])
    except MemoryError:
        out = {"error": "out of memory"}
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------------------------------------
# Parent: runs the versions back to back per configuration and prints the tables.


def run_child(kind: str, code: Path, config, args, timeout: float) -> Dict[str, object]:
    spec = {"kind": kind, "config": config, "repeats": args.repeats, "threads": args.threads, "ops": args.ops}
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS=str(args.threads))
    if kind == "mitsuba" and "DRJIT_LIBLLVM_PATH" not in env and find_llvm():
        env["DRJIT_LIBLLVM_PATH"] = find_llvm()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {proc.returncode}: {tail[:200]}"}


def mitsuba_available() -> Optional[str]:
    """None when Mitsuba can run here, else why not."""
    try:
        import mitsuba  # noqa: F401
    except ImportError:
        return "mitsuba not installed (pip install mitsuba)"
    if "DRJIT_LIBLLVM_PATH" not in os.environ and find_llvm() is None:
        return "no LLVM >= 16 (apt-get install libllvm19, or set DRJIT_LIBLLVM_PATH)"
    return None


def parse_configs(text: str) -> List[Tuple[int, int, int]]:
    out = []
    for item in text.split(","):
        parts = [int(p) for p in item.lower().split("x")]
        out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else 4))
    return out


def _total(times, clock: str) -> Optional[float]:
    """Forward + backward seconds of one op's timings, by wall or CPU clock."""
    if times is None:
        return None
    return times[0] + times[1] if clock == "wall" else times[2] + times[3]


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.0f}"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK} (resolution, triangles, batch)")
    parser.add_argument("--full", action="store_true", help="every resolution 128-1024 x triangles 1k-1M, batch 4")
    parser.add_argument("--configs", help="comma-separated RESxTRIS[xBATCH], e.g. 128x10000,1024x1000000x8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and Dr.Jit (1)")
    parser.add_argument("--ops", default="chain," + ",".join(OPS), help="chain and/or per-op timings")
    parser.add_argument("--before", type=Path, help="a copy of the old code to time back to back with this one")
    parser.add_argument("--no-mitsuba", action="store_true")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per subprocess")
    parser.add_argument("--json", type=Path, help="also write all results here")
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return
    args.ops = args.ops.split(",")
    configs = parse_configs(args.configs) if args.configs else QUICK if args.quick else FULL if args.full else DEFAULT
    why_not = "disabled" if args.no_mitsuba else mitsuba_available()
    versions = ([("before", args.before)] if args.before else []) + [("after" if args.before else "now", REPO)]
    print(
        f"raster_scaling: {args.threads} thread(s), {args.repeats} repeats (median), load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
        f"Mitsuba: {'yes' if why_not is None else 'no, ' + why_not}"
    )
    all_rows = []
    for config in configs:
        row = {"config": config, "load_start": os.getloadavg()[0]}
        for name, code in versions:
            row[name] = run_child("torch", code, config, args, args.timeout)
        if why_not is None:
            row["mitsuba"] = run_child("mitsuba", REPO, config, args, args.timeout)
        row["load_end"] = os.getloadavg()[0]
        all_rows.append(row)
        _print_row(row, versions, why_not is None)
    _print_table(all_rows, versions, why_not is None)
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=1))


def _print_row(row, versions, with_mitsuba: bool) -> None:
    res, tris, batch = row["config"]
    print(f"\n{res}^2, ~{tris} triangles, batch {batch} (load {row['load_start']:.1f} -> {row['load_end']:.1f})")
    names = [n for n, _ in versions] + (["mitsuba"] if with_mitsuba else [])
    for name in names:
        result = row[name]
        if "error" in result:
            print(f"  {name:8s} failed: {result['error']}")
            continue
        parts = [
            f"{op} {t[0] * 1e3:.1f}+{t[1] * 1e3:.1f} (cpu {t[2] * 1e3:.1f}+{t[3] * 1e3:.1f})"
            for op, t in ((op, result.get(op)) for op in ("chain",) + OPS)
            if t is not None
        ]
        print(f"  {name:8s} ms fwd+bwd: {', '.join(parts)}; peak RSS {result['peak_mb']:.0f} MB")


def _print_table(rows, versions, with_mitsuba: bool) -> None:
    names = [n for n, _ in versions]
    print("\nchain = rasterize + interpolate + texture + antialias, forward + backward, median ms")
    for clock in ("cpu", "wall"):
        head = "| resolution | triangles | batch | " + " | ".join(f"{n} ({clock})" for n in names)
        head += " | peak RSS MB |"
        if with_mitsuba:
            head += f" Mitsuba direct ({clock}) | " + " | ".join(f"{n}/Mitsuba" for n in names) + " |"
        if len(names) == 2:
            head += " speed-up |"
        print("\n" + head + "\n|" + "---|" * (head.count("|") - 1))
        for row in rows:
            res, tris, batch = row["config"]
            total = [_total(row[n].get("chain"), clock) for n in names]
            cells = [f"{res}^2", str(tris), str(batch)] + [_ms(t) for t in total]
            cells.append(str(round(row[names[-1]].get("peak_mb", float("nan")))))
            if with_mitsuba:
                m = _total(row["mitsuba"].get("chain"), clock)
                cells.append(_ms(m))
                cells += ["-" if t is None or m is None else f"{t / m:.2f}x" for t in total]
            if len(names) == 2:
                cells.append("-" if None in total else f"{total[0] / total[1]:.2f}x")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
