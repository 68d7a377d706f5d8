"""Fault injection: SIGKILL a small fit at random points of both passes, resume it, compare.

Each trial starts a fresh run of a small Spot fit (quickstart + tiny_spot, cut down further) in a
subprocess that kills itself with SIGKILL at one point:

* ``iteration:N``  at the start of training step N (pass 1 or pass 2),
* ``checkpoint:N`` in the middle of writing the checkpoint of iteration N (half the bytes are on
  disk under the temporary name, nothing renamed yet),
* ``bake``         in the middle of the pass 1 -> pass 2 bake,
* ``outputs``      in the middle of writing the final outputs (the mesh folder is written, the GLB
  half written, no metrics.json yet).

Then the same command with ``--ckpt_path last`` runs to the end (it finds the dead process's
``run.lock`` and takes it over). The table gives the kill point, the checkpoint the resume
started from, the final iteration count and the final metrics against an uninterrupted run of
the same seed, with the run-to-run noise for scale: the same seed again (0 with
``--trainer.deterministic true``, which every run here uses) and other ``seed_everything`` values
(a resumed run sees its views in another order and redraws its jitter: it is a run of another
seed from the kill point on, so that spread is the yardstick).

    python experiments/benchmarks/faults.py --kills 4          # prints the table
    python experiments/benchmarks/faults.py --kills 10 --iters-dmtet 40 --iters-mesh 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "experiments" / "configs"
KINDS = ("iteration", "checkpoint", "bake", "outputs")
METRICS = ("test_psnr", "geometry_chamfer_l1")


@dataclass
class Settings:
    """The small fit every trial runs."""

    data: Path
    iters_dmtet: int = 16
    iters_mesh: int = 8
    checkpoint_every: int = 4
    extra: Sequence[str] = ()

    @property
    def total(self) -> int:
        return self.iters_dmtet + self.iters_mesh

    def argv(self, root: Path, name: str, seed: int = 0) -> List[str]:
        return [
            "fit",
            "-c",
            str(CONFIGS / "quickstart.yaml"),
            "-c",
            str(CONFIGS / "tests" / "tiny_spot.yaml"),
            "--data.nerf_synthetic.path",
            str(self.data),
            "--data.val_views",
            "1",
            "--data.test_views",
            "2",
            "--data.val_batch_size",
            "2",
            "--run.output_root",
            str(root),
            "--run.name",
            name,
            "--run.wandb",
            "disabled",
            "--run.checkpoint_every",
            str(self.checkpoint_every),
            "--seed_everything",
            str(seed),
            "--model.iters_dmtet",
            str(self.iters_dmtet),
            "--model.iters_mesh",
            str(self.iters_mesh),
            "--model.metric_samples",
            "1000",
            "--model.material.texture_res",
            "16",
            "--trainer.val_check_interval",
            "1000",
            "--trainer.deterministic",
            "true",
            "--trainer.enable_progress_bar",
            "false",
            *self.extra,
        ]


@dataclass
class Trial:
    fault: str
    killed: bool = False
    resumed_from: str = "-"
    took_over_lock: bool = False
    iterations: Optional[int] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    leftovers: List[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- the killed process
def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_fault(fault: str) -> None:
    """Patch the fit so that it SIGKILLs itself at ``fault`` (module docstring)."""
    kind, _, value = fault.partition(":")
    if kind == "iteration":
        from dmtrec.systems.pipeline import ReconstructionSystem

        original_step = ReconstructionSystem.training_step

        def step(self, batch, batch_idx):
            if self.iteration == int(value):
                _die()
            return original_step(self, batch, batch_idx)

        ReconstructionSystem.training_step = step
    elif kind == "checkpoint":
        from dmtrec.runs import checkpoints

        real_save = checkpoints.torch.save

        def save(obj, handle, *args, **kwargs):
            if (obj.get("dmtrec_pipeline") or {}).get("iteration") == int(value):
                real_save(obj, handle, *args, **kwargs)
                handle.truncate(handle.tell() // 2)
                handle.flush()
                os.fsync(handle.fileno())
                _die()
            return real_save(obj, handle, *args, **kwargs)

        checkpoints.torch.save = save
    elif kind == "bake":
        from dmtrec.systems import pipeline

        real_bake = pipeline.bake_volumetric

        def bake(*args, **kwargs):  # the first bake is the pass switch's
            real_bake(*args, **kwargs)
            _die()

        pipeline.bake_volumetric = bake
    elif kind == "outputs":
        from dmtrec.io import gltf

        def write_glb(path, *args, **kwargs):
            Path(path).write_bytes(b"glTF half a file")
            _die()

        gltf.write_glb = write_glb
    else:
        raise ValueError(f"unknown fault {fault!r}; kinds: {', '.join(KINDS)}")


def _child(fault: str, argv: List[str]) -> int:
    if fault:
        install_fault(fault)
    from dmtrec.cli import main

    return main(argv)


# ---------------------------------------------------------------------------- the driver
def _run(argv: List[str], fault: str = "", timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(PYTHONPATH=str(REPO), WANDB_MODE="disabled", WANDB_SILENT="true")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", fault, "--", *argv]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _final(run: Path) -> tuple:
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        return None, {}
    metrics = json.loads(metrics_file.read_text())
    return metrics.get("iterations"), {k: metrics[k] for k in METRICS if metrics.get(k) is not None}


def _leftovers(run: Path) -> List[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if ".tmp" in p.name or p.name == "run.lock")


def uninterrupted(settings: Settings, root: Path, name: str, seed: int = 0) -> Trial:
    done = _run(settings.argv(root, name, seed))
    if done.returncode != 0:
        raise RuntimeError(f"uninterrupted run {name} failed:\n{done.stderr[-3000:]}")
    trial = Trial(fault=f"none (seed {seed}{', again' if name == 'repeat' else ''})")
    trial.iterations, trial.metrics = _final(root / name)
    return trial


def kill_and_resume(settings: Settings, root: Path, name: str, fault: str) -> Trial:
    from dmtrec.runs.checkpoints import CheckpointError, load_checkpoint_file, resume_checkpoint

    trial = Trial(fault=fault)
    argv = settings.argv(root, name)
    killed = _run(argv, fault)
    trial.killed = killed.returncode == -signal.SIGKILL
    if not trial.killed:
        raise RuntimeError(f"{fault}: the run was not killed (exit {killed.returncode}):\n{killed.stderr[-3000:]}")
    run = root / name
    try:
        found = resume_checkpoint(run / "checkpoints")
    except CheckpointError as exc:
        found, trial.resumed_from = None, f"error: {exc}"
    if found is not None:
        iteration = load_checkpoint_file(found)["dmtrec_pipeline"]["iteration"]
        trial.resumed_from = f"{found.name} @ {iteration}"
    elif trial.resumed_from == "-":
        trial.resumed_from = "start (no checkpoint)"
    resumed = _run(argv + ["--ckpt_path", "last"])
    if resumed.returncode != 0:
        raise RuntimeError(f"{fault}: the resume failed:\n{resumed.stderr[-3000:]}")
    trial.took_over_lock = "taking over the lock" in resumed.stderr
    trial.iterations, trial.metrics = _final(run)
    trial.leftovers = _leftovers(run)
    return trial


def pick_faults(settings: Settings, kills: int, seed: int) -> List[str]:
    """``kills`` kill points: one checkpoint write, the bake and the output write first (as far as
    ``kills`` allows), the others at random iterations of both passes."""
    rng = random.Random(seed)
    writes = list(range(settings.checkpoint_every, settings.total, settings.checkpoint_every))
    special = [f"checkpoint:{rng.choice(writes)}", "bake", "outputs"] if writes else ["bake", "outputs"]
    faults = special[:kills]
    while len(faults) < kills:
        faults.append(f"iteration:{rng.randrange(1, settings.total)}")
    return faults


def make_data(folder: Path) -> Path:
    from dmtrec.datasets.make_dataset import make_dataset
    from dmtrec.datasets.reference_mesh import ReferenceRender

    return make_dataset(
        REPO / "data" / "meshes" / "spot" / "spot.obj",
        REPO / "data" / "envmaps" / "mud_road_puresky_1k.hdr",
        views=16,
        res=32,
        out=folder,
        seed=0,
        val_views=1,
        test_views=2,
        render=ReferenceRender(probe_res=32, device="cpu", rasterizer="torch"),
    )


def table(reference: Trial, noise: List[Trial], trials: List[Trial], total: int) -> str:
    def fmt(trial: Trial) -> str:
        cells = []
        for key in METRICS:
            value, ref = trial.metrics.get(key), reference.metrics.get(key)
            cells.append("-" if value is None else f"{value:.4f} ({value - ref:+.4f})")
        return " | ".join(cells)

    lines = [
        "| kill point | resumed from | lock taken over | final iterations | test PSNR (vs uninterrupted) | "
        "Chamfer-L1 (vs uninterrupted) | leftovers |",
        "|---|---|---|---|---|---|---|",
    ]
    for trial in [reference, *noise]:
        lines.append(f"| {trial.fault} | - | - | {trial.iterations} | {fmt(trial)} | - |")
    for trial in trials:
        ok = "" if trial.iterations == total else " (WRONG)"
        lines.append(
            f"| {trial.fault} | {trial.resumed_from} | {'yes' if trial.took_over_lock else 'no'} | "
            f"{trial.iterations}{ok} | {fmt(trial)} | {', '.join(trial.leftovers) or 'none'} |"
        )
    same = sum(t.iterations == total for t in trials)
    lines.append("")
    lines.append(f"{same}/{len(trials)} resumed runs reached iteration {total}.")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=4, help="number of kill points (trials)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    parser.add_argument("--iters-dmtet", type=int, default=16)
    parser.add_argument("--iters-mesh", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--noise-seeds", type=int, default=2, help="other seed_everything values for the noise rows")
    parser.add_argument("--data", type=Path, help="NeRF-synthetic folder (default: a 16-view 32 px Spot set)")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dmtrec-faults-") as scratch:
        root = args.out or Path(scratch)
        data = args.data or make_data(root / "data")
        settings = Settings(data, args.iters_dmtet, args.iters_mesh, args.checkpoint_every)
        started = time.monotonic()
        reference = uninterrupted(settings, root, "reference", seed=0)
        noise = [uninterrupted(settings, root, "repeat", seed=0)]
        noise += [uninterrupted(settings, root, f"seed{s}", seed=s) for s in range(1, 1 + args.noise_seeds)]
        trials = []
        for index, fault in enumerate(pick_faults(settings, args.kills, args.seed)):
            trials.append(kill_and_resume(settings, root, f"trial{index}", fault))
            print(f"  {fault}: done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
        print(table(reference, noise, trials, settings.total))
        print(f"\nload average {os.getloadavg()}, {time.monotonic() - started:.0f} s in all")
        return 0 if all(t.iterations == settings.total for t in trials) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        separator = sys.argv.index("--")
        sys.exit(_child(sys.argv[2], sys.argv[separator + 1 :]))
    sys.exit(main())
