"""Training speed of the two-pass fit: seconds per iteration of pass 1 (DMTet) and pass 2 (fixed
mesh), peak memory, and the projected wall time of a full nvdiffrec-length run.

The defaults are nvdiffrec's NeRF-synthetic settings: 800 x 800 images, batch 8, tet grid 128,
2048^2 textures, 512^2 light faces, 5000 iterations per pass. The dataset is generated: Spot
rendered under the shared probe into a fixed pool of views before timing starts, so loading and
reference rendering are not timed. The run goes through the real Lightning loop (training steps,
optimizer, logging calls), without validation, checkpoints or export.

The DMTet surface starts as a sphere (``--init sphere``, a clean surface like late pass 1 and a
mesh of plausible size for the bake and pass 2); ``--init random`` times nvdiffrec's random start,
whose messy early surfaces are the slow end of pass 1 (and make the bake slow).

    python experiments/benchmarks/fit_speed.py                                # CUDA, nvdiffrec settings
    python experiments/benchmarks/fit_speed.py --device cpu --res 128 --batch 2 --grid 32 \\
        --texture-res 256 --light-res 32 --hash-table 14 --iters 10
    python experiments/benchmarks/fit_speed.py --quickstart --profile 10   # experiments/configs/quickstart.yaml

``--quickstart`` takes the quickstart's settings (CPU, torch rasterizer, 96^2, batch 2, grid 48 with
a sphere start, 256^2 textures, random light with 32^2 faces, 8 hash levels of 2^14 entries, noise
backgrounds). Issue 20's before/after figures (0.11 -> 0.055 s of CPU per pass-1 iteration) were
measured on the earlier quickstart, grid 32 with a random start; to repeat them, give its settings
without ``--quickstart``: ``--device cpu --rasterizer torch --res 96 --batch 2 --grid 32 --init random
--texture-res 256 --light-res 32 --light-init random --hash-table 14 --hash-levels 8 --background noise``.
``--geometry flexicubes`` times FlexiCubes in pass 1 instead (``--grid`` is then its cells per side;
give the quickstart's settings explicitly, as above: ``--quickstart`` sets grid 48).
Besides wall time it reports the process CPU time per iteration (less sensitive to other processes
on a shared machine), and ``--profile N`` prints torch.profiler's operator table
over N pass-1 iterations after the timed ones.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parents[2]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timer_callback(device: torch.device):
    import pytorch_lightning as pl

    class IterationTimer(pl.Callback):
        """Wall time of every training batch, keyed by pass; the batch in which pass 1 hands over
        to pass 2 (bake: unwrap, texture sampling, new optimizer) is kept apart."""

        def __init__(self):
            self.seconds: Dict[str, List[float]] = {"dmtet": [], "bake": [], "mesh": []}
            self.peak_bytes: Dict[str, int] = {}
            self.triangles: Dict[str, int] = {}
            self.triangle_log: Dict[str, List[int]] = {"dmtet": [], "mesh": []}  # per step (--trend)
            self.cpu_seconds: Dict[str, List[float]] = {"dmtet": [], "bake": [], "mesh": []}
            self._start, self._cpu_start, self._stage = 0.0, 0.0, None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            sync(device)
            self._stage = pl_module.stage  # read before the module's own hook may start pass 2
            self._start, self._cpu_start = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            sync(device)
            elapsed, cpu = time.perf_counter() - self._start, time.process_time() - self._cpu_start
            key = "bake" if pl_module.stage != self._stage else pl_module.stage
            self.seconds[key].append(elapsed)
            self.cpu_seconds[key].append(cpu)
            if key != "bake":
                with torch.no_grad():  # untimed; its memory stays below the step's own peak
                    self.triangles[key] = int(pl_module.geometry.mesh().num_faces)
                self.triangle_log[key].append(self.triangles[key])
            if device.type == "cuda":
                self.peak_bytes[key] = max(self.peak_bytes.get(key, 0), torch.cuda.max_memory_allocated(device))
                torch.cuda.reset_peak_memory_stats(device)

    return IterationTimer()


def _profiler_callback(start: int, count: int):
    """torch.profiler over pass-1 iterations ``[start, start + count)`` (after the timed ones)."""
    import pytorch_lightning as pl

    class PassOneProfiler(pl.Callback):
        def __init__(self):
            self.profile, self.iterations = None, 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if pl_module.stage == "dmtet" and pl_module.iteration == start and self.profile is None:
                self.profile = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profile.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.profile is not None and self.iterations < count:
                self.iterations += 1
                if self.iterations == count:
                    self.profile.__exit__(None, None, None)

    return PassOneProfiler()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--res", type=int, default=800, help="training image side (nvdiffrec NeRF-synthetic: 800)")
    parser.add_argument("--batch", type=int, default=8, help="views per iteration (8)")
    parser.add_argument("--grid", type=int, default=128, help="DMTet grid resolution (128)")
    parser.add_argument("--texture-res", type=int, default=2048, help="side of the pass-2 textures (2048)")
    parser.add_argument("--light-res", type=int, default=512, help="light cube-map face side (512)")
    parser.add_argument(
        "--hash-table",
        type=int,
        default=19,
        help="log2 entries per hash-grid level of the pass-1 material (nvdiffrec: 19)",
    )
    parser.add_argument("--hash-levels", type=int, default=16, help="hash-grid levels of the pass-1 material (16)")
    parser.add_argument(
        "--light-init", choices=("constant", "random"), default="constant", help="initial light (constant)"
    )
    parser.add_argument(
        "--background", choices=("white", "noise"), default="white", help="training backgrounds (white)"
    )
    parser.add_argument(
        "--quickstart",
        action="store_true",
        help="the quickstart's settings (overrides the size options): cpu, torch, 96^2, batch 2, "
        "grid 48, sphere init, textures 256^2, random light 32^2, 8 hash levels of 2^14, noise backgrounds",
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="profile this many pass-1 iterations after the timed ones"
    )
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per pass")
    parser.add_argument(
        "--trend",
        type=int,
        default=0,
        help="also split pass 1's timed iterations into this many spans and print each one's CPU s/it and "
        "triangles (whether the cost per step grows more than the mesh)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations at the start of each pass")
    parser.add_argument("--full-iters", type=int, default=5000, help="iterations per pass of the projected run")
    parser.add_argument("--init", choices=("sphere", "random"), default="sphere", help="DMTet SDF start")
    parser.add_argument(
        "--geometry",
        choices=("dmtet", "flexicubes"),
        default="dmtet",
        help="pass-1 geometry (model.geometry); --grid is then FlexiCubes' cells per side",
    )
    parser.add_argument(
        "--weight-lr",
        type=float,
        default=1.0,
        help="FlexiCubes: model.dmtet.weight_lr (1: nvdiffrec, the weights learn; 0: frozen, as the quick start)",
    )
    parser.add_argument("--rasterizer", default="auto", choices=("auto", "torch", "nvdiffrast"))
    parser.add_argument("--views", type=int, default=16, help="pool of pre-rendered training views")
    parser.add_argument("--probe-res", type=int, default=128, help="reference light faces (dataset only)")
    parser.add_argument(
        "--data",
        default=os.environ.get("DMTREC_DATA", str(REPO / "data")),
        help="data root (Spot mesh and probe; default the repository's data/)",
    )
    return parser


QUICKSTART = {
    "device": "cpu",
    "rasterizer": "torch",
    "res": 96,
    "batch": 2,
    "grid": 48,
    "init": "sphere",
    "texture_res": 256,
    "light_res": 32,
    "light_init": "random",
    "hash_table": 14,
    "hash_levels": 8,
    "background": "noise",
}
"""experiments/configs/quickstart.yaml's settings (tests/experiments/test_fit_speed.py checks that they agree)."""


