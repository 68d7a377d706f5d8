"""The hostile-input table (experiments/benchmarks/hostile_inputs.py): the audit's cases that need
no fitted run, each in its own temporary folder through a real `dmtrec` subprocess; the slow test
runs every case that needs no fitted run."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from common import REPO

_spec = importlib.util.spec_from_file_location(
    "hostile_inputs", REPO / "experiments" / "benchmarks" / "hostile_inputs.py"
)
table = importlib.util.module_from_spec(_spec)
sys.modules["hostile_inputs"] = table  # its dataclasses look their module up there
_spec.loader.exec_module(table)

# A few of the audit's cases through real subprocesses (each starts Python and torch); the
# in-process tests of every case are tests/commands/test_nothing_lost.py.
AUDIT_CASES = (
    "bake --out a folder of the user's files",
    "lod --probe-res 16",
    "gpu kit: run_all.sh --dry-run OUT (arguments swapped)",
)


@pytest.mark.parametrize("name", AUDIT_CASES)
def test_an_audit_case_holds(name, tmp_path):
    (case,) = [c for c in table.cases() if c.name == name]
    outcome = table.run_case(case, tmp_path, None)
    assert not outcome.problems, (outcome.problems, outcome.last_line)


def test_a_broken_rule_is_reported(tmp_path, monkeypatch):
    # The table itself can fail: a case whose expected words are not in the error is BROKEN.
    (case,) = [c for c in table.cases() if c.name == "bake --batch 0"]
    case.words = ("--views",)
    outcome = table.run_case(case, tmp_path, None)
    assert outcome.problems == ["error does not name ['--views']"]


@pytest.mark.slow
def test_every_case_without_a_fitted_run_holds(capsys):
    assert table.main(["--fast"]) == 0, capsys.readouterr().out
