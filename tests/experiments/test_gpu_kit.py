"""experiments/gpu/: the one-call GPU kit. Its dry run executes every step on the CPU with tiny
settings (so the kit cannot rot between the rare sessions that get a GPU), and the report
quotes every step."""

from __future__ import annotations

import os
import subprocess

import pytest
from common import REPO, subprocess_env
from gpu.report import build_report

KIT = REPO / "experiments" / "gpu"
STEPS = ("install", "nvdiffrast_compile", "gpu_tests", "bench_raster", "bench_shading", "bench_dmtet",
         "bench_fit_speed", "fit_spot")  # fmt: skip


def test_report_quotes_each_step_and_the_parity_lines(tmp_path):
    (tmp_path / "device.txt").write_text("device NVIDIA H200 139 GiB CUDA 13.0\n")
    (tmp_path / "steps.tsv").write_text("gpu_tests\tok\t12500\nbench_raster\ttimeout\t90000\n")
    (tmp_path / "gpu_tests.log").write_text("collecting\n[parity rasterize/x] uv_max=1e-6\nnoise\n3 passed in 9s\n")
    (tmp_path / "bench_raster.log").write_text("medium: chain 1.2 ms\n")
    report = build_report(tmp_path, dry_run=False)
    assert "NVIDIA H200" in report and "Steps: 1/2 ok, 102 s in all." in report
    assert "| bench_raster | timeout | 90.0 |" in report
    assert "[parity rasterize/x] uv_max=1e-6" in report and "noise" not in report
    assert "medium: chain 1.2 ms" in report


@pytest.mark.slow
def test_dry_run_runs_every_step(tmp_path):
    out = tmp_path / "gpu"
    result = subprocess.run(["bash", str(KIT / "run_all.sh"), str(out), "--dry-run"], cwd=tmp_path,
                            env=subprocess_env(), capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    assert [row[0] for row in rows] == list(STEPS)
    failed = {name: (out / f"{name}.log").read_text()[-1500:] for name, status, _ in rows if status != "ok"}
    assert not failed, failed
    report = (out / "gpu_report.md").read_text()
    assert report.startswith("# dmtrec GPU report (dry run")
    assert all(f"| {name} | ok |" in report for name in STEPS)


USAGE = "usage: run_all.sh OUT_DIR [--dry-run]"


def _kit(args, cwd, **env):
    return subprocess.run(["bash", str(KIT / "run_all.sh"), *args], cwd=cwd, env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [[], ["--dry-run"], ["--bogus", "out"], ["out", "--dry-run", "--fast"], ["out", "out2"], ["--dryrun", "out"]],
    ids=["nothing", "no-out", "unknown-first", "unknown-last", "two-outs", "misspelt-flag"],
)
def test_bad_arguments_print_the_usage_line_and_run_nothing(args, tmp_path):
    """Issue 32: ``--dry-run OUT`` used to run every step with ``--dry-run`` as the output
    folder. Anything the kit does not know stops it before the first step and the first folder."""
    result = _kit(args, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == USAGE
    assert "== " not in result.stdout  # no step announced
    assert list(tmp_path.iterdir()) == []  # no output folder made


@pytest.mark.parametrize("order", ["out-first", "flag-first"])
def test_dry_run_takes_its_arguments_in_either_order(order, tmp_path):
    """Either order runs the dry run's steps (the CPU commands, not the GPU ones) into OUT. A
    fake ``python3`` that only echoes its arguments stands in for every step, so this runs in
    a second; test_dry_run_runs_every_step runs them for real."""
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "python3 $*"\n')
    fake.chmod(0o755)
    out = tmp_path / "gpu"
    args = [str(out), "--dry-run"] if order == "out-first" else ["--dry-run", str(out)]
    result = _kit(args, tmp_path, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    assert [(row[0], row[1]) for row in rows] == [(name, "ok") for name in STEPS]
    assert "--device cpu" in (out / "bench_raster.log").read_text()
    fit = (out / "fit_spot.log").read_text()
    assert fit.startswith("python3 -m dmtrec.cli fit") and "--trainer.accelerator gpu" not in fit
    assert f"report: {out}/gpu_report.md" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "gpu"]  # no folder called --dry-run


def test_fetch_wheels_names_what_a_bare_cuda_image_lacks():
    text = (KIT / "fetch_wheels.sh").read_text()
    for package in ("xatlas", "jsonargparse[signatures]", "diffrp-nvdiffrast", "trimesh", "pygltflib"):
        assert package in text
    assert "--no-deps" in text and "--python-version 3.12" in text
    assert ".whl/" in (REPO / ".gitignore").read_text()
