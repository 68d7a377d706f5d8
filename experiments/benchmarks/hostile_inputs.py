"""The hostile-input table: realistic bad input against every command that writes a folder.

Each case builds its inputs in a fresh temporary folder, runs ``dmtrec ...`` in a subprocess there
and checks what a user must be able to rely on:

* the exit status (``1`` for a refused input, ``2`` for a usage error, ``0`` where the command must
  work);
* stderr's last line: one line, ``dmtrec CMD: error: ...``, holding the expected words (the option
  or file at fault), and no traceback anywhere;
* the files: the user's own files untouched, no half-written folder, no ``.tmp``/``.old`` leftover.

    python experiments/benchmarks/hostile_inputs.py              # every case (a tiny fit first: ~2 min)
    python experiments/benchmarks/hostile_inputs.py --fast       # the cases that need no fitted run
    python experiments/benchmarks/hostile_inputs.py --only bake  # cases whose name holds "bake"

It prints one row per case (``holds`` or what broke) and exits 1 if any case does not hold. The
suite runs the fast cases (tests/experiments/test_hostile_inputs.py); the next audit starts here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
SPOT = DATA / "meshes" / "spot" / "spot.obj"
PROBE = DATA / "envmaps" / "mud_road_puresky_1k.hdr"
QUICKSTART = REPO / "experiments" / "configs" / "quickstart.yaml"
TINY = REPO / "experiments" / "configs" / "tests" / "tiny_spot.yaml"
USER_FILE = "notes.txt"
USER_TEXT = "the user's own file\n"


@dataclass
class Case:
    """One row: ``args(tmp)`` builds the inputs under ``tmp`` and returns the command's arguments."""

    name: str
    args: Callable[[Path], List[str]]
    words: Sequence[str] = ()  # in stderr's one error line
    status: int = 1  # 1: a refused input; 2: a usage error; 0: must work
    keep: Sequence[str] = ()  # paths under tmp whose files must be unchanged
    absent: Sequence[str] = ()  # paths under tmp that must not exist afterwards
    needs_run: bool = False  # reads the tiny fitted run and its dataset (made once, copied to tmp/run, tmp/views)
    timeout: float = 300.0


@dataclass
class Outcome:
    case: Case
    problems: List[str] = field(default_factory=list)
    seconds: float = 0.0
    last_line: str = ""


def _users_folder(tmp: Path, name: str = "mine") -> Path:
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    (folder / USER_FILE).write_text(USER_TEXT)
    return folder


def _a_file(tmp: Path, name: str) -> Path:
    (tmp / name).write_text(USER_TEXT)
    return tmp / name


def _bake_from(mesh: Path, probe: Path, out: Path, *extra: str) -> List[str]:
    return ["bake", "--mesh", str(mesh), "--probe", str(probe), "--target", "vertex", "--out", str(out), *extra]


def _bake(out: Path, *extra: str) -> List[str]:
    return _bake_from(SPOT, PROBE, out, *extra)


def _lod(out: Path, *extra: str) -> List[str]:
    return ["lod", "--mesh", str(SPOT), "--probe", str(PROBE), "--levels", "0.5", "--out", str(out), *extra]


def _fit(tmp: Path, *extra: str) -> List[str]:
    return ["fit", "-c", str(QUICKSTART), "-c", str(TINY), "--run.output_root", str(tmp / "outputs"), *extra]


