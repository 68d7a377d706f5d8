"""Every loss term and weight schedule of ReconstructionSystem.loss_terms against nvdiffrec's
formulas (geometry/dmtet.py and geometry/dlmesh.py ``tick``, render/light.py ``regularizer``,
render/regularizer.py ``laplace_regularizer_const``), with the expected values computed here in
float64 numpy from the formulas, not through dmtrec's helpers.

The renderer is replaced by fixed buffers, so that the image terms are checked on known values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dmtrec.systems import pipeline
from dmtrec.systems.pipeline import ReconstructionSystem

H = W = 3


def srgb_log(x: float) -> float:
    """nvdiffrec's training tonemap for one value: srgb(log(clamp(x, 0, 65535) + 1))."""
    f = math.log(min(max(x, 0.0), 65535.0) + 1.0)
    return 1.055 * f ** (1 / 2.4) - 0.055 if f > 0.0031308 else 12.92 * f


def bce_with_logits(x: float, y: float) -> float:
    return -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))


@pytest.fixture
def fixed_buffers(monkeypatch):
    g = torch.Generator().manual_seed(5)
    shaded = torch.rand(1, H, W, 4, generator=g, dtype=torch.float64).float() * 2
    buffers = {
        "shaded": shaded,
        "ks": torch.rand(1, H, W, 3, generator=g),
        "kd_grad": torch.rand(1, H, W, 1, generator=g),
    }
    monkeypatch.setattr(pipeline, "render_mesh", lambda *a, **k: buffers)
    return buffers


def batch():
    g = torch.Generator().manual_seed(6)
    img = torch.rand(1, H, W, 4, generator=g)
    img[0, 0, 0, 3] = 0.0
    return {
        "img": img,
        "background": torch.rand(1, H, W, 3, generator=g),
        "c2w": torch.eye(4)[None],
        "proj": torch.eye(4)[None],
    }


def image_terms(buffers, data):
    """nvdiffrec: mse(alpha) + logl1(shaded * ref_alpha, ref_composited * ref_alpha)."""
    img, bg = data["img"].double().numpy()[0], data["background"].double().numpy()[0]
    shaded = buffers["shaded"].double().numpy()[0]
    alpha = img[..., 3:4]
    ref = bg + (img[..., :3] - bg) * alpha  # torch.lerp(background, img, alpha)
    alpha_mse = np.mean((shaded[..., 3:4] - alpha) ** 2)
    diffs = [abs(srgb_log(a) - srgb_log(b)) for a, b in zip((shaded[..., :3] * alpha).ravel(), (ref * alpha).ravel())]
    return alpha_mse, float(np.mean(diffs))


def light_reg(base: np.ndarray) -> float:
    white = (base[..., 0:1] + base[..., 1:2] + base[..., 2:3]) / 3.0
    return float(np.mean(np.abs(base - white)))


def test_pass_one_terms_and_weights_match_nvdiffrec(fixed_buffers):
    system = ReconstructionSystem(
        iters_dmtet=1000,
        iters_mesh=10,
        rasterizer="torch",
        dmtet={"resolution": 8, "init": "sphere"},
        light={"init": "constant", "base_res": 32},
        material={"volumetric": {"n_levels": 2, "log2_table_size": 8}},
    )
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        system.geometry.sdf.copy_(torch.randn(system.geometry.sdf.shape, generator=g))
        system.light.base.copy_(torch.rand(system.light.base.shape, generator=g))
    sdf = system.geometry.sdf.detach().double().numpy()
    edges = system.geometry.edges.numpy()
    base = system.light.base.detach().double().numpy()
    data = batch()
    for it in (0, 100, 249, 400, 900):
        system.iteration = it
        terms, _ = system.loss_terms(data)
        t = it / 1000
        alpha_mse, color = image_terms(fixed_buffers, data)
        crossing = [(sdf[a], sdf[b]) for a, b in edges if np.sign(sdf[a]) != np.sign(sdf[b])]
        sdf_loss = np.mean([bce_with_logits(a, float(b > 0)) for a, b in crossing]) + np.mean(
            [bce_with_logits(b, float(a > 0)) for a, b in crossing]
        )
        ramp = min(1.0, it / 500)
        expected = {
            "image_alpha": alpha_mse,
            "image_color": color,
            "sdf_reg": sdf_loss * (0.2 - (0.2 - 0.01) * min(1.0, 4.0 * t)),
            "material_smooth": float(fixed_buffers["kd_grad"].double().mean()) * 0.03 * ramp,
            "occlusion_reg": float(fixed_buffers["ks"][..., 0].double().mean()) * 0.001 * ramp,
            "light_reg": light_reg(base) * 0.005,
        }
        assert set(terms) == set(expected), it
        for name, value in expected.items():
            assert terms[name].item() == pytest.approx(value, rel=1e-5, abs=1e-9), (it, name)


