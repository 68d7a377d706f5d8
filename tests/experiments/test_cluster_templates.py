"""The SLURM templates and sweep wrapper, run with stub `srun`/`dmtrec` commands (no SLURM, no wandb)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "experiments" / "cluster"
SCRIPTS = ["common.sh", "single_scene.sbatch", "array.sbatch", "sweep_run.sh"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_parse(name):
    subprocess.run(["bash", "-n", str(CLUSTER / name)], check=True)


@pytest.mark.parametrize("name", ["single_scene.sbatch", "array.sbatch"])
def test_sbatch_templates_request_sigusr1_and_requeue(name):
    text = (CLUSTER / name).read_text()
    assert "#SBATCH --signal=SIGUSR1@90" in text and "#SBATCH --requeue" in text


@pytest.fixture
def repo(tmp_path):
    """A fake repository root with two scene configs and stub srun/dmtrec that record their arguments."""
    for scene in ("nerf_synthetic/lego", "spot"):
        config = tmp_path / "experiments" / "configs" / f"{scene}.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("{}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("srun", "dmtrec"):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/bash\necho "{tool} $*" >> "$CALLS"\n[[ {tool} == srun ]] && exec "$@"\nexit 0\n')
        stub.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls"),
        "HOME": str(tmp_path),
    }
    return tmp_path, env


def run_bash(repo, env, script, extra_env=None):
    root, base = repo
    result = subprocess.run(
        ["bash", "-c", script], cwd=root, env={**base, **(extra_env or {})}, capture_output=True, text=True
    )
    calls = (root / "calls").read_text().splitlines() if (root / "calls").exists() else []
    return result, calls


def test_run_scene_resumes_from_last_then_from_a_newer_hpc_checkpoint(repo):
    root, _ = repo
    source = f"source {CLUSTER / 'common.sh'} && run_scene nerf_synthetic/lego --trainer.max_steps 5"
    result, calls = run_bash(repo, repo[1], source)
    assert result.returncode == 0, result.stderr
    assert calls == [
        "srun dmtrec fit -c experiments/configs/nerf_synthetic/lego.yaml --run.name nerf_synthetic-lego "
        "--run.output_root outputs --ckpt_path last --trainer.max_steps 5",
        "dmtrec fit -c experiments/configs/nerf_synthetic/lego.yaml --run.name nerf_synthetic-lego "
        "--run.output_root outputs --ckpt_path last --trainer.max_steps 5",
    ]
    run_dir = root / "outputs" / "nerf_synthetic-lego"
    (run_dir / "checkpoints").mkdir(parents=True)
    last, hpc = run_dir / "checkpoints" / "last.ckpt", run_dir / "hpc_ckpt_1.ckpt"
    last.write_text("")
    hpc.write_text("")
    os.utime(last, (1000, 1000))
    os.utime(hpc, (2000, 2000))
    resume = f"source {CLUSTER / 'common.sh'} && resume_checkpoint outputs/nerf_synthetic-lego"
    assert run_bash(repo, repo[1], resume)[0].stdout.strip() == "outputs/nerf_synthetic-lego/hpc_ckpt_1.ckpt"
    os.utime(last, (3000, 3000))  # a periodic checkpoint written after the hpc one wins
    assert run_bash(repo, repo[1], resume)[0].stdout.strip() == "last"


def test_run_scene_names_a_missing_config(repo):
    result, calls = run_bash(repo, repo[1], f"source {CLUSTER / 'common.sh'} && run_scene nerf_synthetic/nope")
    assert result.returncode == 2 and "experiments/configs/nerf_synthetic/nope.yaml: config not found" in result.stderr
    assert calls == []


def test_array_runs_the_scene_of_its_task_and_rejects_out_of_range_tasks(repo):
    result, calls = run_bash(
        repo,
        repo[1],
        f"bash {CLUSTER / 'array.sbatch'}",
        {"SLURM_ARRAY_TASK_ID": "11", "DMTREC_VENV": str(repo[0] / "venv")},
    )
    # no venv in the fake repo: the template must stop there rather than run without its environment
    assert result.returncode != 0 and calls == []
    venv = repo[0] / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text("")
    (repo[0] / "experiments" / "cluster").mkdir()
    shutil.copy(CLUSTER / "common.sh", repo[0] / "experiments" / "cluster" / "common.sh")
    (repo[0] / "experiments" / "configs" / "bob.yaml").write_text("{}\n")
    result, calls = run_bash(
        repo,
        repo[1],
        f"bash {CLUSTER / 'array.sbatch'}",
        {"SLURM_ARRAY_TASK_ID": "11", "DMTREC_VENV": str(repo[0] / "venv")},
    )
    assert result.returncode == 0, result.stderr
    assert calls[0].startswith("srun dmtrec fit -c experiments/configs/bob.yaml --run.name bob ")
    result, _ = run_bash(
        repo,
        repo[1],
        f"bash {CLUSTER / 'array.sbatch'}",
        {"SLURM_ARRAY_TASK_ID": "14", "DMTREC_VENV": str(repo[0] / "venv")},
    )
    assert result.returncode == 2 and "only 14 scenes" in result.stderr


def test_array_range_and_sweep_cover_the_same_scenes():
    text = (CLUSTER / "array.sbatch").read_text()
    scenes = re.search(r"SCENES=\(([^)]*)\)", text).group(1).split()
    first, last = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", text).groups())
    assert (first, last) == (0, len(scenes) - 1)
    sweep = yaml.safe_load((CLUSTER / "sweep_reproduction.yaml").read_text())
    assert sweep["parameters"]["scene"]["values"] == scenes
    assert sweep["command"] == ["${program}", "${args_no_hyphens}"]
    assert os.access(CLUSTER.parent.parent / sweep["program"], os.X_OK)


def test_sweep_run_seeds_the_wandb_id_and_passes_the_seed(repo):
    result, calls = run_bash(
        repo,
        repo[1],
        f"bash {CLUSTER / 'sweep_run.sh'} scene=spot seed=2",
        {"WANDB_RUN_ID": "abc123", "WANDB_PROJECT": "repro"},
    )
    assert result.returncode == 0, result.stderr
    assert calls == [
        "dmtrec fit -c experiments/configs/spot.yaml --run.name sweep-spot-seed2 --run.output_root outputs "
        "--ckpt_path last --seed_everything 2 --run.wandb online --run.project repro"
    ]
    assert (repo[0] / "outputs" / "sweep-spot-seed2" / "wandb_id").read_text().strip() == "abc123"
    bad, _ = run_bash(repo, repo[1], f"bash {CLUSTER / 'sweep_run.sh'} scene=spot")
    assert bad.returncode == 2 and "need scene=... and seed=..." in bad.stderr
