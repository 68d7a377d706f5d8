"""The pipeline's state machine under Lightning, with the geometry/renderer calls replaced by a
toy scene (a flat-shaded quad whose colour and size are the parameters), so it runs in seconds:
pass switch and optimizer swap, per-pass schedules, checkpoint/resume in either pass, the
NaN/Inf guard. The real stack is exercised by test_fit_end_to_end.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dmtrec.geometry import Mesh
from dmtrec.geometry.dmtet import DMTetGeometry
from dmtrec.geometry.sdf_morphology import clean_sdf
from dmtrec.runs.callbacks import TrainingPassToData
from dmtrec.systems import pipeline
from dmtrec.systems.config import DMTetConfig, LightConfig, MaterialConfig
from dmtrec.systems.pipeline import NonFiniteLossError, ReconstructionSystem

H = W = 4


class ToyGeometry(nn.Module):
    def __init__(self):
        super().__init__()
        self.size = nn.Parameter(torch.tensor(0.3))

    def mesh(self, with_uv: bool = True):
        v = torch.tensor([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]]) * self.size
        return Mesh(v_pos=v, t_pos_idx=torch.tensor([[0, 1, 2], [0, 2, 3]]))

    def sdf_reg_loss(self):
        return self.size * 0.0 + 1.0


class ToyMaterial(nn.Module):
    def __init__(self, kd):
        super().__init__()
        self.kd = nn.Parameter(kd.clone())

    def clamp_(self):
        pass

    def to_tensors(self):
        return {"kd": self.kd.detach(), "ks": torch.zeros_like(self.kd), "normal": None}


class ToyLight(nn.Module):
    def __init__(self):
        super().__init__()
        self.radiance = nn.Parameter(torch.tensor(0.5))

    def regularizer(self):
        return (self.radiance - 1.0).abs()

    def clamp_(self, min):
        self.radiance.clamp_(min=min)


def toy_render(mesh, material, light, cameras, rasterizer, background, smoothness=False):
    b = cameras.batch_size
    coverage = (mesh.v_pos[:, 0].abs().mean() * 2).clamp(0, 1)
    colour = material.kd.reshape(-1, 3).mean(0) * light.radiance
    rgb = torch.lerp(background, colour.expand(b, H, W, 3), coverage)
    return {"shaded": torch.cat([rgb, coverage.expand(b, H, W, 1)], -1)}


@pytest.fixture
def toy_scene(monkeypatch):
    monkeypatch.setattr(DMTetConfig, "build", lambda self, geometry="dmtet": ToyGeometry())
    monkeypatch.setattr(MaterialConfig, "volumetric_material", lambda self, g: ToyMaterial(torch.full((1, 1, 3), 0.2)))
    monkeypatch.setattr(LightConfig, "build", lambda self: ToyLight())
    monkeypatch.setattr(pipeline, "render_mesh", toy_render)
    monkeypatch.setattr(
        pipeline,
        "uv_unwrap",
        lambda mesh, **k: SimpleNamespace(
            mesh=mesh.copy(v_tex=mesh.v_pos[:, :2] * 0.5 + 0.5, t_tex_idx=mesh.t_pos_idx)
        ),
    )
    monkeypatch.setattr(
        pipeline, "bake_volumetric", lambda mesh, mat, r, res: ToyMaterial(mat.kd.detach().expand(res, res, 3))
    )
    monkeypatch.setattr(MaterialConfig, "textured_material", lambda self, tex: ToyMaterial(tex["kd"]))
    monkeypatch.setattr(
        MaterialConfig,
        "textured_material_like_state",
        lambda self, sd, prefix: ToyMaterial(torch.zeros_like(sd[prefix + "kd"])),
    )
    monkeypatch.setattr(
        pipeline,
        "laplacian_loss",
        lambda v_pos, t_pos_idx, kind, reference: ((v_pos - (0 if reference is None else reference)) ** 2).mean(),
    )


class Views(Dataset):
    """A white quad of half-size 0.5 and colour 0.8 on black."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        img = torch.full((H, W, 4), 0.8)
        img[..., 3] = 1.0
        return {"c2w": torch.eye(4), "proj": torch.eye(4), "img": img, "background": torch.zeros(H, W, 3), "index": i}


