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
            self._start, self._stage = 0.0, None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            sync(device)
            self._stage = pl_module.stage  # read before the module's own hook may start pass 2
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            sync(device)
            elapsed = time.perf_counter() - self._start
            key = "bake" if pl_module.stage != self._stage else pl_module.stage
            self.seconds[key].append(elapsed)
            if key != "bake":
                with torch.no_grad():  # untimed; its memory stays below the step's own peak
                    self.triangles[key] = int(pl_module.geometry.mesh().num_faces)
            if device.type == "cuda":
                self.peak_bytes[key] = max(self.peak_bytes.get(key, 0), torch.cuda.max_memory_allocated(device))
                torch.cuda.reset_peak_memory_stats(device)

    return IterationTimer()


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
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per pass")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations at the start of each pass")
    parser.add_argument("--full-iters", type=int, default=5000, help="iterations per pass of the projected run")
    parser.add_argument("--init", choices=("sphere", "random"), default="sphere", help="DMTet SDF start")
    parser.add_argument("--rasterizer", default="auto", choices=("auto", "torch", "nvdiffrast"))
    parser.add_argument("--views", type=int, default=16, help="pool of pre-rendered training views")
    parser.add_argument("--probe-res", type=int, default=128, help="reference light faces (dataset only)")
    parser.add_argument(
        "--data",
        default=os.environ.get("DMTREC_DATA", str(REPO / "data")),
        help="data root (Spot mesh and probe; default the repository's data/)",
    )
    return parser


def check_args(args: argparse.Namespace) -> None:
    for name in (
        "res",
        "batch",
        "grid",
        "texture_res",
        "light_res",
        "hash_table",
        "iters",
        "views",
        "probe_res",
        "full_iters",
    ):
        if getattr(args, name) < 1:
            raise SystemExit(f"fit_speed: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise SystemExit(f"fit_speed: --warmup must be >= 0, got {args.warmup}")
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
    from dmtrec.systems.pipeline import ReconstructionSystem

    device = torch.device(args.device)
    per_pass = args.warmup + args.iters
    started = time.perf_counter()
    model = ReconstructionSystem(
        passes="both",
        iters_dmtet=per_pass,
        iters_mesh=per_pass,
        rasterizer=args.rasterizer,
        dmtet={"resolution": args.grid, "scale": 2.4, "init": args.init},
        material={"texture_res": args.texture_res, "volumetric": {"log2_table_size": args.hash_table}},
        light={"init": "constant", "base_res": args.light_res},
    )
    data = ReconDataModule(
        kind="reference_mesh",
        mesh=str(Path(args.data) / "meshes" / "spot" / "spot.obj"),
        probe=str(Path(args.data) / "envmaps" / "mud_road_puresky_1k.hdr"),
        probe_res=args.probe_res,
        resolution=(args.res, args.res),
        views=args.views,
        val_views=1,
        test_views=1,
        batch_size=args.batch,
        background_train="white",
        render_device=str(device),
        render_rasterizer=args.rasterizer,
        prerender=True,
    )
    data.setup("fit")
    tets = int(model.geometry.tets.shape[0])
    setup_seconds = time.perf_counter() - started
    timer = _timer_callback(device)
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
        callbacks=[timer],
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(model, datamodule=data)
    return {"timer": timer, "setup_seconds": setup_seconds, "backend": model.rasterizer.name, "tets": tets}


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    text = f"CPU, {torch.get_num_threads()} torch threads"
    if hasattr(os, "getloadavg"):  # other processes on the cores skew CPU timings
        text += f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    return text


def report(args: argparse.Namespace, result: dict) -> str:
    timer, device = result["timer"], torch.device(args.device)
    lines = [
        f"fit_speed on {args.device} ({hardware(device)}), rasterizer {result['backend']}",
        f"settings: {args.res}x{args.res}, batch {args.batch}, grid {args.grid} ({result['tets']} tets, "
        f"init {args.init}), textures {args.texture_res}^2, light faces {args.light_res}^2, "
        f"hash grid 2^{args.hash_table} entries per level; "
        f"{args.iters} timed iterations per pass after {args.warmup} warm-up",
        f"setup (model + {args.views} pre-rendered views): {result['setup_seconds']:.1f} s",
    ]
    per_iter: Dict[str, Optional[float]] = {}
    for key, title in (("dmtet", "pass 1 (DMTet)"), ("mesh", "pass 2 (mesh) ")):
        timed = timer.seconds[key][args.warmup :]
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
            f"{title}: {per_iter[key]:.3f} s/it median (min {min(timed):.3f}, max {max(timed):.3f}), "
            f"{timer.triangles.get(key, 0)} triangles, {memory}"
        )
    bake = timer.seconds["bake"][0] if timer.seconds["bake"] else 0.0
    bake_memory = f", peak GPU memory {timer.peak_bytes['bake'] / 2**30:.2f} GiB" if "bake" in timer.peak_bytes else ""
    lines.append(f"bake (pass 1 -> 2, with its first pass-2 step): {bake:.1f} s{bake_memory}")
    lines.append(f"peak host memory (process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if per_iter["dmtet"] is not None and per_iter["mesh"] is not None:
        total = args.full_iters * (per_iter["dmtet"] + per_iter["mesh"]) + bake
        lines.append(
            f"projected run of {args.full_iters} + {args.full_iters} iterations at these settings: "
            f"{total / 3600:.2f} h ({total / 60:.1f} min; training steps and bake only, without "
            "validation, setup and export)"
        )
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