def _noise_file(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(bytes(range(256)) * 40)
    return path


def _faceless_obj(tmp: Path) -> Path:
    path = tmp / "faceless.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    return path


def _yaml(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def cases() -> List[Case]:
    """The table. The first nine are the audit's failures of round three (issue 32)."""
    return [
        Case(
            "bake --out a folder of the user's files",
            lambda t: _bake(_users_folder(t)),
            ["mine", "--overwrite"],
            keep=["mine"],
        ),
        Case(
            "fit: two non-ASCII run names, both --ckpt_path last",
            _second_unicode_run,
            status=0,
            keep=["outputs/试验一"],
            needs_run=True,
        ),
        Case(
            "bake --out an existing file",
            lambda t: _bake(_a_file(t, "result")),
            ["result", "is a file"],
            keep=["result"],
        ),
        Case(
            "export --out an existing file",
            lambda t: ["export", "--ckpt", str(_a_file(t, "x.ckpt")), "--out", str(_a_file(t, "exported"))],
            ["exported", "is a file"],
            keep=["exported"],
        ),
        Case(
            "eval RUN --reference a file of random bytes",
            lambda t: ["eval", str(t / "run"), "--reference", str(_noise_file(t, "noise.obj")), "--wandb", "disabled"],
            ["noise.obj"],
            keep=["run/eval", "run/metrics.json"],
            needs_run=True,
        ),
        Case(
            "eval RUN --reference a mesh with no faces",
            lambda t: ["eval", str(t / "run"), "--reference", str(_faceless_obj(t)), "--wandb", "disabled"],
            ["faceless.obj", "no triangles"],
            keep=["run/eval"],
            needs_run=True,
        ),
        Case("lod --texture-res 0", lambda t: _lod(t / "lod", "--texture-res", "0"), ["--texture-res"], absent=["lod"]),
        Case(
            "lod --probe-res 16",
            lambda t: _lod(t / "lod", "--probe-res", "16"),
            ["--probe-res", "power of two"],
            absent=["lod"],
        ),
        Case("bake --batch 0", lambda t: _bake(t / "out", "--batch", "0"), ["--batch"], absent=["out"]),
        Case(
            "gpu kit: run_all.sh --dry-run OUT (arguments swapped)",
            lambda t: ["!bash", str(REPO / "experiments" / "gpu" / "run_all.sh"), "--dry-run"],
            ["usage"],
            status=2,
        ),
        # The rest of the table: cases that held in the audit and must keep holding.
        Case(
            "export --out a folder of the user's files",
            lambda t: ["export", "--ckpt", str(_a_file(t, "x.ckpt")), "--out", str(_users_folder(t))],
            ["--overwrite"],
            keep=["mine"],
        ),
        Case(
            "export --ckpt missing",
            lambda t: ["export", "--ckpt", str(t / "gone.ckpt"), "--out", str(t / "o")],
            ["gone.ckpt", "not found"],
            absent=["o"],
        ),
        Case(
            "export --ckpt random bytes",
            lambda t: ["export", "--ckpt", str(_noise_file(t, "n.ckpt")), "--out", str(t / "o")],
            ["n.ckpt"],
            absent=["o"],
        ),
        Case("bake --mesh missing", lambda t: _bake_from(t / "gone.obj", PROBE, t / "o"), ["gone.obj"], absent=["o"]),
        Case(
            "bake --mesh random bytes",
            lambda t: _bake_from(_noise_file(t, "n.obj"), PROBE, t / "o"),
            ["n.obj"],
            absent=["o"],
        ),
        Case(
            "bake --probe random bytes",
            lambda t: _bake_from(SPOT, _noise_file(t, "n.hdr"), t / "o"),
            ["n.hdr"],
            absent=["o"],
        ),
        Case("bake --res 8", lambda t: _bake(t / "o", "--res", "8"), ["--res"], absent=["o"]),
        Case("bake --views 0", lambda t: _bake(t / "o", "--views", "0"), ["--views"], absent=["o"]),
        Case(
            "lod --out a folder of the user's files",
            lambda t: _lod(_users_folder(t)),
            ["--run.overwrite"],
            keep=["mine"],
        ),
        Case("lod --out an existing file", lambda t: _lod(_a_file(t, "lodfile")), ["is a file"], keep=["lodfile"]),
        Case("lod --levels 2", lambda t: _lod(t / "lod", "--levels", "2"), ["--levels"], absent=["lod"]),
        Case(
            "lod --mesh a faceless OBJ",
            lambda t: [
                "lod",
                "--mesh",
                str(_faceless_obj(t)),
                "--probe",
                str(PROBE),
                "--levels",
                "0.5",
                "--out",
                str(t / "lod"),
            ],
            ["faceless.obj"],
            absent=["lod"],
        ),
        Case(
            "make-dataset --out an existing file",
            lambda t: ["make-dataset", "--mesh", str(SPOT), "--probe", str(PROBE), "--out", str(_a_file(t, "ds"))],
            ["is a file"],
            keep=["ds"],
        ),
        Case(
            "make-dataset --out a folder of the user's files",
            lambda t: ["make-dataset", "--mesh", str(SPOT), "--probe", str(PROBE), "--out", str(_users_folder(t))],
            ["--overwrite"],
            keep=["mine"],
        ),
        Case(
            "make-dataset --views 0",
            lambda t: [
                "make-dataset",
                "--mesh",
                str(SPOT),
                "--probe",
                str(PROBE),
                "--views",
                "0",
                "--out",
                str(t / "ds"),
            ],
            ["views"],
            absent=["ds"],
        ),
        Case("fit -c a missing config", lambda t: ["fit", "-c", str(t / "gone.yaml")], ["gone.yaml", "not found"]),
        Case(
            "fit -c a YAML syntax error",
            lambda t: ["fit", "-c", str(_yaml(t, "bad.yaml", "model: [1, 2\n"))],
            ["bad.yaml:2", "YAML"],
        ),
        Case(
            "fit: a run folder that is a file", _fit_into_a_file, ["is a file"], keep=["outputs/taken"], needs_run=True
        ),
        Case(
            "fit: a run folder of the user's files",
            _fit_into_users_folder,
            ["--run.overwrite true"],
            keep=["outputs/mine"],
            needs_run=True,
        ),
        Case(
            "fit --data.nerf_synthetic.path missing",
            lambda t: _fit(t, "--data.nerf_synthetic.path", str(t / "gone")),
            ["gone"],
            absent=["outputs/tiny_spot"],
        ),
        Case(
            "eval: a run folder without config.yaml",
            lambda t: ["eval", str(_users_folder(t))],
            ["config.yaml"],
            keep=["mine"],
        ),
        Case(
            "eval RUN --out a folder of the user's files",
            lambda t: ["eval", str(t / "run"), "--out", str(_users_folder(t)), "--wandb", "disabled"],
            ["--overwrite"],
            keep=["mine", "run/eval"],
            needs_run=True,
        ),
        Case(
            "eval RUN --grid-views 0",
            lambda t: ["eval", str(t / "run"), "--grid-views", "0", "--wandb", "disabled"],
            ["--grid-views"],
            keep=["run/eval"],
            needs_run=True,
        ),
        Case(
            "eval RUN: a truncated checkpoint",
            lambda t: ["eval", str(_truncate_ckpt(t)), "--wandb", "disabled"],
            ["damaged checkpoint"],
            keep=["run/eval"],
            needs_run=True,
        ),
        Case("an unknown command", lambda t: ["frobnicate"], ["unknown command"], status=2),
    ]


def _tiny_fit(tmp: Path, name: str, *extra: str) -> List[str]:
    """The tiny fit (2 + 1 iterations) on the fitted run's dataset, copied to ``tmp/views``."""
    return _fit(tmp, "--data.nerf_synthetic.path", str(tmp / "views"), "--run.name", name, "--run.wandb", "disabled",
                "--model.iters_dmtet", "2", "--model.iters_mesh", "1", "--model.material.texture_res", "16",
                *extra)  # fmt: skip


def _second_unicode_run(tmp: Path) -> List[str]:
    """The audit's run-name case: a run named 试验一 exists when 试验二 starts with --ckpt_path
    last; both used to map to the folder ``run``, the second resuming and overwriting the first."""
    first = tmp / "outputs" / "试验一"
    first.mkdir(parents=True)
    (first / "config.yaml").write_text("# the first run's\n")
    return _tiny_fit(tmp, "试验二", "--ckpt_path", "last")


def _fit_into_a_file(tmp: Path) -> List[str]:
    (tmp / "outputs").mkdir()
    _a_file(tmp / "outputs", "taken")
    return _tiny_fit(tmp, "taken")


def _fit_into_users_folder(tmp: Path) -> List[str]:
    (tmp / "outputs").mkdir()
    _users_folder(tmp / "outputs")
    return _tiny_fit(tmp, "mine")


def _truncate_ckpt(tmp: Path) -> Path:
    last = tmp / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    return tmp / "run"


def _snapshot(root: Path, paths: Sequence[str]) -> Dict[str, bytes]:
    found = {}
    for rel in paths:
        path = root / rel
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []
        for f in files:
            found[str(f.relative_to(root))] = f.read_bytes()
    return found


def _leftovers(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if ".tmp" in p.name or p.name.endswith(".old"))


def _environment() -> Dict[str, str]:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONSOLE="off", DMTREC_DATA=str(DATA))
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("DMTREC_DEBUG", None)
    return env


def _command(args: List[str]) -> List[str]:
    if args and args[0].startswith("!"):  # a script, not a dmtrec command
        return [args[0][1:], *args[1:]]
    return [sys.executable, "-m", "dmtrec.cli", *args]


def make_run(folder: Path) -> Path:
    """A tiny finished fit with an evaluation, the run that the ``needs_run`` cases read."""
    dataset = folder / "spot_views"
    env = _environment()
    subprocess.run(
        _command(["make-dataset", "--mesh", str(SPOT), "--probe", str(PROBE), "--views", "8", "--res", "32",
                  "--val-views", "1", "--test-views", "2", "--probe-res", "32", "--out", str(dataset)]),
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        _command(["fit", "-c", str(QUICKSTART), "-c", str(TINY), "--data.nerf_synthetic.path", str(dataset),
                  "--run.output_root", str(folder), "--run.name", "run", "--run.wandb", "disabled",
                  "--model.iters_dmtet", "8", "--model.iters_mesh", "4", "--model.material.texture_res", "16"]),
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        _command(["eval", str(folder / "run"), "--wandb", "disabled"]), check=True, env=env, capture_output=True
    )
    return folder / "run"


def run_case(case: Case, tmp: Path, run: Optional[Path]) -> Outcome:
    outcome = Outcome(case)
    if case.needs_run:
        if run is None:
            outcome.problems.append("needs the fitted run (not made with --fast)")
            return outcome
        shutil.copytree(run, tmp / "run")
        shutil.copytree(run.parent / "spot_views", tmp / "views")
    args = case.args(tmp)
    before = _snapshot(tmp, case.keep)
    start = time.perf_counter()
    try:
        result = subprocess.run(
            _command(args), cwd=tmp, env=_environment(), capture_output=True, text=True, timeout=case.timeout
        )
    except subprocess.TimeoutExpired:
        outcome.problems.append(f"no answer within {case.timeout:.0f} s")
        return outcome
    outcome.seconds = time.perf_counter() - start
    err_lines = [line for line in result.stderr.splitlines() if line.strip()]
    outcome.last_line = err_lines[-1] if err_lines else ""
    if "Traceback" in result.stderr:
        outcome.problems.append("traceback on stderr")
    if result.returncode != case.status:
        outcome.problems.append(f"exit {result.returncode}, expected {case.status}")
    if case.status == 1:
        errors = [line for line in err_lines if ": error:" in line]
        if len(errors) != 1 or errors[0] != outcome.last_line:
            outcome.problems.append("not one error line at the end of stderr")
    missing = [w for w in case.words if w not in outcome.last_line and w not in result.stderr[-2000:]]
    if missing:
        outcome.problems.append(f"error does not name {missing}")
    if case.args is _second_unicode_run and result.returncode == 0:
        metrics = tmp / "outputs" / "试验二" / "metrics.json"
        if not metrics.is_file() or json.loads(metrics.read_text()).get("run_name") != "试验二":
            outcome.problems.append("the second run has no folder of its own, or metrics.json lacks its name")
    if _snapshot(tmp, case.keep) != before:
        outcome.problems.append("the user's files changed")
    outcome.problems += [f"{rel} exists" for rel in case.absent if (tmp / rel).exists()]
    outcome.problems += [f"leftover {p}" for p in _leftovers(tmp)]
    return outcome


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="only the cases that need no fitted run")
    parser.add_argument("--only", help="only the cases whose name holds this text")
    args = parser.parse_args(argv)
    table = [c for c in cases() if not (args.fast and c.needs_run) and (not args.only or args.only in c.name)]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="dmtrec-hostile-") as scratch:
        scratch = Path(scratch)
        run = make_run(scratch / "fitted") if any(c.needs_run for c in table) else None
        for index, case in enumerate(table):
            tmp = scratch / f"case{index:02d}"
            tmp.mkdir()
            outcomes.append(run_case(case, tmp, run))
            verdict = "holds" if not outcomes[-1].problems else "BROKEN: " + "; ".join(outcomes[-1].problems)
            print(f"| {index + 1:2d} | {case.name} | {verdict} | {outcomes[-1].last_line[:110]} |", flush=True)
    broken = sum(bool(o.problems) for o in outcomes)
    print(f"{len(outcomes) - broken} of {len(outcomes)} cases hold")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
