"""Only argument parsing and --dry-run of data/download_datasets.py: no network I/O in tests."""

import importlib.util
import sys
import urllib.request
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "data" / "download_datasets.py"


@pytest.fixture
def script(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("download_datasets must not touch the network in a dry run")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    spec = importlib.util.spec_from_file_location("download_datasets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "download_datasets", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_dry_run_prints_the_plan_without_downloading(script, tmp_path, capsys):
    assert script.main(["--out", str(tmp_path / "datasets"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "nerf_synthetic.zip" in out and "ethiopianHead" in out and "moldGoldCape" in out
    assert "512x512" in out and "structure check only" in out
    assert not (tmp_path / "datasets").exists()


def test_only_and_sha256_arguments(script, tmp_path):
    digest = "ab" * 32
    args = script.parse_args(
        ["--out", str(tmp_path), "--only", "nerd", "--sha256", f"ethiopianHead.zip={digest.upper()}"]
    )
    assert args.datasets == ["nerd"] and args.checksums["ethiopianHead.zip"] == digest
    plan = script.plan(args.datasets, tmp_path)
    assert not any("nerf_synthetic" in step for step in plan)


@pytest.mark.parametrize("bad", ["nerf_synthetic.zip=123", "unknown.zip=" + "0" * 64, "no-equals-sign"])
def test_malformed_sha256_is_rejected(script, tmp_path, bad):
    with pytest.raises(SystemExit):
        script.parse_args(["--out", str(tmp_path), "--sha256", bad])


def test_checksums_are_sha256_hex_digests(script):
    # only authoritative values may go in CHECKSUMS; any entry must at least be a SHA-256
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in script.CHECKSUMS.values())
