"""Two ``dmtrec`` jobs sharing the machine's cores, against one alone (issue 28's "busy machines").

Runs the same command (default: the quick start, ``dmtrec fit -c experiments/configs/quickstart.yaml``
with its own run names under ``--out``) in three scenarios, one after the other:

- ``alone``: one job;
- ``together``: two jobs launched at the same moment (both interpreters start on an idle machine);
- ``late``: a second job launched ``--late`` seconds after the first (the first has chosen its
  wait policy on an idle machine).

and prints each job's end-to-end wall time, its ratio to the lone job, and the thread policy the
job logged. Thread settings are the command's own: ``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY``,
``GOMP_SPINCOUNT`` and ``DMTREC_THREADS`` are removed from the jobs' environment, unless
``--keep-env``. Run it on an otherwise quiet machine and quote ``uptime`` with the figures::

    python experiments/benchmarks/shared_cores.py --out /tmp/shared_cores
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "DMTREC_THREADS")


def job_command(config: str, out: Path, name: str, extra: List[str]) -> List[str]:
    return [
        sys.executable, "-m", "dmtrec.cli", "fit", "-c", config,
        "--run.name", name, "--run.output_root", str(out), "--run.overwrite", "true", *extra,
    ]  # fmt: skip


def start(command: List[str], env: Dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    job = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    job.started = time.perf_counter()  # type: ignore[attr-defined]
    job.log = log  # type: ignore[attr-defined]
    return job


def finish(job: subprocess.Popen) -> Dict[str, object]:
    code = job.wait()
    wall = time.perf_counter() - job.started  # type: ignore[attr-defined]
    text = Path(job.log).read_text(errors="replace")  # type: ignore[attr-defined]
    policy = re.search(r"dmtrec\.threads: threads: (.*)", text)
    return {"wall": wall, "code": code, "policy": policy.group(1) if policy else "?", "log": job.log}  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/configs/quickstart.yaml")
    parser.add_argument("--out", type=Path, required=True, help="run folders and logs (replaced)")
    parser.add_argument("--late", type=float, default=15.0, help="seconds before the late second job")
    parser.add_argument("--scenarios", nargs="+", default=["alone", "together", "late"])
    parser.add_argument("--keep-env", action="store_true", help="keep the caller's thread variables")
    parser.add_argument("extra", nargs="*", help="more options for each job (after --)")
    args = parser.parse_args()

    env = dict(os.environ)
    if not args.keep_env:
        for key in THREAD_VARIABLES:
            env.pop(key, None)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    with open("/proc/loadavg") as f:
        print(f"load at start: {f.read().strip()}; cores: {len(os.sched_getaffinity(0))}", flush=True)

    rows = []
    alone = None
    for scenario in args.scenarios:
        names = ["a"] if scenario == "alone" else ["a", "b"]
        jobs = []
        for i, name in enumerate(names):
            if scenario == "late" and i == 1:
                time.sleep(args.late)
            run = f"{scenario}_{name}"
            jobs.append(start(job_command(args.config, args.out, run, args.extra), env, args.out / f"{run}.log"))
        for name, job in zip(names, jobs):
            result = finish(job)
            if result["code"] != 0:
                raise SystemExit(f"{scenario}/{name} failed (exit {result['code']}): see {result['log']}")
            if scenario == "alone":
                alone = result["wall"]
            rows.append((scenario, name, result["wall"], result["policy"]))
            print(f"{scenario:9s} {name}  {result['wall']:7.1f} s  {result['policy']}", flush=True)

    print("\n| scenario | job | wall s | / alone | thread policy logged |\n|---|---|---|---|---|")
    for scenario, name, wall, policy in rows:
        ratio = f"{wall / alone:.2f}x" if alone else "-"
        print(f"| {scenario} | {name} | {wall:.1f} | {ratio} | {policy} |")


if __name__ == "__main__":
    main()
