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


def test_policy_takes_every_core_whatever_the_load_and_a_passive_wait(before_torch):
    # The count must not follow the load: a fit's floats depend on it (module docstring).
    for load in (0.1, 1.3, 12.0):
        before_torch.setattr(os, "getloadavg", lambda load=load: (load, 0.5, 0.2))
        env = {}
        choice = threads.apply_thread_policy(env)
        assert choice.chosen and choice.threads == 2
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
    assert chosen == torch_threads and int(chosen) == threads.usable_cores() and wait == "PASSIVE"
    env["DMTREC_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1", "None"]  # the user's count, torch's own wait policy
