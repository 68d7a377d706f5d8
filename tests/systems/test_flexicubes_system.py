"""model.geometry: the pass-1 module, its L_dev term in the loss and the option's validation."""

import pytest
import torch

from dmtrec.geometry import DMTetGeometry, FlexiCubesGeometry
from dmtrec.render.camera import perspective
from dmtrec.systems.config import DMTetConfig, LightConfig, MaterialConfig
from dmtrec.systems.pipeline import ReconstructionSystem

SMALL_MATERIAL = MaterialConfig(texture_res=16, volumetric={"n_levels": 2, "log2_table_size": 8})


def system(geometry: str, **dmtet) -> ReconstructionSystem:
    cfg = DMTetConfig(**{"resolution": 8, "scale": 2.0, "init": "sphere", **dmtet})
    return ReconstructionSystem(
        geometry=geometry, dmtet=cfg, material=SMALL_MATERIAL, light=LightConfig(base_res=32), rasterizer="torch"
    )


def batch(res: int = 16) -> dict:
    c2w = torch.eye(4)[None].clone()
    c2w[0, 2, 3] = 3.0  # camera on +z looking at the origin
    proj = perspective(0.8, 1.0, 0.1, 10.0)[None]
    img = torch.zeros(1, res, res, 4)
    img[:, 4:12, 4:12] = torch.tensor([0.5, 0.5, 0.5, 1.0])
    return {"c2w": c2w, "proj": proj, "img": img, "background": torch.ones(1, res, res, 3)}


def test_geometry_option_selects_the_pass_one_module():
    assert isinstance(system("dmtet").geometry, DMTetGeometry)
    flexi = system("flexicubes")
    assert isinstance(flexi.geometry, FlexiCubesGeometry) and flexi.geometry.resolution == 8
    assert flexi.hparams["geometry"] == "flexicubes" and flexi.hparams["dmtet"]["dev_reg"] == 0.25
    with pytest.raises(ValueError, match="model.geometry"):
        system("marching_cubes")
    with pytest.raises(ValueError, match="grid_file"):
        system("flexicubes", grid_file="64_tets.npz")


def test_flexicubes_loss_has_the_weighted_l_dev_term_and_it_reaches_the_weights():
    model = system("flexicubes", dev_reg=0.25)
    model.train()
    terms, _ = model.loss_terms(batch())
    assert "flexicubes_dev" in terms and "sdf_reg" in terms
    # The term is 0.25 x the mean L_dev of the extraction the render used (an independent re-run).
    expected = model.geometry.extract(training=True).l_dev.mean() * 0.25
    assert float(terms["flexicubes_dev"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    torch.stack(list(terms.values())).sum().backward()
    assert model.geometry.weights.grad is not None and model.geometry.weights.grad.abs().sum() > 0
    assert "flexicubes_dev" not in system("dmtet").loss_terms(batch())[0]


def _group(optimizer, name):
    return [g for g in optimizer.param_groups if g["name"] == name]


def test_weight_lr_scales_the_cube_weights_rate_and_zero_freezes_them():
    model = system("flexicubes", weight_lr=0.5)
    optimizer = model._make_optimizer()
    (weights,) = _group(optimizer, "cube_weights")
    (geometry,) = _group(optimizer, "geometry")
    assert weights["params"] == [model.geometry.weights] and weights["lr"] == pytest.approx(0.5 * geometry["lr"])
    assert {id(p) for p in geometry["params"]} == {id(model.geometry.sdf), id(model.geometry.deform)}
    frozen = system("flexicubes", weight_lr=0.0)
    assert not frozen.geometry.weights.requires_grad and not _group(frozen._make_optimizer(), "cube_weights")
    frozen.train()
    terms, _ = frozen.loss_terms(batch())
    torch.stack(list(terms.values())).sum().backward()
    assert frozen.geometry.weights.grad is None and frozen.geometry.sdf.grad is not None
    # The default rate (1) keeps them in the geometry group, as before the option; DMTet has none.
    (default,) = system("flexicubes")._make_optimizer().param_groups[:1]
    assert default["name"] == "geometry" and len(default["params"]) == 3
    (dmtet_geometry,) = _group(system("dmtet")._make_optimizer(), "geometry")
    assert len(dmtet_geometry["params"]) == 2
    with pytest.raises(ValueError, match="weight_lr"):
        DMTetConfig(weight_lr=-1.0)


def test_weight_reg_adds_the_mean_absolute_alpha_beta_term():
    model = system("flexicubes", weight_reg=0.1)
    with torch.no_grad():
        model.geometry.weights.copy_(torch.linspace(-2.0, 3.0, model.geometry.weights.numel()).reshape(-1, 21))
    model.train()
    terms, _ = model.loss_terms(batch())
    w = model.geometry.weights.detach().numpy()
    expected = 0.1 * abs(w[:, :20]).sum() / (w.shape[0] * 20)  # γ (column 20) is left out
    assert float(terms["flexicubes_weights"].detach()) == pytest.approx(float(expected), rel=1e-5)
    assert "flexicubes_weights" not in system("flexicubes").loss_terms(batch())[0]


def test_offset_bound_reaches_flexicubes():
    geo = system("flexicubes", offset_bound=0.05).geometry
    assert geo.offset_bound == 0.05
    assert system("flexicubes").geometry.offset_bound == pytest.approx(0.5 * 2.0 / 8)  # half a cell by default
