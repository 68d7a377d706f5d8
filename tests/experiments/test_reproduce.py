"""experiments/reproduce.py: scene selection, commands (local and SLURM), collection of
metrics.json files and the Markdown table, with fake runs (nothing trains here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import reproduce  # experiments/reproduce.py (pytest.ini puts experiments/ on the path)
from common import REPO

PAPER = {
    "citation": "Paper et al. (Table 9)",
    "scenes": {"nerf_synthetic/lego": {"psnr": 28.5, "ssim": 0.9}},
    "groups": {"nerf_synthetic": {"mean": {"psnr": 29.05}}},
}


def write_run(root: Path, scene: str, metrics=None, checkpoint=False) -> Path:
    folder = root / reproduce.run_name(scene)
    folder.mkdir(parents=True)
    if metrics is not None:
        (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if checkpoint:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    return folder


def row(table: str, first_cell: str) -> list:
    line = next(l for l in table.splitlines() if l.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_resolve_scenes_expands_groups_in_order_without_duplicates():
    assert reproduce.resolve_scenes(["spot", "reference", "nerd/gold.yaml"]) == ["spot", "bob", "nerd/gold"]
    assert reproduce.resolve_scenes(["all"]) == list(reproduce.SCENES)
    with pytest.raises(ValueError, match="scene 'nerf_synthetic/chiar': unknown"):
        reproduce.resolve_scenes(["nerf_synthetic/chiar"])


def test_fit_command_names_the_run_folder_like_the_cluster_and_resumes():
    command = reproduce.fit_command("nerf_synthetic/lego", "out", ["--model.iters_dmtet", "10"])
    assert command[:4] == [sys.executable, "-m", "dmtrec.cli", "fit"]
    assert command[4:] == [
        "-c",
        "experiments/configs/nerf_synthetic/lego.yaml",
        "--run.name",
        "nerf_synthetic-lego",
        "--run.output_root",
        "out",
        "--ckpt_path",
        "last",
        "--model.iters_dmtet",
        "10",
    ]


def test_cluster_mode_prints_one_sbatch_per_scene(capsys):
    env = {"DMTREC_NERF_SYNTHETIC": "/data/nerf synthetic"}
    problems = reproduce.run_cluster(
        ["nerf_synthetic/lego", "nerd/ehead", "spot"], "outputs", ["--seed_everything", "1"], env, submit=False
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "DMTREC_NERF_SYNTHETIC='/data/nerf synthetic' sbatch experiments/cluster/single_scene.sbatch "
        "nerf_synthetic/lego --seed_everything 1",
        "DMTREC_NERF_SYNTHETIC='/data/nerf synthetic' sbatch experiments/cluster/single_scene.sbatch nerd/ehead "
        "--seed_everything 1",
        "DMTREC_NERF_SYNTHETIC='/data/nerf synthetic' sbatch experiments/cluster/single_scene.sbatch spot "
        "--seed_everything 1",
    ]
    assert problems == {}
    assert (REPO / reproduce.SBATCH).is_file()


def test_local_dry_run_checks_dataset_roots(tmp_path, capsys):
    env = {}
    problems = reproduce.run_local(["nerf_synthetic/lego", "bob"], "outputs", [], env, dry_run=True)
    assert problems == {
        "nerf_synthetic/lego": "skipped: dataset root not set: export DMTREC_NERF_SYNTHETIC or pass --nerf-synthetic"
    }
    env["DMTREC_NERF_SYNTHETIC"] = str(tmp_path)
    problems = reproduce.run_local(["nerf_synthetic/lego"], "outputs", [], env, dry_run=True)
    assert problems == {"nerf_synthetic/lego": f"skipped: dataset folder {tmp_path / 'lego'} not found"}
    (tmp_path / "lego").mkdir()
    capsys.readouterr()
    assert reproduce.run_local(["nerf_synthetic/lego"], "outputs", [], env, dry_run=True) == {}
    assert "--run.name nerf_synthetic-lego" in capsys.readouterr().out


def test_local_runs_go_on_after_a_failure_and_pass_the_environment(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, cwd, env):
        calls.append((command, env.get("DMTREC_DATA")))
        return subprocess.CompletedProcess(command, 3 if "spot" in command else 0)

    monkeypatch.setattr(reproduce.subprocess, "run", fake_run)
    problems = reproduce.run_local(["spot", "bob"], str(tmp_path), [], {"DMTREC_DATA": "/shared"})
    assert problems == {"spot": "failed (exit 3)"}
    assert [c[0][c[0].index("--run.name") + 1] for c in calls] == ["spot", "bob"]
    assert {c[1] for c in calls} == {"/shared"}


def test_collect_marks_each_kind_of_outcome(tmp_path):
    write_run(tmp_path, "nerf_synthetic/lego", {"iterations": 10000, "test_psnr": 27.123, "test_ssim": 0.91234})
    write_run(tmp_path, "nerf_synthetic/chair", {"iterations": 400, "test_psnr": 20.0, "test_ssim": 0.8})
    write_run(tmp_path, "nerf_synthetic/drums", checkpoint=True)
    write_run(tmp_path, "nerf_synthetic/ficus", "{not json")
    write_run(tmp_path, "spot", {"iterations": 10000})  # failed in this invocation: old metrics are not trusted
    scenes = [
        "nerf_synthetic/lego",
        "nerf_synthetic/chair",
        "nerf_synthetic/drums",
        "nerf_synthetic/ficus",
        "nerf_synthetic/ship",
        "nerd/gold",
        "spot",
    ]
    problems = {
        "spot": "failed (exit 1)",
        "nerd/gold": "skipped: dataset root not set: export DMTREC_NERD or pass --nerd",
    }
    results = {r.scene: r for r in reproduce.collect(scenes, tmp_path, problems)}
    assert {s: r.status for s, r in results.items()} == {
        "nerf_synthetic/lego": "finished",
        "nerf_synthetic/chair": "finished",
        "nerf_synthetic/drums": "unfinished",
        "nerf_synthetic/ficus": "unfinished",
        "nerf_synthetic/ship": "not run",
        "nerd/gold": "skipped",
        "spot": "failed",
    }
    assert results["nerf_synthetic/drums"].detail == "checkpoint but no metrics.json"
    assert "unreadable metrics.json" in results["nerf_synthetic/ficus"].detail
    assert results["nerd/gold"].detail == "dataset root not set: export DMTREC_NERD or pass --nerd"

    table = reproduce.results_table(list(results.values()), PAPER, note="2-core CPU")
    assert "Paper et al. (Table 9)" in table and "2-core CPU" in table
    assert row(table, "nerf_synthetic/lego") == [
        "nerf_synthetic/lego",
        "finished",
        "27.12",
        "28.50",
        "0.9123",
        "0.9000",
        "n/a",
        "n/a",
    ]
    assert row(table, "nerf_synthetic/chair")[1:4] == ["finished, reduced (400/10000 it)", "20.00", "n/a"]
    assert row(table, "nerf_synthetic/drums")[1] == "**unfinished**: checkpoint but no metrics.json"
    assert row(table, "nerf_synthetic/ship")[1:3] == ["**not run**", "n/a"]
    assert row(table, "mean (2/5 finished)")[2:4] == ["23.56", "29.05"]
    assert row(table, "nerd/gold")[1].startswith("**skipped**: dataset root not set")
    assert row(table, "spot")[1] == "**failed**: failed (exit 1)"


def test_reference_table_reports_geometry(tmp_path):
    write_run(
        tmp_path,
        "bob",
        {
            "iterations": 2000,
            "test_psnr": 25.0,
            "geometry_chamfer_l1": 0.0123456,
            "geometry_f_score@0.01": 0.5,
            "triangles": 1234,
            "fit_seconds_this_session": 90.0,
        },
    )
    table = reproduce.results_table(reproduce.collect(["bob", "spot"], tmp_path), PAPER)
    assert row(table, "bob") == ["bob", "finished", "0.01235", "n/a", "0.500", "25.00", "n/a", "1234", "1.5"]
    assert row(table, "spot")[1] == "**not run**"
    assert "mean" not in table  # no mean over two unrelated objects


def test_collect_mode_writes_the_table_and_reports_incomplete_sets(tmp_path, capsys):
    write_run(tmp_path, "spot", {"iterations": 10000, "geometry_chamfer_l1": 0.01})
    table = tmp_path / "table.md"
    args = ["--collect", "--output-root", str(tmp_path), "--table", str(table)]
    assert reproduce.main(["spot", *args]) == 0
    assert reproduce.main(["spot", "bob", *args]) == 1
    assert "| bob | **not run** |" in table.read_text()
    assert reproduce.main(["reference", "nerd", *args]) == 1  # bob and the NeRD scenes were not run


def test_published_numbers_file_cites_its_sources():
    paper = reproduce.load_paper_numbers()
    assert "2111.12503" in paper["citation"]
    for entry in [*(paper.get("scenes") or {}).values(), *(g["mean"] for g in paper["groups"].values())]:
        assert entry["source"] in paper["sources"] or "Table" in entry["source"]
