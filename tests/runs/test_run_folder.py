import pytest

from dmtrec.core.atomic import atomic_folder, atomic_path, write_json
from dmtrec.runs.folder import RunConfig, resolve_run


def test_run_folder_and_wandb_id_are_stable(tmp_path):
    cfg = RunConfig(output_root=str(tmp_path))
    first = resolve_run(cfg, "experiments/configs/quick start.yaml")
    again = resolve_run(cfg, "experiments/configs/quick start.yaml")
    # A name with a space maps to a readable folder plus a digest of the name (issue 32).
    assert first.root.parent == tmp_path and first.root.name.startswith("quick-start@") and first.root.is_dir()
    assert first.root == again.root
    assert first.wandb_id == again.wandb_id and first.wandb_id.startswith("quick-start-")
    assert (first.root / "wandb_id").read_text().strip() == first.wandb_id
    other = resolve_run(RunConfig(name="other", output_root=str(tmp_path)))
    assert (
        other.wandb_id != first.wandb_id and other.last_checkpoint == tmp_path / "other" / "checkpoints" / "last.ckpt"
    )


def test_bad_wandb_mode_is_named(tmp_path):
    with pytest.raises(ValueError, match="run.wandb"):
        resolve_run(RunConfig(output_root=str(tmp_path), wandb="cloud"))


def test_atomic_file_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "a.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"x": 1})
    assert target.read_text().strip().startswith("{") and len(list(tmp_path.iterdir())) == 1


def test_atomic_folder_replaces_old_content(tmp_path):
    target = tmp_path / "mesh"
    target.mkdir()
    (target / "old.obj").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "new.obj").write_text("half")
            raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["old.obj"]
    with atomic_folder(target) as tmp:
        (tmp / "new.obj").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.obj"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh"]
