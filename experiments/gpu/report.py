"""Assemble ``OUT_DIR/gpu_report.md`` from the step logs ``run_all.sh`` wrote: the device, each
step's status and time, and the figures each step printed (the tail of its log).

    python experiments/gpu/report.py OUT_DIR [--dry-run]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

TAIL_LINES = 40
# Lines of the GPU tests' output worth quoting: the parity tests' measured differences and the summary.
PARITY = re.compile(r"^\[parity |^\d+ (passed|failed)|passed|failed|error", re.I)


def step_rows(out: Path) -> list:
    rows = []
    for line in (out / "steps.tsv").read_text().splitlines():
        name, status, millis = line.split("\t")
        rows.append((name, status, int(millis) / 1000.0))
    return rows


def quoted(out: Path, name: str) -> str:
    log = out / f"{name}.log"
    if not log.is_file():
        return "(no log)"
    lines = log.read_text(errors="replace").splitlines()
    if name == "gpu_tests":
        picked = [line for line in lines if PARITY.search(line)]
        lines = picked or lines
    return "\n".join(lines[-TAIL_LINES:])


def build_report(out: Path, dry_run: bool) -> str:
    rows = step_rows(out)
    device = (out / "device.txt").read_text().strip() if (out / "device.txt").is_file() else "unknown"
    total = sum(seconds for _, _, seconds in rows)
    lines = [
        "# dmtrec GPU report" + (" (dry run on the CPU: tiny settings, no figure means anything)" if dry_run else ""),
        "",
        "```",
        device,
        "```",
        "",
        f"Steps: {sum(status == 'ok' for _, status, _ in rows)}/{len(rows)} ok, {total:.0f} s in all.",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {status} | {seconds:.1f} |" for name, status, seconds in rows]
    for name, status, _ in rows:
        lines += ["", f"## {name} ({status})", "", "```", quoted(out, name), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    report = build_report(args.out, args.dry_run)
    (args.out / "gpu_report.md").write_text(report)
    print(report.split("\n## ", 1)[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
