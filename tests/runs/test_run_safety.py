"""What clusters and users do to a run folder, without training: two writers, stale and requeued
locks, re-used names, damaged, crafted and half-written checkpoints, unwritable output roots,
invalid configs (issue 18). The fits themselves are in test_run_safety_fit.py."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from common import QUICKSTART

from dmtrec.cli import main
from dmtrec.runs import checkpoints
from dmtrec.runs import lock as run_lock
from dmtrec.runs.checkpoints import (
    CheckpointError,
    load_checkpoint_file,
    previous_path,
    resume_checkpoint,
    save_checkpoint_file,
)
from dmtrec.runs.folder import RunConfig, RunFolderError, start_fit
from dmtrec.runs.lock import LOCK_NAME, RunFolderBusy, acquire
from dmtrec.systems.config import DMTetConfig, MaterialConfig, OptimConfig


def _ckpt(iteration: int) -> dict:
    """A minimal checkpoint of the shape dmtrec writes (plain data and tensors)."""
    return {
        "state_dict": {"w": torch.full((4,), float(iteration))},
        "dmtrec_pipeline": {"stage": "dmtet", "iteration": iteration},
        "global_step": iteration,
    }


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def _write_lock(folder: Path, **holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "started": "2026-01-01T00:00:00Z", "process_start": None, "job": None}
    (folder / LOCK_NAME).write_text(json.dumps({**record, **holder}))


def _no_slurm(monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT", "SLURM_PROCID", "RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)


# ---------------------------------------------------------------- one writer per run folder
def test_second_writer_is_refused_naming_the_holder(tmp_path, monkeypatch, live_process):
    _no_slurm(monkeypatch)
    _write_lock(tmp_path, pid=live_process.pid)
    with pytest.raises(RunFolderBusy) as info:
        acquire(tmp_path)
    message = str(info.value)
    assert f"pid {live_process.pid} on {socket.gethostname()}" in message and "\n" not in message
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == live_process.pid  # untouched


def test_lock_is_exclusive_and_released(tmp_path, monkeypatch):
    _no_slurm(monkeypatch)
    lock = acquire(tmp_path)
    record = json.loads((tmp_path / LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["started"]
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, monkeypatch, caplog):
    _no_slurm(monkeypatch)
    dead = _dead_pid()
    _write_lock(tmp_path, pid=dead)
    with caplog.at_level(logging.WARNING):
        lock = acquire(tmp_path)
    assert lock.took_over["pid"] == dead and f"process {dead} is gone" in caplog.text
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_reused_pid_is_stale(tmp_path, monkeypatch, live_process):
    _no_slurm(monkeypatch)
    _write_lock(tmp_path, pid=live_process.pid, process_start="1")  # the pid now belongs to another start time
    assert acquire(tmp_path).took_over["pid"] == live_process.pid


def test_requeued_job_takes_over_its_earlier_incarnation_on_another_host(tmp_path, monkeypatch):
    _no_slurm(monkeypatch)
    _write_lock(tmp_path, pid=1234, host="node-a-gone", job="777")
    with pytest.raises(RunFolderBusy, match="job 777"):
        acquire(tmp_path)  # another job (none here): cannot tell whether node-a's process lives
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    assert acquire(tmp_path).took_over["host"] == "node-a-gone"


def test_fit_on_a_locked_folder_is_one_line(tmp_path, monkeypatch, capsys, live_process):
    _no_slurm(monkeypatch)
    _write_lock(tmp_path / "quickstart", pid=live_process.pid)
    assert main(["fit", "-c", str(QUICKSTART), "--run.output_root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [errors[0]] and f"in use by pid {live_process.pid}" in errors[0] and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "quickstart").iterdir()) == [LOCK_NAME]


# ---------------------------------------------------------------- no silent overwrite
def _previous_run(root: Path, name: str = "r") -> Path:
    folder = root / name
    save_checkpoint_file(_ckpt(30), folder / "checkpoints" / "last.ckpt")
    (folder / "metrics.json").write_text("{}")
    (folder / "wandb_id").write_text("r-old\n")
    return folder


def test_existing_run_name_is_refused_without_ckpt_path(tmp_path, monkeypatch):
    _no_slurm(monkeypatch)
    folder = _previous_run(tmp_path)
    with pytest.raises(RunFolderError) as info:
        start_fit(RunConfig(name="r", output_root=str(tmp_path)), None, None)
    assert "--ckpt_path last" in str(info.value) and "--run.overwrite true" in str(info.value)
    assert not (folder / LOCK_NAME).exists() and (folder / "metrics.json").exists()


def test_resume_and_overwrite(tmp_path, monkeypatch):
    _no_slurm(monkeypatch)
    folder = _previous_run(tmp_path)
    start = start_fit(RunConfig(name="r", output_root=str(tmp_path)), None, "last")
    assert start.ckpt_path == str(folder / "checkpoints" / "last.ckpt") and start.paths.wandb_id == "r-old"
    start.finish(failed=False)
    assert not (folder / LOCK_NAME).exists()
    start = start_fit(RunConfig(name="r", output_root=str(tmp_path), overwrite=True), None, None)
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME, "wandb_id"]
    assert start.ckpt_path is None and start.paths.wandb_id not in ("", "r-old")  # a new wandb run
    start.finish(failed=False)
    with pytest.raises(RunFolderError, match="give one of them"):
        start_fit(RunConfig(name="r", output_root=str(tmp_path), overwrite=True), None, "last")


def test_requeued_job_resumes_instead_of_refusing(tmp_path, monkeypatch):
    _no_slurm(monkeypatch)
    folder = _previous_run(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    _write_lock(folder, pid=999999, host="node-gone", job="42")  # killed incarnation's lock
    start = start_fit(RunConfig(name="r", output_root=str(tmp_path)), None, None)
    assert start.ckpt_path == str(folder / "checkpoints" / "last.ckpt")
    start.finish(failed=False)
    # Lightning's SLURM auto-requeue saved an hpc checkpoint after the last periodic one: that one.
    hpc = folder / "hpc_ckpt_1.ckpt"
    save_checkpoint_file(_ckpt(35), hpc)
    os.utime(hpc, (os.path.getmtime(folder / "checkpoints" / "last.ckpt") + 10,) * 2)
    start = start_fit(RunConfig(name="r", output_root=str(tmp_path)), None, None)
    assert start.ckpt_path == str(hpc)
    start.finish(failed=False)


# ---------------------------------------------------------------- output errors, stub folders
@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_unwritable_output_root_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, code):
    _no_slurm(monkeypatch)
    real_open = os.open

    def failing_open(path, flags, *args, **kwargs):
        if str(path).endswith(LOCK_NAME):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(run_lock.os, "open", failing_open)
    with pytest.raises(RunFolderError) as info:
        start_fit(RunConfig(name="r", output_root=str(tmp_path / "out")), None, None)
    assert str(info.value) == f"{tmp_path / 'out' / 'r'}: cannot write the run folder ({os.strerror(code)})"
    assert not (tmp_path / "out" / "r").exists()  # the folder this start created is gone


def test_read_only_root_through_the_cli(tmp_path, monkeypatch, capsys):
    _no_slurm(monkeypatch)
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["fit", "-c", str(QUICKSTART), "--run.output_root", str(tmp_path / "ro")]) == 1
    err = capsys.readouterr().err
    assert (
        f"dmtrec fit: error: {tmp_path / 'ro' / 'quickstart'}: cannot write the run folder (Read-only file system)"
        in err
    )
    assert "Traceback" not in err


def test_failed_start_removes_the_folder_it_created(tmp_path, monkeypatch):
    _no_slurm(monkeypatch)
    start = start_fit(RunConfig(name="r", output_root=str(tmp_path)), None, None)
    assert (tmp_path / "r" / LOCK_NAME).is_file()
    start.finish(failed=True)  # e.g. the dataset failed its checks in setup
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize(
    "option, value",
    [
        ("--model.dmtet.resolution", "0"),
        ("--model.material.texture_res", "-8"),
        ("--model.optim.lr_geometry", "0"),
        ("--model.optim.lr_light", "-0.5"),
        ("--model.light.base_res", "0"),
        ("--run.checkpoint_every", "0"),
    ],
)
def test_invalid_values_are_one_line_before_any_folder(tmp_path, capsys, option, value):
    assert main(["fit", "-c", str(QUICKSTART), "--run.output_root", str(tmp_path / "out"), option, value]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and option.lstrip("-") in errors[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_config_sections_check_their_values():
    with pytest.raises(ValueError, match="model.dmtet.resolution"):
        DMTetConfig(resolution=0)
    with pytest.raises(ValueError, match="model.material.volumetric.log2_table_size"):
        MaterialConfig(volumetric={"log2_table_size": 0})
    with pytest.raises(ValueError, match="model.optim.lr_mesh_material"):
        OptimConfig(lr_mesh_material=-0.1)
    OptimConfig(lr_mesh_material=None, warmup_mesh=0)  # None and zero warm-up are valid


def test_yaml_syntax_error_names_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  iters_dmtet: 10\n  dmtet: {resolution: 32\nrun:\n  name: x\n")
    assert main(["fit", "-c", str(QUICKSTART), "-c", str(bad), "--run.output_root", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    # The unclosed "{" runs on to "run:" of line 4, whose ":" (column 4) is where PyYAML stops.
    assert err.startswith(f"dmtrec fit: error: {bad}:4:4: YAML syntax error") and "\n" not in err
    assert "<unicode string>" not in err and not (tmp_path / "o").exists()


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_write_keeps_the_previous_one(tmp_path):
    last = tmp_path / "last.ckpt"
    save_checkpoint_file(_ckpt(10), last)
    assert not previous_path(last).exists()
    save_checkpoint_file(_ckpt(20), last)
    assert load_checkpoint_file(last)["global_step"] == 20
    assert load_checkpoint_file(previous_path(last))["global_step"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "previous-last.ckpt"]


def test_full_disk_during_a_checkpoint_leaves_the_previous_intact(tmp_path, monkeypatch):
    last = tmp_path / "last.ckpt"
    save_checkpoint_file(_ckpt(10), last)
    save_checkpoint_file(_ckpt(20), last)

    def disk_full(obj, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoints.torch, "save", disk_full)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint_file(_ckpt(30), last)
    assert str(info.value) == f"{last}: cannot write the checkpoint (No space left on device); the previous one is kept"
    assert load_checkpoint_file(last)["global_step"] == 20
    assert load_checkpoint_file(previous_path(last))["global_step"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "previous-last.ckpt"]  # no temp file


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_last_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    last = tmp_path / "last.ckpt"
    save_checkpoint_file(_ckpt(10), last)
    save_checkpoint_file(_ckpt(20), last)
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with pytest.raises(CheckpointError, match=f"^{last}: damaged checkpoint"):
        load_checkpoint_file(last)
    with caplog.at_level(logging.WARNING):
        chosen = resume_checkpoint(tmp_path, set_aside=True)
    assert chosen == previous_path(last)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and str(last) in warning[0] and f"{previous_path(last)} (iteration 10)" in warning[0]
    assert (tmp_path / "last.ckpt.damaged").is_file() and not last.exists()


def test_no_good_checkpoint_is_one_line(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        resume_checkpoint(tmp_path)
    assert str(tmp_path / "last.ckpt") in str(info.value) and "no previous checkpoint" in str(info.value)
    assert resume_checkpoint(tmp_path / "none") is None


class _Payload:
    """Unpickling calls ``Path.touch(marker)``: proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("command", ["export", "loader"])
