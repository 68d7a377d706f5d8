"""Training-setup details that must match nvdiffrec's train.py (issue 11): gradient scales, the
frozen and locked light, the camera-space light, and the start of a missing ks."""

from __future__ import annotations

import math

import pytest
import torch

from dmtrec.render.light import EnvironmentLight
from dmtrec.systems import pipeline
from dmtrec.systems.config import MaterialConfig
from dmtrec.systems.pipeline import ReconstructionSystem

RES = 8


def tiny_system(**kw) -> ReconstructionSystem:
    args = dict(
        iters_dmtet=20,
        iters_mesh=20,
        rasterizer="torch",
        dmtet={"resolution": 8, "init": "sphere"},
        light={"init": "constant", "base_res": 32},
        material={"volumetric": {"n_levels": 2, "log2_table_size": 8}, "texture_res": 4},
    )
    args.update(kw)
    return ReconstructionSystem(**args)


def views(batch: int = 1):
    from dmtrec.render.camera import look_at, perspective

    c2w = torch.stack([look_at(torch.tensor([0.3 * i, 0.5, 3.0]), torch.zeros(3)) for i in range(batch)])
    proj = perspective(math.radians(45), 1.0, 0.1, 100.0).expand(batch, 4, 4)
    img = torch.zeros(batch, RES, RES, 4)
    img[:, 2:6, 2:6] = torch.tensor([0.6, 0.4, 0.3, 1.0])
    return {"c2w": c2w, "proj": proj, "img": img, "background": torch.rand(batch, RES, RES, 3)}


def adam_by_hand(grads, lr, eps, betas=(0.9, 0.999)):
    """Parameter after Adam steps on ``grads`` (torch's default betas), from the paper's formulas."""
    m = v = 0.0
    p = 0.0
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        p -= lr * (m / (1 - betas[0] ** t)) / (math.sqrt(v / (1 - betas[1] ** t)) + eps)
    return p


def test_gradient_scales_are_nvdiffrecs_as_adam_eps():
    system = tiny_system()
    groups = {g["name"]: g for g in system.configure_optimizers().param_groups}
    assert set(groups) == {"geometry", "material", "hashgrid", "light"}
    assert groups["hashgrid"]["params"] == [system.material.encoding.table]
    assert groups["light"]["params"] == [system.light.base]
    assert groups["geometry"]["eps"] == groups["material"]["eps"] == 1e-8
    # nvdiffrec: light grad * 64; hash grid * 128 (MLP hook) / 8 (train.py) = 16
    assert groups["light"]["eps"] == pytest.approx(1e-8 / 64)
    assert groups["hashgrid"]["eps"] == pytest.approx(1e-8 / 16)
    # ... which is the same as Adam on the scaled gradients: tiny gradients (~1e-8, per-texel
    # light gradients at 512^2) then step like nvdiffrec's, not eps-damped.
    grads = [3e-9, 4e-9, 2e-9, 5e-9]
    param = torch.nn.Parameter(torch.zeros(()))
    adam = torch.optim.Adam([{"params": [param], "lr": 0.01, "eps": groups["light"]["eps"]}])
    for g in grads:
        param.grad = torch.tensor(g)
        adam.step()
    scaled = adam_by_hand([64 * g for g in grads], 0.01, 1e-8)
    unscaled = adam_by_hand(grads, 0.01, 1e-8)
    assert param.item() == pytest.approx(scaled, rel=1e-4)
    assert abs(scaled) > 2 * abs(unscaled)
    # 1 turns a scale off
    off = tiny_system(optim={"grad_scale_light": 1.0, "grad_scale_hashgrid": 1.0})
    assert all(g["eps"] == 1e-8 for g in off.configure_optimizers().param_groups)


def test_frozen_light_builds_its_mips_once(monkeypatch):
    builds = []
    original = EnvironmentLight.build_mips
    monkeypatch.setattr(EnvironmentLight, "build_mips", lambda self, r=None: builds.append(1) or original(self, r))
    batch = views()
    frozen = tiny_system(light={"init": "constant", "base_res": 32, "optimize": False})
    for it in range(3):
        frozen.iteration = it
        terms, _ = frozen.loss_terms(batch)
    assert len(builds) == 1 and "light_reg" not in terms
    assert "light" not in {g["name"] for g in frozen.configure_optimizers().param_groups}
    learned = tiny_system()
    for _ in range(2):
        learned.loss_terms(batch)
    assert len(builds) == 3  # a learned light: every step


def test_lock_light_freezes_it_in_pass_two_only():
    system = tiny_system(light={"init": "constant", "base_res": 32, "lock": True})
    assert system.light_trainable and system.light.base.requires_grad
    assert "light" in {g["name"] for g in system.configure_optimizers().param_groups}
    system._enter_mesh_stage(*system.bake_mesh())
    assert not system.light_trainable and not system.light.base.requires_grad
    assert "light" not in {g["name"] for g in system._make_optimizer().param_groups}
    terms, _ = system.loss_terms(views())
    assert "light_reg" not in terms


def test_lock_material_leaves_the_light_alone_in_pass_two():
    system = tiny_system(mesh_pass={"lock_material": True, "lock_pos": True})
    # Pass 1 is untouched: the volumetric material learns.
    assert {"material", "light"} <= {g["name"] for g in system.configure_optimizers().param_groups}
    system._enter_mesh_stage(*system.bake_mesh())
    assert [g["name"] for g in system._make_optimizer().param_groups] == ["light"]
    assert not any(p.requires_grad for p in system.material.parameters())
    terms, _ = system.loss_terms(views())
    sum(terms.values()).backward()
    assert system.light.base.grad is not None and system.light.base.grad.abs().sum() > 0
    frozen = tiny_system(
        mesh_pass={"lock_material": True, "lock_pos": True}, light={"init": "constant", "base_res": 32, "lock": True}
    )
    frozen._enter_mesh_stage(*frozen.bake_mesh())
    with pytest.raises(ValueError, match="^pass 2 has nothing to learn: "):
        frozen._make_optimizer()


def test_camera_space_light_turns_with_each_view(monkeypatch):
    seen = []
    monkeypatch.setattr(
        pipeline, "render_mesh", lambda mesh, mat, light, *a, **k: seen.append(light.rotation) or {"shaded": None}
    )
    batch = views(2)
    tiny_system(light={"init": "constant", "base_res": 32, "camera_space": True}).render(batch)
    # nvdiffrec: light.xfm(mv), mv the world-to-camera matrix: R = c2w's rotation transposed
    torch.testing.assert_close(seen[0], batch["c2w"][:, :3, :3].transpose(1, 2), rtol=1e-5, atol=1e-6)
    tiny_system().render(batch)
    assert seen[1] is None


def test_missing_ks_starts_unoccluded_and_dielectric():
    """nvdiffrec reads a mesh without ks as ks = 0 clamped into the range, occlusion cleared."""
    cfg = MaterialConfig(ks_min=[0.0, 0.1, 0.0], ks_max=[1.0, 0.9, 1.0], texture_res=2)
    ks = cfg.complete_textures({})["ks"]
    assert ks.shape == (2, 2, 3)
    assert torch.equal(ks[..., 0], torch.zeros(2, 2)) and torch.equal(ks[..., 2], torch.zeros(2, 2))
    assert ks[..., 1].eq(0.5).all()  # roughness: the middle of its range
    raised = MaterialConfig(ks_min=[0.0, 0.1, 0.2], texture_res=2)
    assert raised.complete_textures({})["ks"][..., 2].eq(0.2).all()  # clamped into the range
