"""dmtrec.threads: the thread policy of the dmtrec command on shared machines."""

import os
import subprocess
import sys

import pytest

from dmtrec import threads


@pytest.fixture
def before_torch(monkeypatch):
    """The policy as the dmtrec command meets it: torch not imported yet, a 2-core machine."""
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
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
