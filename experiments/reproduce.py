"""Run nvdiffrec's paper experiments and tabulate them beside the published numbers.

Scenes are configs under ``experiments/configs`` (``nerf_synthetic/lego``, ``nerd/ehead``,
``spot``, ...) or the groups ``all``, ``nerf_synthetic``, ``nerd``, ``reference``, ``known_geometry``. Each run
writes ``<output root>/<scene with / as ->/metrics.json`` (the folder the cluster templates use
too), and the table reads them back.

    # one after the other on this machine, then the table (extra args after -- go to `dmtrec fit`)
    python experiments/reproduce.py spot bob --nerf-synthetic /data/nerf_synthetic \\
        -- --model.iters_dmtet 200 --model.iters_mesh 50
    # SLURM: print the sbatch commands (--submit runs them); collect later
    python experiments/reproduce.py all --cluster
    python experiments/reproduce.py all --collect --table outputs/reproduction.md

Published numbers come from ``experiments/paper_numbers.yaml`` (with their source); a run that did
not write metrics.json is marked (unfinished, failed, not run or skipped, with the reason).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"
PAPER_NUMBERS = REPO / "experiments" / "paper_numbers.yaml"
SBATCH = "experiments/cluster/single_scene.sbatch"

NERF_SYNTHETIC = tuple(
    f"nerf_synthetic/{s}" for s in ("chair", "drums", "ficus", "hotdog", "lego", "materials", "mic", "ship")
)
NERD = ("nerd/ehead", "nerd/gold")
REFERENCE = ("spot", "bob")
KNOWN_GEOMETRY = ("spot_known_geometry_plastic", "spot_known_geometry_metal")
SCENES = NERF_SYNTHETIC + NERD + REFERENCE + KNOWN_GEOMETRY
GROUPS = {
    "all": SCENES,
    "nerf_synthetic": NERF_SYNTHETIC,
    "nerd": NERD,
    "reference": REFERENCE,
    "known_geometry": KNOWN_GEOMETRY,
}
# Environment variable holding each group's dataset root (the configs read ${VAR}/<scene folder>).
DATASET_ENV = {
    "nerf_synthetic": "DMTREC_NERF_SYNTHETIC",
    "nerd": "DMTREC_NERD",
    "known_geometry": "DMTREC_KNOWN_GEOMETRY",
}
GROUP_TITLES = {
    "nerf_synthetic": "NeRF-synthetic: test views, PSNR (dB) and SSIM in sRGB (nvdiffrec's convention)",
    "nerd": "NeRD: test views, PSNR (dB) and SSIM",
    "reference": (
        "Reference meshes: Chamfer L1 and F-score@0.01 against the reference, both normalised by "
        "the reference's longest bounding-box side; PSNR on the test orbit views"
    ),
    "known_geometry": (
        "Known geometry (Spot, path-traced views, positions locked): materials and light only; test PSNR (dB) and SSIM"
    ),
}


def group_of(scene: str) -> str:
    if scene in KNOWN_GEOMETRY:
        return "known_geometry"
    return scene.split("/", 1)[0] if "/" in scene else "reference"


def run_name(scene: str) -> str:
    """The run folder name, as experiments/cluster/common.sh derives it."""
    return scene.replace("/", "-")


def config_path(scene: str) -> Path:
    return CONFIGS / f"{scene}.yaml"


def resolve_scenes(names: Sequence[str]) -> List[str]:
    """Scenes named on the command line (groups expanded, order kept, duplicates dropped).

    Raises:
        ValueError: a name that is neither a scene nor a group.
    """
    out: List[str] = []
    for name in names:
        name = name[:-5] if name.endswith(".yaml") else name
        if name in GROUPS:
            out += GROUPS[name]
        elif name in SCENES:
            out.append(name)
        else:
            raise ValueError(
                f"scene {name!r}: unknown; choose from {', '.join(SCENES)} or the groups {', '.join(GROUPS)}"
            )
    return list(dict.fromkeys(out))


def read_config(scene: str) -> dict:
    """The scene's config as written (environment variables not expanded)."""
    path = config_path(scene)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config of scene {scene!r} not found")
    return yaml.safe_load(path.read_text()) or {}


