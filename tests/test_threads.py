"""dmtrec.threads: the thread policy of the dmtrec command on shared machines."""

import os
import subprocess
import sys

import pytest

from dmtrec import threads


@pytest.fixture
def before_torch(monkeypatch, tmp_path):
    """The policy as the dmtrec command meets it: torch not imported yet, a 2-core machine."""
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "SETTLE_S", 0.0)
    monkeypatch.setattr(threads, "jobs_directory", lambda environ=None: tmp_path / "jobs")
    return monkeypatch


def test_policy_takes_every_core_and_sleeps_only_beside_other_running_processes(before_torch):
    # The count must not follow the load: a fit's floats depend on it (module docstring).
    before_torch.setattr(threads, "others_running", lambda: 0)
    env = {}
    choice = threads.apply_thread_policy(env)
    assert choice.chosen and choice.threads == 2 and env == {"OMP_NUM_THREADS": "2"}
    for others in (1, 5):
        before_torch.setattr(threads, "others_running", lambda others=others: others)
        env = {}
        assert threads.apply_thread_policy(env).threads == 2
        assert env == {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}  # the user's wait policy stays
    assert threads.apply_thread_policy(env).threads == 2
    assert env == {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"}
    env = {"GOMP_SPINCOUNT": "1000"}  # so does a spin count (it would override the policy)
    threads.apply_thread_policy(env)
    assert "OMP_WAIT_POLICY" not in env


def test_the_users_threads_are_kept(before_torch):
    env = {"OMP_NUM_THREADS": "2"}
    choice = threads.apply_thread_policy(env)
    assert not choice.chosen and choice.threads == 2 and env == {"OMP_NUM_THREADS": "2"}
    env = {"DMTREC_THREADS": "3", "OMP_NUM_THREADS": "1"}
    assert threads.apply_thread_policy(env).threads == 3 and env["OMP_NUM_THREADS"] == "3"
    env = {"DMTREC_THREADS": "all"}
    assert threads.apply_thread_policy(env).threads is None and "OMP_NUM_THREADS" not in env
    with pytest.raises(ValueError, match="DMTREC_THREADS"):
        threads.apply_thread_policy({"DMTREC_THREADS": "0"})


def test_nothing_changes_once_torch_is_loaded():
    env = {}
    assert not threads.apply_thread_policy(env).chosen and env == {}


def test_the_command_applies_it_before_torch_loads():
    # A fresh interpreter, as the console script: importing dmtrec.cli sets torch's threads.
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DMTREC_THREADS", "OMP_WAIT_POLICY")}
    code = (
        "import os, dmtrec.cli as cli, torch; "
        "print(cli.THREADS.threads, torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    chosen, torch_threads, wait = out.split()
    assert chosen == torch_threads and int(chosen) == threads.usable_cores() and wait in ("PASSIVE", "None")
    env["DMTREC_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1", "None"]  # the user's count, torch's own wait policy


def test_others_running_reads_the_running_count_less_this_process(monkeypatch, tmp_path):
    import builtins

    real_open = builtins.open
    counts = iter(["0.50 0.40 0.30 3/200 999\n", "0.50 0.40 0.30 1/200 999\n", "0.50 0.40 0.30 3/200 999\n"])

    def fake_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            file = tmp_path / "loadavg"
            file.write_text(next(counts))
            return real_open(file, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    # Median of (2, 0, 2) others: one transient read does not decide.
    assert threads.others_running(reads=3, interval=0.0) == 2


def _spawn_sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_register_counts_live_jobs_and_drops_dead_or_reused_pids(tmp_path, monkeypatch):
    directory = tmp_path / "jobs"
    monkeypatch.setattr(threads.atexit, "register", lambda *a: None)
    assert threads.register_job(directory) == directory / str(os.getpid())
    assert threads.other_jobs(directory) == 0  # this process is not "another" job
    live = _spawn_sleeper()
    try:
        (directory / str(live.pid)).write_text(threads._start_time(live.pid))
        reused = _spawn_sleeper()  # a live pid whose start time is not the registered one
        try:
            (directory / str(reused.pid)).write_text("1")
            dead = subprocess.run(
                [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
            )
            (directory / dead.stdout.strip()).write_text("1")
            assert threads.other_jobs(directory) == 1
            assert sorted(p.name for p in directory.iterdir()) == sorted([str(os.getpid()), str(live.pid)])
        finally:
            reused.kill()
    finally:
        live.kill()


def test_a_registered_job_makes_a_new_one_sleep(before_torch, tmp_path):
    live = _spawn_sleeper()
    try:
        (tmp_path / "jobs").mkdir()
        (tmp_path / "jobs" / str(live.pid)).write_text(threads._start_time(live.pid))
        before_torch.setattr(threads, "others_running", lambda: 0)
        env = {}
        choice = threads.apply_thread_policy(env)
        assert choice.threads == 2 and env == {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
        assert "1 other dmtrec job running" in choice.reason
    finally:
        live.kill()


def test_two_jobs_launched_together_both_sleep(tmp_path):
    # The case /proc/loadavg misses: both interpreters start on an idle machine at the same moment.
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DMTREC_THREADS", "OMP_WAIT_POLICY")}
    env["DMTREC_JOBS_DIR"] = str(tmp_path / "jobs")
    # The policy as dmtrec.cli applies it, without the cost of importing torch in each interpreter;
    # /proc/loadavg reads as idle, so only the register can make them sleep; a longer settle keeps
    # the test independent of how fast a loaded machine starts the second interpreter, and each
    # stays alive a while after choosing, as a job does.
    code = (
        "import os, time, dmtrec.threads as t; t.others_running = lambda: 0; t.SETTLE_S = 1.0; "
        "t.apply_thread_policy(); print(os.environ.get('OMP_WAIT_POLICY'), flush=True); time.sleep(1.5)"
    )
    jobs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    waits = [job.communicate(timeout=120)[0].split() for job in jobs]
    assert waits == [["PASSIVE"], ["PASSIVE"]]
    assert list((tmp_path / "jobs").iterdir()) == []  # each removed its file at exit
