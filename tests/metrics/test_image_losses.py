"""Image losses: the fit's (nvdiffrec's names) and the unlit bake's per-pixel ones."""

import math

import pytest
import torch

from dmtrec.metrics.image_losses import (
    image_loss,
    masked_pixel_loss,
    over_background,
    pixel_loss_name,
    reconstruction_loss,
    smape,
    tonemap_log_srgb,
)


def test_tonemap_known_values():
    x = torch.tensor([0.0, math.e - 1.0, -3.0, 1e9])
    y = tonemap_log_srgb(x)
    assert y[0] == 0.0 and y[2] == 0.0  # negatives clamp to 0
    assert y[1].item() == pytest.approx(1.0, abs=1e-6)  # log(e) = 1, srgb(1) = 1
    # 65535 clamp, and no clamp to 1 after the sRGB curve
    expected = 1.055 * math.log(65536.0) ** (1 / 2.4) - 0.055
    assert y[3].item() == pytest.approx(expected, rel=1e-6) and y[3] > 1


def test_logl1_is_l1_of_tonemapped():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 4, 4, 3, generator=g) * 5, torch.rand(2, 4, 4, 3, generator=g) * 5
    expected = (tonemap_log_srgb(a) - tonemap_log_srgb(b)).abs().mean()
    assert image_loss(a, b, "logl1").item() == pytest.approx(expected.item(), rel=1e-6)
    assert image_loss(a, b, "mse").item() == pytest.approx(((a - b) ** 2).mean().item(), rel=1e-6)
    assert image_loss(a, a, "logl2").item() == 0.0


def test_smape_value():
    a, b = torch.tensor([1.0, 3.0]), torch.tensor([3.0, 3.0])
    assert smape(a, b).item() == pytest.approx((2.0 / 4.01 + 0.0) / 2, rel=1e-6)


def test_unknown_loss_names_choices():
    with pytest.raises(ValueError, match="logl1"):
        image_loss(torch.zeros(1), torch.zeros(1), "l3")


@pytest.mark.parametrize("kind", ["logl2", "smape", "relmse"])
def test_image_loss_gradient_matches_finite_differences(kind):
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(1, 3, 3, 3, generator=g, dtype=torch.float64) * 3 + 0.1).requires_grad_()
    b = torch.rand(1, 3, 3, 3, generator=g, dtype=torch.float64) * 3 + 0.1
    assert torch.autograd.gradcheck(lambda x: image_loss(x, b, kind), (a,))


def test_reconstruction_loss_masks_colour_by_reference_alpha():
    bg = torch.zeros(1, 2, 2, 3)
    ref = torch.zeros(1, 2, 2, 4)
    ref[0, 0, 0] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # one covered pixel
    target = over_background(ref, bg)
    render = target.clone()
    render[0, 1, 1, :3] = 5.0  # wrong colour where the reference is empty: not a colour error
    terms = reconstruction_loss(render, target, "mse")
    assert terms["color"].item() == 0.0 and terms["alpha"].item() == 0.0
    render[0, 1, 1, 3] = 1.0  # but wrong coverage is an alpha error
    assert reconstruction_loss(render, target, "mse")["alpha"].item() == pytest.approx(0.25)


def test_composite_over_background():
    rgba = torch.tensor([[[[1.0, 0.0, 0.0, 0.25]]]])
    bg = torch.tensor([[[[0.0, 0.0, 1.0]]]])
    out = over_background(rgba, bg)
    assert torch.allclose(out, torch.tensor([[[[0.25, 0.0, 0.75, 0.25]]]]))


def test_the_bakes_log1p_l1_is_not_the_fits_logl1():
    # One pixel, radiance 3 against 1, full weight: the bake's log1p-L1 is |ln 4 - ln 2| = ln 2
    # per channel; the fit's logl1 also bends log radiance by the sRGB curve.
    pred, ref = torch.full((1, 1, 1, 3), 3.0), torch.full((1, 1, 1, 3), 1.0)
    weight = torch.ones(1, 1, 1, 1)
    assert masked_pixel_loss(pred, ref, weight, "log1p_l1").item() == pytest.approx(math.log(2.0), rel=1e-6)
    srgb = [1.055 * math.log(x) ** (1 / 2.4) - 0.055 for x in (4.0, 2.0)]
    assert image_loss(pred, ref, "logl1").item() == pytest.approx(srgb[0] - srgb[1], rel=1e-6)
    assert abs(srgb[0] - srgb[1] - math.log(2.0)) > 0.1


def test_masked_pixel_loss_averages_over_covered_pixels_only():
    pred = torch.tensor([[[[1.0, 1.0, 1.0], [9.0, 9.0, 9.0]]]])  # [1, 1, 2, 3]
    ref = torch.zeros(1, 1, 2, 3)
    weight = torch.tensor([[[[1.0], [0.0]]]])  # the second pixel is not covered
    assert masked_pixel_loss(pred, ref, weight, "l2").item() == pytest.approx(1.0)


def test_the_bakes_old_logl1_name_is_log1p_l1():
    assert pixel_loss_name("logl1") == "log1p_l1"
    assert pixel_loss_name("l2") == "l2"
    with pytest.raises(ValueError, match="log1p_l1"):
        pixel_loss_name("logl2")


def test_srgb_l2_is_the_squared_error_of_displayed_values():
    # IEC 61966-2-1 by hand: srgb(0.5) = 1.055 * 0.5^(1/2.4) - 0.055 = 0.735357, srgb(0.25) = 0.537099;
    # a pixel at 2.0 against 1.0 both display as white: no error.
    pred = torch.tensor([0.5, 2.0, 0.0]).reshape(1, 1, 1, 3)
    ref = torch.tensor([0.25, 1.0, 0.0]).reshape(1, 1, 1, 3)
    weight = torch.ones(1, 1, 1, 1)
    expected = (0.735357 - 0.537099) ** 2 / 3.0
    assert masked_pixel_loss(pred, ref, weight, "srgb_l2").item() == pytest.approx(expected, rel=1e-4)