OBJ = """v -0.5 -0.5 0
v 0.5 -0.5 0
v 0.5 0.5 0
v -0.5 0.5 0
v 0 0 0.6
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vt 0.5 0.5
f 1/1 2/2 5/5
f 2/2 3/3 5/5
f 3/3 4/4 5/5
f 4/4 1/1 5/5
f 1/1 4/4 3/3
f 1/1 3/3 2/2
"""


def laplace_const(v: np.ndarray, faces: np.ndarray) -> float:
    """nvdiffrec's laplace_regularizer_const, one face corner at a time."""
    term, norm = np.zeros_like(v), np.zeros(len(v))
    for f in faces:
        for k in range(3):
            i, j, m = f[k], f[(k + 1) % 3], f[(k + 2) % 3]
            term[i] += (v[j] - v[i]) + (v[m] - v[i])
            norm[i] += 2.0
    term /= np.maximum(norm, 1.0)[:, None]
    return float(np.mean(term**2))


@pytest.mark.parametrize("laplace", ["relative", "absolute"])
def test_pass_two_terms_and_weights_match_nvdiffrec(fixed_buffers, tmp_path, laplace):
    (tmp_path / "pyramid.obj").write_text(OBJ)
    system = ReconstructionSystem(
        passes="mesh",
        iters_mesh=400,
        rasterizer="torch",
        light={"init": "constant", "base_res": 32},
        material={"texture_res": 4},
        mesh_pass={"init_mesh": str(tmp_path / "pyramid.obj"), "laplace": laplace, "laplace_scale": 3000.0},
    )
    start = system.geometry.v_pos.detach().double().numpy().copy()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        system.geometry.v_pos.add_(torch.randn(system.geometry.v_pos.shape, generator=g) * 0.1)
        system.light.base.copy_(torch.rand(system.light.base.shape, generator=g))
    moved = system.geometry.v_pos.detach().double().numpy()
    faces = system.geometry.t_pos_idx.numpy()
    base = system.light.base.detach().double().numpy()
    data = batch()
    for it in (0, 100, 300):
        system.iteration = it
        terms, _ = system.loss_terms(data)
        t, ramp = it / 400, min(1.0, it / 500)
        alpha_mse, color = image_terms(fixed_buffers, data)
        lap = laplace_const(moved - start if laplace == "relative" else moved, faces)
        expected = {
            "image_alpha": alpha_mse,
            "image_color": color,
            "laplace": lap * 3000.0 * (1 - t),
            "material_smooth": float(fixed_buffers["kd_grad"].double().mean()) * 0.03 * ramp,
            "occlusion_reg": float(fixed_buffers["ks"][..., 0].double().mean()) * 0.001 * ramp,
            "light_reg": light_reg(base) * 0.005,
        }
        assert set(terms) == set(expected), it
        for name, value in expected.items():
            assert terms[name].item() == pytest.approx(value, rel=1e-5, abs=1e-9), (it, name)
