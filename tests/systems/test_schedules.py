import pytest

from dmtrec.systems import schedules


def test_lr_factor_warmup_then_tenfold_decay_every_5000():
    assert schedules.lr_factor(0, warmup_iters=10) == 0.0
    assert schedules.lr_factor(5, warmup_iters=10) == pytest.approx(0.5)
    assert schedules.lr_factor(10, warmup_iters=10) == pytest.approx(1.0)
    assert schedules.lr_factor(5000) == pytest.approx(0.1)
    assert schedules.lr_factor(10010, warmup_iters=10) == pytest.approx(0.01)


def test_sdf_reg_weight_decays_over_first_quarter():
    assert schedules.sdf_reg_weight(0.0) == pytest.approx(0.2)
    assert schedules.sdf_reg_weight(0.125) == pytest.approx(0.105)
    assert schedules.sdf_reg_weight(0.25) == pytest.approx(0.01)
    assert schedules.sdf_reg_weight(0.9) == pytest.approx(0.01)


def test_ramp_and_laplace_weight():
    assert schedules.ramp_up(250, 500) == 0.5 and schedules.ramp_up(900, 500) == 1.0 and schedules.ramp_up(3, 0) == 1.0
    assert schedules.laplace_weight(0.0, 1e4) == 1e4
    assert schedules.laplace_weight(0.75, 1e4) == pytest.approx(2500)
    assert schedules.laplace_weight(1.5, 1e4) == 0.0