def data_path(scene: str) -> str:
    """The dataset folder of the scene's config as written (its kind's ``data.<kind>.path``)."""
    data = read_config(scene)["data"]
    return data[data["kind"]]["path"]


def planned_iterations(scene: str) -> int:
    model = read_config(scene).get("model", {})
    passes = model.get("passes", "both")
    dmtet, mesh = int(model.get("iters_dmtet", 0)), int(model.get("iters_mesh", 0))
    return {"dmtet": dmtet, "mesh": mesh}.get(passes, dmtet + mesh)


def dataset_skip_reason(scene: str, env: Dict[str, str]) -> Optional[str]:
    """Why the scene's dataset is not reachable from ``env`` on this machine, or None."""
    var = DATASET_ENV.get(group_of(scene))
    if var is None:
        return None
    if not env.get(var):
        return f"dataset root not set: export {var} or pass --{var[7:].lower().replace('_', '-')}"
    path = Path(env[var]) / data_path(scene).rsplit("/", 1)[-1]
    if not path.is_dir():
        return f"dataset folder {path} not found"
    return None


# ---------------------------------------------------------------------- commands
def fit_command(scene: str, output_root: str, overrides: Sequence[str]) -> List[str]:
    """The local ``dmtrec fit`` command; ``--ckpt_path last`` resumes an interrupted run."""
    return [
        sys.executable,
        "-m",
        "dmtrec.cli",
        "fit",
        "-c",
        str(config_path(scene).relative_to(REPO)),
        "--run.name",
        run_name(scene),
        "--run.output_root",
        output_root,
        "--ckpt_path",
        "last",
        *overrides,
    ]


def sbatch_command(scene: str, overrides: Sequence[str]) -> List[str]:
    """The SLURM submission (the template resumes and names the run folder like :func:`run_name`)."""
    return ["sbatch", SBATCH, scene, *overrides]


def run_local(
    scenes: Sequence[str], output_root: str, overrides: Sequence[str], env: Dict[str, str], dry_run: bool = False
) -> Dict[str, str]:
    """Run the scenes one after the other; returns the scenes that did not end well, with why."""
    problems: Dict[str, str] = {}
    for scene in scenes:
        reason = dataset_skip_reason(scene, env)
        if reason:
            problems[scene] = f"skipped: {reason}"
            print(f"[reproduce] {scene}: skipped ({reason})", flush=True)
            continue
        command = fit_command(scene, output_root, overrides)
        print(f"[reproduce] {scene}: {shlex.join(command)}", flush=True)
        if dry_run:
            continue
        code = subprocess.run(command, cwd=REPO, env=env).returncode
        if code != 0:
            problems[scene] = f"failed (exit {code})"
            print(f"[reproduce] {scene}: failed with exit status {code}; continuing", flush=True)
    return problems


def run_cluster(
    scenes: Sequence[str], output_root: str, overrides: Sequence[str], env: Dict[str, str], submit: bool
) -> Dict[str, str]:
    """Print (and with ``submit`` run) one sbatch per scene; returns the scenes whose sbatch failed."""
    problems: Dict[str, str] = {}
    prefix = [
        f"{var}={shlex.quote(env[var])}"
        for var in ("DMTREC_OUTPUT_ROOT", *DATASET_ENV.values(), "DMTREC_DATA")
        if env.get(var)
    ]
    for scene in scenes:
        command = sbatch_command(scene, overrides)
        print(" ".join(prefix + [shlex.join(command)]), flush=True)
        if submit:
            code = subprocess.run(command, cwd=REPO, env=env).returncode
            if code != 0:
                problems[scene] = f"sbatch failed (exit {code})"
    return problems


# ---------------------------------------------------------------------- collection
@dataclass
class RunResult:
    """One scene's outcome: ``status`` is finished, unfinished, failed, skipped or not run."""

    scene: str
    status: str
    metrics: Optional[dict] = None
    detail: str = ""