def check_args(args: argparse.Namespace) -> None:
    if args.quickstart:
        for name, value in QUICKSTART.items():
            setattr(args, name, value)
    for name in (
        "res",
        "batch",
        "grid",
        "texture_res",
        "light_res",
        "hash_table",
        "hash_levels",
        "iters",
        "views",
        "probe_res",
        "full_iters",
    ):
        if getattr(args, name) < 1:
            raise SystemExit(f"fit_speed: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0 or args.profile < 0:
        raise SystemExit(f"fit_speed: --warmup and --profile must be >= 0, got {args.warmup}, {args.profile}")
    data = Path(args.data)
    for path in (data / "meshes" / "spot" / "spot.obj", data / "envmaps" / "mud_road_puresky_1k.hdr"):
        if not path.is_file():
            raise SystemExit(
                f"fit_speed: {path} not found (set --data or DMTREC_DATA to a folder with meshes/ and envmaps/)"
            )
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("fit_speed: --device cuda but CUDA is not available; use --device cpu with reduced settings")


def measure(args: argparse.Namespace) -> dict:
    import pytorch_lightning as pl

    from dmtrec.datasets.datamodule import ReconDataModule
    from dmtrec.runs.callbacks import TrainingPassToData
    from dmtrec.systems.pipeline import ReconstructionSystem

    device = torch.device(args.device)
    per_pass = args.warmup + args.iters
    pass_one = per_pass + args.profile
    started = time.perf_counter()
    model = ReconstructionSystem(
        passes="both",
        iters_dmtet=pass_one,
        iters_mesh=per_pass,
        rasterizer=args.rasterizer,
        geometry=args.geometry,
        dmtet={"resolution": args.grid, "scale": 2.4, "init": args.init, "weight_lr": args.weight_lr},
        material={
            "texture_res": args.texture_res,
            "volumetric": {"log2_table_size": args.hash_table, "n_levels": args.hash_levels},
        },
        light={"init": args.light_init, "base_res": args.light_res},
    )
    data = ReconDataModule(
        kind="reference_mesh",
        reference_mesh={
            "mesh": str(Path(args.data) / "meshes" / "spot" / "spot.obj"),
            "probe": str(Path(args.data) / "envmaps" / "mud_road_puresky_1k.hdr"),
            "probe_res": args.probe_res,
            "device": str(device),
            "rasterizer": args.rasterizer,
            "prerender": True,
        },
        resolution=(args.res, args.res),
        views=args.views,
        val_views=1,
        test_views=1,
        batch_size=args.batch,
        shared={"background_train": args.background},
    )
    data.setup("fit")
    geo = model.geometry
    tets = int(geo.tets.shape[0] if args.geometry == "dmtet" else geo.cubes.shape[0])
    setup_seconds = time.perf_counter() - started
    timer = _timer_callback(device)
    profiler = _profiler_callback(per_pass, args.profile)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        # The datamodule hears of the pass switch, as in `dmtrec fit`.
        callbacks=[timer, TrainingPassToData(data)] + ([profiler] if args.profile else []),
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(model, datamodule=data)
    return {
        "timer": timer,
        "setup_seconds": setup_seconds,
        "backend": model.rasterizer.name,
        "tets": tets,
        "profile": profiler.profile if args.profile else None,
    }


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    text = f"CPU, {torch.get_num_threads()} torch threads"
    if hasattr(os, "getloadavg"):  # other processes on the cores skew CPU timings
        text += f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    return text


def trend_lines(timer, warmup: int, iters: int, spans: int) -> List[str]:
    """Pass 1's timed iterations in ``spans`` equal spans: median process CPU s/it, median output
    triangles (eval split) and their ratio, so that growth beyond the mesh's shows."""
    cpu = timer.cpu_seconds["dmtet"][warmup : warmup + iters]
    tri = timer.triangle_log["dmtet"][warmup : warmup + iters]
    lines = ["pass 1 trend (iterations: CPU s/it median, triangles median, CPU ms per 1k triangles):"]
    size = max(1, len(cpu) // spans)
    for start in range(0, len(cpu) - size + 1, size):
        c, t = statistics.median(cpu[start : start + size]), statistics.median(tri[start : start + size])
        per_k = f"{1e3 * c / (t / 1e3):.1f}" if t else "n/a"
        lines.append(f"  {warmup + start:>5}-{warmup + start + size - 1:<5} {c:.3f} s/it {t:>8.0f} triangles {per_k}")
    return lines


def report(args: argparse.Namespace, result: dict) -> str:
    timer, device = result["timer"], torch.device(args.device)
    lines = [
        f"fit_speed on {args.device} ({hardware(device)}), rasterizer {result['backend']}",
        f"settings: {args.res}x{args.res}, batch {args.batch}, {args.geometry} grid {args.grid} "
        + (f"(weight_lr {args.weight_lr}) " if args.geometry == "flexicubes" else "")
        + f"({result['tets']} {'tets' if args.geometry == 'dmtet' else 'cubes'}, "
        f"init {args.init}), textures {args.texture_res}^2, light faces {args.light_res}^2, "
        f"light init {args.light_init}, hash grid {args.hash_levels} levels of 2^{args.hash_table} entries, "
        f"{args.background} backgrounds; "
        f"{args.iters} timed iterations per pass after {args.warmup} warm-up",
        f"setup (model + {args.views} pre-rendered views): {result['setup_seconds']:.1f} s",
    ]
    per_iter: Dict[str, Optional[float]] = {}
    for key, title in (("dmtet", f"pass 1 ({args.geometry})"), ("mesh", "pass 2 (mesh) ")):
        timed = timer.seconds[key][args.warmup : args.warmup + args.iters]
        cpu = timer.cpu_seconds[key][args.warmup : args.warmup + args.iters]
        per_iter[key] = statistics.median(timed) if timed else None
        if not timed:
            lines.append(f"{title}: no timed iterations")
            continue
        memory = (
            f"peak GPU memory {timer.peak_bytes[key] / 2**30:.2f} GiB"
            if key in timer.peak_bytes
            else "peak GPU memory n/a (CPU)"
        )
        lines.append(
            f"{title}: {per_iter[key]:.3f} s/it median (min {min(timed):.3f}, max {max(timed):.3f}; "
            f"process CPU {statistics.median(cpu):.3f} s/it median), "
            f"{timer.triangles.get(key, 0)} triangles, {memory}"
        )
    if args.trend:
        lines += trend_lines(timer, args.warmup, args.iters, args.trend)
    bake = timer.seconds["bake"][0] if timer.seconds["bake"] else 0.0
    bake_memory = f", peak GPU memory {timer.peak_bytes['bake'] / 2**30:.2f} GiB" if "bake" in timer.peak_bytes else ""
    lines.append(f"bake (pass 1 -> 2, with its first pass-2 step): {bake:.1f} s{bake_memory}")
    if hasattr(os, "getloadavg"):
        lines.append("load average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    lines.append(f"peak host memory (process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if per_iter["dmtet"] is not None and per_iter["mesh"] is not None:
        total = args.full_iters * (per_iter["dmtet"] + per_iter["mesh"]) + bake
        lines.append(
            f"projected run of {args.full_iters} + {args.full_iters} iterations at these settings: "
            f"{total / 3600:.2f} h ({total / 60:.1f} min; training steps and bake only, without "
            "validation, setup and export)"
        )
    if result["profile"] is not None:
        table = result["profile"].key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        lines += [f"torch.profiler over {args.profile} pass-1 iterations (self CPU time):", table]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    torch.manual_seed(0)
    print(report(args, measure(args)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run from a checkout without `pip install -e .`
    sys.exit(main())