class ToyData(pl.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(Views(), batch_size=2)


def make_trainer(root: Path, every: int = 3, callbacks=()):
    ckpt = pl.callbacks.ModelCheckpoint(
        dirpath=str(root / "ckpt"), save_last=True, save_top_k=0, every_n_train_steps=every
    )
    return pl.Trainer(
        default_root_dir=str(root),
        max_epochs=-1,
        logger=False,
        callbacks=[*callbacks, ckpt],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


def make_system(**kw):
    args = dict(
        iters_dmtet=7,
        iters_mesh=5,
        rasterizer="torch",
        material={"texture_res": 2, "smoothness": 0.0},
        optim={"lr_geometry": 0.05, "lr_material": 0.05, "warmup_mesh": 0},
    )
    args.update(kw)
    return ReconstructionSystem(**args)


def test_the_configured_texture_res_reaches_both_uv_unwraps(toy_scene, monkeypatch):
    """model.material.texture_res sizes the fallback atlas's margins: pass 1's bake and an input
    mesh without UVs unwrap for it, not for uv_unwrap's default of 1024."""
    seen = []

    def spy(mesh, **kw):
        seen.append(kw.get("texture_res"))
        return SimpleNamespace(mesh=mesh.copy(v_tex=mesh.v_pos[:, :2] * 0.5 + 0.5, t_tex_idx=mesh.t_pos_idx))

    monkeypatch.setattr(pipeline, "uv_unwrap", spy)
    system = make_system(material={"texture_res": 64, "smoothness": 0.0})
    system.bake_mesh()
    system._prepare_input_mesh(ToyGeometry().mesh(), None)
    assert seen == [64, 64]


def test_two_passes_switch_modules_and_optimizer(toy_scene, tmp_path):
    system, trainer = make_system(), make_trainer(tmp_path)
    kd_pass1 = system.material.kd.detach().clone()
    trainer.fit(system, datamodule=ToyData())
    assert system.iteration == 12 and trainer.global_step == 12 and system.finished
    assert system.stage == "mesh" and system.pass_iteration == 5
    assert system.geometry.v_pos.shape == (4, 3) and system.material.kd.shape == (2, 2, 3)
    optimizer = trainer.optimizers[0]
    assert [g["name"] for g in optimizer.param_groups] == ["geometry", "material", "light"]
    assert optimizer.param_groups[0]["params"][0] is system.geometry.v_pos
    # The colour moved towards the reference (0.8 under light 0.5 -> kd up) in both passes.
    assert float(system.material.kd.mean()) > float(kd_pass1.mean())


class PassAwareData(ToyData):
    """Records when it is told which pass trains (ReconDataModule.use_pass's protocol) and, in
    the same list, every training view drawn with the pass the system was in."""

    def __init__(self):
        super().__init__()
        self.calls, self.events = [], []
        self.system = None

    def use_pass(self, pass_number):
        self.calls.append((pass_number, self.system.stage, self.system.iteration))
        self.events.append(("told", pass_number))

    def train_dataloader(self):
        data = self

        class Recorded(Views):
            def __getitem__(self, i):
                data.events.append(("drawn", data.system.pass_number))
                return super().__getitem__(i)

        return DataLoader(Recorded(), batch_size=2)


def test_the_datamodule_hears_of_each_pass_when_it_starts(toy_scene, tmp_path):
    system, data = make_system(), PassAwareData()
    data.system = system
    make_trainer(tmp_path, callbacks=[TrainingPassToData(data)]).fit(system, datamodule=data)
    # At the start of training (pass 1), then at the end of the batch whose start baked (its step
    # made iteration 8), not again while the pass stays.
    assert data.calls == [(1, "dmtet", 0), (2, "mesh", 8)]
    # What matters: no view is drawn in pass 2 before the datamodule heard of it (a view drawn then
    # would have pass 1's resolution); the batch drawn before the bake keeps its own.
    told = data.events.index(("told", 2))
    assert ("drawn", 2) not in data.events[:told] and ("drawn", 2) in data.events[told:]
    # A run resumed in pass 2 starts on pass 2's data.
    resumed, data = make_system(), PassAwareData()
    data.system = resumed
    trainer = make_trainer(tmp_path / "resumed", callbacks=[TrainingPassToData(data)])
    trainer.fit(resumed, datamodule=data, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert data.calls[0][:2] == (2, "mesh")


def test_schedules_restart_at_each_pass(toy_scene, tmp_path):
    system = make_system(optim={"lr_geometry": 0.05, "lr_material": 0.05, "decay": 0.1, "warmup_mesh": 2})
    seen = []
    original = system._set_learning_rates

    def spy(optimizer):
        rates = original(optimizer)
        seen.append((system.stage, system.pass_iteration, rates["material"]))
        return rates

    system._set_learning_rates = spy
    make_trainer(tmp_path).fit(system, datamodule=ToyData())
    assert seen[0] == ("dmtet", 0, pytest.approx(0.05)) and seen[6][2] == pytest.approx(0.05 * 10 ** (-0.6))
    # Pass 2 starts over: warm-up from 0, then the decay from the full rate.
    assert [s[:2] for s in seen[7:]] == [("mesh", i) for i in range(5)]
    assert [s[2] for s in seen[7:10]] == pytest.approx([0.0, 0.025, 0.05])
    assert seen[11][2] == pytest.approx(0.05 * 10 ** (-0.2))


@pytest.mark.parametrize("stop_at", [5, 10], ids=["in-pass-1", "in-pass-2"])
def test_resume_from_either_pass_restores_state_and_finishes(toy_scene, tmp_path, stop_at):
    system = make_system(iters_mesh=8)
    original = ReconstructionSystem.training_step

    class Killed(Exception):
        pass

    def dying(self, batch, batch_idx):
        if self.iteration == stop_at:
            raise Killed
        return original(self, batch, batch_idx)

    ReconstructionSystem.training_step = dying
    try:
        with pytest.raises(Killed):
            make_trainer(tmp_path).fit(system, datamodule=ToyData())
    finally:
        ReconstructionSystem.training_step = original
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["dmtrec_pipeline"]["iteration"] == saved["global_step"] == stop_at // 3 * 3

    resumed, trainer = make_system(iters_mesh=8), make_trainer(tmp_path)
    trainer.fit(resumed, datamodule=ToyData(), ckpt_path=str(last))
    assert resumed.iteration == trainer.global_step == 15 and resumed.stage == "mesh"
    if stop_at > 7:  # resumed inside pass 2: the modules were rebuilt from the checkpoint's shapes
        assert resumed.material.kd.shape == (2, 2, 3)
        assert torch.equal(resumed.geometry.initial_pos, saved["state_dict"]["geometry.initial_pos"])


def test_non_finite_loss_names_iteration_and_terms(toy_scene, tmp_path):
    system = make_system()
    system.light.radiance.data.fill_(float("inf"))
    system.light_cfg.optimize = True
    with pytest.raises(NonFiniteLossError, match=r"iteration 0 \(pass 1, step 0.*light_reg=inf"):
        make_trainer(tmp_path).fit(system, datamodule=ToyData())
    assert not (tmp_path / "ckpt" / "last.ckpt").exists()


def test_pass_two_alone_needs_an_input_mesh():
    with pytest.raises(ValueError, match="mesh_pass.init_mesh"):
        ReconstructionSystem(passes="mesh")


def test_bad_arguments_name_the_option():
    with pytest.raises(ValueError, match="model.passes"):
        ReconstructionSystem(passes="three")
    with pytest.raises(ValueError, match="model.loss"):
        ReconstructionSystem(loss="l5")


def test_logged_training_values_reach_the_logger_at_every_logging_step(toy_scene, tmp_path):
    # The module logs its per-term values only in the steps whose logs Lightning writes; the
    # logger must still get every value at every logging step (and the last), from that step.
    import csv

    system = make_system()
    seen = {}
    original = system.loss_terms

    def spy(batch):
        terms, buffers = original(batch)
        seen[system.iteration + 1] = {k: float(v.detach()) for k, v in terms.items()}
        return terms, buffers

    system.loss_terms = spy
    logger = pl.loggers.CSVLogger(str(tmp_path), name="log", version=0)
    trainer = pl.Trainer(
        default_root_dir=str(tmp_path),
        max_epochs=-1,
        logger=logger,
        log_every_n_steps=4,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(system, datamodule=ToyData())
    with open(tmp_path / "log" / "version_0" / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("train/iteration")]
    iterations = [int(float(row["train/iteration"])) for row in rows]
    assert iterations == [4, 8, 12]  # every 4th step; 12 is also the last
    for row, it in zip(rows, iterations):
        assert int(row["step"]) == it - 1
        stage = "dmtet" if it <= 7 else "mesh"
        for k, v in seen[it].items():
            assert float(row[f"train/{k}"]) == pytest.approx(v, rel=1e-6), (it, k)
        assert float(row["loss"]) == pytest.approx(sum(seen[it].values()), rel=1e-5)
        assert float(row["pass"]) == (1.0 if stage == "dmtet" else 2.0)
        assert {"lr/geometry", "lr/material", "lr/light"} <= {k for k, v in row.items() if v}


def test_multi_tensor_adam_steps_like_the_per_parameter_loop(toy_scene):
    system = make_system()
    optimizer = system._make_optimizer()
    assert all(group["foreach"] for group in optimizer.param_groups)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    twins = [p.detach().clone().requires_grad_() for p in params]
    groups = [
        dict(group, params=twins[i : i + len(group["params"])], foreach=False) for i, group in _offsets(optimizer)
    ]
    loop = torch.optim.Adam(groups)
    torch.manual_seed(0)
    for _ in range(3):
        for p, twin in zip(params, twins):
            p.grad = torch.randn_like(p)
            twin.grad = p.grad.clone()
        optimizer.step()
        loop.step()
    for p, twin in zip(params, twins):
        assert torch.equal(p.detach(), twin.detach())


def _offsets(optimizer):
    start = 0
    for group in optimizer.param_groups:
        yield start, group
        start += len(group["params"])


@pytest.mark.parametrize("dmtet, expected", [({}, []), ({"morphology": "open", "morphology_every": 3}, [3, 6, 7])])
def test_sdf_clean_ups_run_every_n_pass_one_iterations_and_before_the_bake(
    toy_scene, monkeypatch, tmp_path, dmtet, expected
):
    system = make_system(dmtet=dmtet)
    calls = []

    def spy(geometry, mode, steps):
        if mode != "none":
            calls.append((system.stage, system.iteration, mode))

    monkeypatch.setattr(pipeline, "clean_sdf", spy)
    make_trainer(tmp_path).fit(system, datamodule=ToyData())
    # before the batches of pass-1 iterations 3 and 6, and at the bake after iteration 7
    assert calls == [("dmtet", i, "open") for i in expected]


def test_an_sdf_clean_up_that_would_leave_no_surface_is_skipped_with_a_warning(caplog):
    geometry = DMTetGeometry(resolution=8, scale=2.0, init="sphere")
    # A ball one vertex thick: its single inside vertex has outside neighbours, so opening empties it.
    with torch.no_grad():
        geometry.sdf.fill_(-1.0)
        centre = int(geometry.grid_verts.norm(dim=-1).argmin())
        geometry.sdf[centre] = 1.0
    before = geometry.sdf.detach().clone()
    with caplog.at_level("WARNING", logger="dmtrec.geometry.sdf_morphology"):
        clean_sdf(geometry, "open", 1)
    assert torch.equal(geometry.sdf.detach(), before)
    assert "would leave none of the grid's" in caplog.text and "skipped" in caplog.text
    # One that leaves a surface applies: a two-ring ball keeps its centre, a lone far vertex goes.
    edges = geometry.edges.long()

    def ring(ids):
        touching = torch.isin(edges, ids).any(1)
        return torch.unique(torch.cat([ids, edges[touching].flatten()]))

    ball = ring(ring(torch.tensor([centre])))
    lone = int(geometry.grid_verts.norm(dim=-1).argmax())
    assert lone not in ball.tolist()
    with torch.no_grad():
        geometry.sdf.fill_(-1.0)
        geometry.sdf[ball] = 1.0
        geometry.sdf[lone] = 1.0
    clean_sdf(geometry, "open", 1)
    assert geometry.sdf[centre] > 0 and geometry.sdf[lone] < 0
