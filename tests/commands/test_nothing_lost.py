"""Issue 32's hostile inputs: every command that writes a folder checks its options and its target
before any work, refuses to take over a folder holding files, names the option or file at fault in
one line, and never leaves a half-written folder (the whole table is
experiments/benchmarks/hostile_inputs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from common import PROBE_HDR, SPOT_OBJ

from dmtrec.cli import main
from dmtrec.core.output_folder import OutputFolderError, check_output_folder
from dmtrec.runs.folder import RunConfig, RunFolderError, plan_run, run_folder_name, start_fit


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dmtrec {command}: error:") and "\n" not in err, err
    return err


def _users_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's own file")
    return folder


def _bake(out: Path, *extra: str) -> list:
    return ["bake", "--mesh", str(SPOT_OBJ), "--probe", str(PROBE_HDR), "--target", "vertex", "--out", str(out), *extra]


def test_bake_refuses_a_folder_holding_the_users_files(tmp_path, capsys):
    folder = _users_folder(tmp_path)
    assert main(_bake(folder)) == 1
    err = _one_line_error(capsys, "bake")
    assert str(folder) in err and "--overwrite" in err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "the user's own file"


def test_bake_out_an_existing_file_is_one_line_before_any_work(tmp_path, capsys):
    target = tmp_path / "result"
    target.write_text("a file")
    assert main(_bake(target)) == 1
    err = _one_line_error(capsys, "bake")
    assert str(target) in err and "is a file" in err
    assert target.read_text() == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]  # no .old or .tmp folder


@pytest.mark.parametrize(
    "option, value", [("--batch", "0"), ("--probe-res", "16"), ("--probe-res", "48"), ("--views", "0")]
)
def test_bake_names_the_option_out_of_range(option, value, tmp_path, capsys):
    assert main(_bake(tmp_path / "out", option, value)) == 1
    err = _one_line_error(capsys, "bake")
    assert f"error: {option}:" in err and value in err
    assert not (tmp_path / "out").exists()


def test_export_out_an_existing_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "exported"
    target.write_text("a file")
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"never read: the target is checked first")
    assert main(["export", "--ckpt", str(ckpt), "--out", str(target)]) == 1
    err = _one_line_error(capsys, "export")
    assert str(target) in err and "is a file" in err and target.read_text() == "a file"


def test_export_refuses_a_folder_holding_the_users_files(tmp_path, capsys):
    folder = _users_folder(tmp_path)
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"never read")
    assert main(["export", "--ckpt", str(ckpt), "--out", str(folder)]) == 1
    assert "--overwrite" in _one_line_error(capsys, "export")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "option, value, words",
    [("--texture-res", "0", ">= 4"), ("--probe-res", "16", "power of two >= 32"), ("--batch", "0", ">= 1")],
)
def test_lod_names_the_option_out_of_range(option, value, words, tmp_path, capsys):
    pytest.importorskip("fast_simplification")
    out = tmp_path / "lod"
    args = ["lod", "--mesh", str(SPOT_OBJ), "--probe", str(PROBE_HDR), "--levels", "0.5", "--out", str(out)]
    assert main(args + [option, value]) == 1
    err = _one_line_error(capsys, "lod")
    assert f"error: {option}:" in err and words in err and str(PROBE_HDR) not in err
    assert not out.exists()


def test_lod_refuses_a_folder_holding_the_users_files(tmp_path, capsys):
    pytest.importorskip("fast_simplification")
    folder = _users_folder(tmp_path)
    args = ["lod", "--mesh", str(SPOT_OBJ), "--probe", str(PROBE_HDR), "--levels", "0.5", "--out", str(folder)]
    assert main(args) == 1
    assert "--run.overwrite true" in _one_line_error(capsys, "lod")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_make_dataset_out_an_existing_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "data"
    target.write_text("a file")
    args = ["make-dataset", "--mesh", str(SPOT_OBJ), "--probe", str(PROBE_HDR), "--out", str(target)]
    assert main(args + ["--views", "1", "--res", "16"]) == 1
    assert "is a file" in _one_line_error(capsys, "make-dataset") and target.read_text() == "a file"


# --- run names -------------------------------------------------------------------------------


def test_different_run_names_never_share_a_folder():
    names = ["试验一", "试验二", "my run", "my-run", "my_run", "a/b", "a-b", "..", ".", "Ünïcödé", "x" * 300, "x" * 301]
    folders = [run_folder_name(n) for n in names]
    assert len(set(folders)) == len(names), dict(zip(names, folders))
    # Kept as they are where the file system allows: any script, no separators.
    assert run_folder_name("试验一") == "试验一" and run_folder_name("quickstart") == "quickstart"
    for folder in folders:
        assert "/" not in folder and folder not in (".", "..") and len(folder.encode()) <= 255


def test_two_unicode_runs_get_two_folders(tmp_path):
    # The audit's case: `--run.name 试验一` then `--run.name 试验二`, both with --ckpt_path last,
    # both mapped to `run`, the second resuming and overwriting the first.
    first = start_fit(RunConfig(name="试验一", output_root=str(tmp_path)), None, "last")
    first.finish(failed=False)
    second = start_fit(RunConfig(name="试验二", output_root=str(tmp_path)), None, "last")
    second.finish(failed=False)
    assert first.paths.root != second.paths.root
    assert sorted(p.name for p in tmp_path.iterdir()) == ["试验一", "试验二"]


def test_a_fit_does_not_take_over_a_users_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's")
    with pytest.raises(RunFolderError, match="notes.txt.*--run.overwrite true"):
        start_fit(RunConfig(name="mine", output_root=str(tmp_path)), None, None)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(RunFolderError, match="is a file"):
        start_fit(RunConfig(name="taken", output_root=str(tmp_path)), None, None)
    assert plan_run(RunConfig(name="my run", output_root=str(tmp_path))).root.name.startswith("my-run@")


def test_check_output_folder(tmp_path):
    assert check_output_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        check_output_folder(tmp_path / "file", overwrite=True)
    with pytest.raises(OutputFolderError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "file" / "below")