def collect(scenes: Sequence[str], output_root: Path, problems: Optional[Dict[str, str]] = None) -> List[RunResult]:
    """Read ``<output_root>/<run>/metrics.json`` of each scene.

    A run folder without metrics.json is "unfinished" (FinalizeRun writes it only after the last
    iteration); ``problems`` (from this invocation's runs) names failed or skipped scenes.
    """
    problems = problems or {}
    results = []
    for scene in scenes:
        folder = Path(output_root) / run_name(scene)
        metrics_file = folder / "metrics.json"
        problem = problems.get(scene)
        if metrics_file.is_file() and not (problem and problem.startswith("failed")):
            try:
                metrics = json.loads(metrics_file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                results.append(RunResult(scene, "unfinished", detail=f"unreadable metrics.json ({exc})"))
                continue
            results.append(RunResult(scene, "finished", metrics))
        elif problem:
            status = "skipped" if problem.startswith("skipped") else "failed"
            detail = problem.split(": ", 1)[-1] if status == "skipped" else problem
            results.append(RunResult(scene, status, detail=detail))
        elif folder.is_dir():
            has_ckpt = (folder / "checkpoints" / "last.ckpt").is_file()
            results.append(
                RunResult(
                    scene, "unfinished", detail="checkpoint but no metrics.json" if has_ckpt else "no metrics.json"
                )
            )
        else:
            results.append(RunResult(scene, "not run"))
    return results


def load_paper_numbers(path: Path = PAPER_NUMBERS) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _status_cell(result: RunResult, planned: int) -> str:
    if result.status != "finished":
        return f"**{result.status}**" + (f": {result.detail}" if result.detail else "")
    done = result.metrics.get("iterations")
    if done is not None and done < planned:
        return f"finished, reduced ({done}/{planned} it)"
    return "finished"


def _minutes(metrics: Optional[dict]) -> str:
    seconds = (metrics or {}).get("fit_seconds_this_session")
    return "n/a" if seconds is None else f"{seconds / 60:.1f}"


def _metric(result: RunResult, key: str):
    return result.metrics.get(key) if result.status == "finished" else None


def _mean(values: List[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def results_table(results: Sequence[RunResult], paper: dict, note: str = "") -> str:
    """The Markdown report: one table per scene group, ours beside the published numbers."""
    paper_scenes, paper_groups = paper.get("scenes") or {}, paper.get("groups") or {}
    lines = [
        "# dmtrec reproduction of nvdiffrec",
        "",
        f'Published numbers: {paper["citation"].strip()}; "n/a" where no published value was '
        "transcribed (experiments/paper_numbers.yaml lists the sources).",
        "",
    ]
    if note:
        lines += [note, ""]
    by_group: Dict[str, List[RunResult]] = {}
    for result in results:
        by_group.setdefault(group_of(result.scene), []).append(result)
    for group in ("nerf_synthetic", "nerd", "reference", "known_geometry"):
        rows = by_group.get(group)
        if not rows:
            continue
        lines += [f"## {GROUP_TITLES[group]}", ""]
        if group == "reference":
            columns = [
                ("Chamfer L1", "geometry_chamfer_l1", "chamfer_l1", 5),
                ("F@0.01", "geometry_f_score@0.01", None, 3),
                ("PSNR", "test_psnr", "psnr", 2),
            ]
        else:
            columns = [("PSNR", "test_psnr", "psnr", 2), ("SSIM", "test_ssim", "ssim", 4)]
        header = ["scene", "status"]
        for title, _, paper_key, _ in columns:
            header += [title] + ([f"{title} (paper)"] if paper_key else [])
        header += ["triangles", "fit min"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for result in rows:
            published = paper_scenes.get(result.scene) or {}
            cells = [result.scene, _status_cell(result, planned_iterations(result.scene))]
            for _, key, paper_key, digits in columns:
                cells.append(_fmt(_metric(result, key), digits))
                if paper_key:
                    cells.append(_fmt(published.get(paper_key), digits))
            cells += [str(_metric(result, "triangles") or "n/a"), _minutes(result.metrics)]
            lines.append("| " + " | ".join(cells) + " |")
        finished = [r for r in rows if r.status == "finished"]
        group_paper = (paper_groups.get(group) or {}).get("mean") or {}
        # Datasets have a published mean; spot and bob are separate demonstrations.
        if group in DATASET_ENV and group != "known_geometry" and len(rows) > 1 and (finished or group_paper):
            cells = [f"mean ({len(finished)}/{len(rows)} finished)", ""]
            for _, key, paper_key, digits in columns:
                cells.append(_fmt(_mean([_metric(r, key) for r in finished]), digits))
                if paper_key:
                    cells.append(_fmt(group_paper.get(paper_key), digits))
            lines.append("| " + " | ".join(cells + ["", ""]) + " |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------- command line
def _split_overrides(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="experiments/reproduce.py",
        description="Run nvdiffrec's experiments (locally or on SLURM) and write the comparison table. "
        "Arguments after -- go to every `dmtrec fit`.",
    )
    parser.add_argument(
        "scenes", nargs="*", default=["all"], help=f"scenes or groups ({', '.join(GROUPS)}); default all"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--cluster", action="store_true", help="print one sbatch command per scene (see --submit)")
    mode.add_argument("--collect", action="store_true", help="only read metrics.json files and write the table")
    parser.add_argument("--submit", action="store_true", help="with --cluster: run the sbatch commands")
    parser.add_argument("--dry-run", action="store_true", help="local mode: print the commands, run nothing")
    parser.add_argument(
        "--output-root",
        default=os.environ.get("DMTREC_OUTPUT_ROOT", "outputs"),
        help="parent of the run folders (default $DMTREC_OUTPUT_ROOT or outputs)",
    )
    parser.add_argument("--nerf-synthetic", help="NeRF-synthetic root (sets DMTREC_NERF_SYNTHETIC)")
    parser.add_argument("--nerd", help="NeRD root (sets DMTREC_NERD)")
    parser.add_argument("--known-geometry", help="root of the path-traced Spot datasets (sets DMTREC_KNOWN_GEOMETRY)")
    parser.add_argument("--data", help="data root for spot/bob and the probe (sets DMTREC_DATA)")
    parser.add_argument("--table", help="write the Markdown table here (default <output root>/reproduction.md)")
    parser.add_argument("--note", default="", help="a line printed under the title, e.g. the hardware used")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    own, overrides = _split_overrides(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(own)
    if args.submit and not args.cluster:
        parser.error("--submit goes with --cluster")
    try:
        scenes = resolve_scenes(args.scenes)
    except ValueError as exc:
        parser.error(str(exc))
    env = dict(os.environ)
    for var, value in (
        ("DMTREC_NERF_SYNTHETIC", args.nerf_synthetic),
        ("DMTREC_NERD", args.nerd),
        ("DMTREC_KNOWN_GEOMETRY", args.known_geometry),
        ("DMTREC_DATA", args.data),
    ):
        if value:
            env[var] = str(Path(value).expanduser().resolve())
    if args.output_root != "outputs":
        env["DMTREC_OUTPUT_ROOT"] = args.output_root

    problems: Dict[str, str] = {}
    if args.cluster:
        run_cluster(scenes, args.output_root, overrides, env, submit=args.submit)
        return 0
    if not args.collect:
        problems = run_local(scenes, args.output_root, overrides, env, dry_run=args.dry_run)
        if args.dry_run:
            return 0
    results = collect(scenes, Path(args.output_root), problems)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    note = f"Runs under `{args.output_root}/`, collected {stamp}." + (f" {args.note}" if args.note else "")
    table = results_table(results, load_paper_numbers(), note=note)
    out = Path(args.table or Path(args.output_root) / "reproduction.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table)
    print(f"[reproduce] table written to {out}")
    return 0 if all(r.status == "finished" for r in results if r.status != "skipped") else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run from a checkout without `pip install -e .`
    sys.exit(main())