def test_crafted_pickle_checkpoint_does_not_run(tmp_path, monkeypatch, capsys, command):
    monkeypatch.delenv("DMTREC_TRUST_CHECKPOINTS", raising=False)
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Payload(marker)}, evil)
    if command == "export":
        assert main(["export", "--ckpt", str(evil), "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"dmtrec export: error: {evil}: refused to load") and "\n" not in err
        assert not (tmp_path / "out").exists()
    else:
        with pytest.raises(CheckpointError, match="DMTREC_TRUST_CHECKPOINTS=1"):
            load_checkpoint_file(evil)
    assert not marker.exists()


def test_trusted_checkpoint_opt_out(tmp_path, monkeypatch):
    from pathlib import PurePosixPath

    ckpt = tmp_path / "trusted.ckpt"
    torch.save({"state_dict": {}, "where": PurePosixPath("/x")}, ckpt)  # a class weights_only refuses
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint_file(ckpt)
    monkeypatch.setenv("DMTREC_TRUST_CHECKPOINTS", "1")
    assert load_checkpoint_file(ckpt)["where"] == PurePosixPath("/x")


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_export_of_a_damaged_checkpoint_is_one_line(tmp_path, capsys, damage):
    ckpt = tmp_path / "last.ckpt"
    save_checkpoint_file(_ckpt(10), ckpt)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:100] if damage == "truncated" else b"")
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dmtrec export: error: {ckpt}: damaged checkpoint") and "\n" not in err
