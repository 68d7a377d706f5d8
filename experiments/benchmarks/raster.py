"""Forward+backward timings of the rasterizer primitives, per backend, on a procedural mesh.

For each configuration (resolution, triangle count, batch) and each backend available on the
device, prints the median time of rasterize, interpolate (with pixel derivatives), texture
(trilinear mip-mapped) and antialias, each forward+backward, and of the whole chain
rasterize -> interpolate -> texture -> antialias, plus the torch/nvdiffrast ratio when both
ran in this process. The mesh is a bumpy UV sphere seen by ``batch`` cameras around it.

    python experiments/benchmarks/raster.py                       # CUDA if present, else CPU
    python experiments/benchmarks/raster.py --device cpu --configs cpu
    python experiments/benchmarks/raster.py --configs small,medium,large --repeats 10

The CPU target: ``--configs cpu`` (128^2, batch 4, 10k triangles) full chain under 0.2 s on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch

from dmtrec.render.raster import get_rasterizer, nvdiffrast_available

CONFIGS = {  # name: (resolution, triangles, batch)
    "cpu": (128, 10_000, 4),
    "small": (256, 1_000, 8),
    "medium": (512, 100_000, 8),
    "large": (1024, 1_000_000, 4),
}
OPS = ("rasterize", "interpolate", "texture", "antialias", "chain")


def bumpy_sphere(num_tris: int, device: torch.device):
    """UV sphere with about ``num_tris`` triangles: positions [V, 3], uv [V, 2], tri [F, 3] int32."""
    rings = max(2, round(math.sqrt(num_tris / 4)))
    segments = 2 * rings
    lat = torch.linspace(0, math.pi, rings + 1, device=device)
    lon = torch.linspace(0, 2 * math.pi, segments + 1, device=device)
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    radius = 1 + 0.05 * torch.sin(7 * lon) * torch.sin(5 * lat)
    verts = torch.stack(
        [radius * torch.sin(lat) * torch.cos(lon), radius * torch.cos(lat), radius * torch.sin(lat) * torch.sin(lon)],
        -1,
    ).reshape(-1, 3)
    uv = torch.stack([lon / (2 * math.pi), lat / math.pi], -1).reshape(-1, 2)
    idx = torch.arange((rings + 1) * (segments + 1), device=device).reshape(rings + 1, segments + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tri = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    return verts, uv.contiguous(), tri.to(torch.int32).contiguous()


def clip_positions(verts: torch.Tensor, batch: int) -> torch.Tensor:
    """``[B, V, 4]`` clip positions of ``verts`` seen from ``batch`` cameras on a circle (60 deg fov)."""
    device = verts.device
    f = 1 / math.tan(math.radians(30))
    near, far = 0.1, 10.0
    proj = torch.tensor(
        [
            [f, 0, 0, 0],
            [0, f, 0, 0],
            [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, -1, 0],
        ],
        device=device,
    )
    out = []
    for k in range(batch):
        ang = 2 * math.pi * k / batch
        rot = torch.tensor(
            [[math.cos(ang), 0, -math.sin(ang)], [0, 1, 0], [math.sin(ang), 0, math.cos(ang)]], device=device
        )
        cam = verts @ rot.T - torch.tensor([0, 0, 3.0], device=device)
        out.append(torch.cat([cam, torch.ones_like(cam[:, :1])], 1) @ proj.T)
    return torch.stack(out).contiguous()


def timed(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn`` in seconds after one warm-up call."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_backend(
    backend: str, device: torch.device, res: int, num_tris: int, batch: int, repeats: int
) -> Dict[str, Optional[float]]:
    r = get_rasterizer(backend, device)
    verts, uv, tri = bumpy_sphere(num_tris, device)
    pos = clip_positions(verts, batch)
    gen = torch.Generator(device=device).manual_seed(0)
    tex = torch.rand(1, 256, 256, 3, device=device, generator=gen)
    topo = r.construct_topology_hash(tri)
    resolution = (res, res)
    results: Dict[str, Optional[float]] = {}

    # Fixed inputs for the single-op timings.
    with torch.no_grad():
        rast, rast_db = r.rasterize(pos, tri, resolution)
        tc, tc_da = r.interpolate(uv, rast, tri, rast_db, diff_attrs="all")
    weights = torch.rand(batch, res, res, 4, device=device, generator=gen)

    def op_rasterize():
        p = pos.clone().requires_grad_(True)
        a, b = r.rasterize(p, tri, resolution)
        ((a[..., :2] * weights[..., :2]).sum() + (b * weights).sum()).backward()

    def op_interpolate():
        a = uv.clone().requires_grad_(True)
        ra, rb = rast.clone().requires_grad_(True), rast_db.clone().requires_grad_(True)
        o, d = r.interpolate(a, ra, tri, rb, diff_attrs="all")
        ((o * weights[..., :2]).sum() + (d * weights).sum()).backward()

    def op_texture():
        t = tex.clone().requires_grad_(True)
        u = tc.clone().requires_grad_(True)
        o = r.texture(t, u, tc_da, filter_mode="linear-mipmap-linear")
        (o * weights[..., :3]).sum().backward()

    color = torch.rand(batch, res, res, 3, device=device, generator=gen)

    def op_antialias():
        c, p = color.clone().requires_grad_(True), pos.clone().requires_grad_(True)
        o = r.antialias(c, rast, p, tri, topology_hash=topo)
        (o * weights[..., :3]).sum().backward()

    def op_chain():
        p, t = pos.clone().requires_grad_(True), tex.clone().requires_grad_(True)
        a, b = r.rasterize(p, tri, resolution)
        u, ud = r.interpolate(uv, a, tri, b, diff_attrs="all")
        c = r.texture(t, u, ud, filter_mode="linear-mipmap-linear")
        o = r.antialias(c, a, p, tri, topology_hash=topo)
        (o * weights[..., :3]).sum().backward()

    for name, fn in zip(OPS, (op_rasterize, op_interpolate, op_texture, op_antialias, op_chain)):
        try:
            results[name] = timed(fn, device, repeats)
        except Exception as exc:  # report and go on: one missing op must not hide the others
            if _is_oom(exc):
                results[name] = None
                print(f"    {name}: skipped: out of memory")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            else:
                results[name] = None
                print(f"    {name}: failed ({type(exc).__name__}: {exc})")
    return results


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower() or "can't allocate" in str(exc).lower()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--configs",
        default=None,
        help=f"comma-separated names from {', '.join(CONFIGS)} (default: all on CUDA, 'cpu' on CPU)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = args.configs.split(",") if args.configs else (list(CONFIGS) if device.type == "cuda" else ["cpu"])
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; choose from {', '.join(CONFIGS)}")
    backends = ["torch"] + (["nvdiffrast"] if device.type == "cuda" and nvdiffrast_available() else [])
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    if device.type == "cpu" and hasattr(os, "getloadavg"):  # other processes on the cores skew CPU timings
        hw += f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    print(
        f"device: {device} ({hw}); backends: {', '.join(backends)}; repeats: {args.repeats}; times are fwd+bwd, median"
    )

    for name in names:
        res, num_tris, batch = CONFIGS[name]
        print(f"\n[{name}] {res}x{res}, ~{num_tris} triangles, batch {batch}")
        table = {}
        for backend in backends:
            print(f"  {backend}:")
            try:
                table[backend] = bench_backend(backend, device, res, num_tris, batch, args.repeats)
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                print("    skipped: out of memory")
                table[backend] = {op: None for op in OPS}
            for op in OPS:
                t = table[backend].get(op)
                if t is not None:
                    print(f"    {op:12s} {t * 1e3:10.2f} ms")
        if len(table) == 2:
            print("  ratio torch/nvdiffrast:")
            for op in OPS:
                a, b = table["torch"].get(op), table["nvdiffrast"].get(op)
                if a is not None and b is not None:
                    print(f"    {op:12s} {a / b:10.1f}x")
        if name == "cpu" and table["torch"].get("chain") is not None:
            t = table["torch"]["chain"]
            print(f"  CPU target (chain < 200 ms): {'met' if t < 0.2 else 'NOT met'} ({t * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
