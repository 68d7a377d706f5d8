import logging
import math
import sys
import types

import pytest
import torch

from dmtrec.io.image import linear_to_srgb
from dmtrec.metrics import image_metrics, load_lpips, psnr, ssim


def random_images(shape=(2, 24, 20, 3), seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen, dtype=dtype)


# --- PSNR -------------------------------------------------------------------------------------


def test_psnr_of_identical_images_is_infinite():
    img = random_images()
    assert torch.isinf(psnr(img, img)).all()


def test_psnr_of_a_known_mse():
    ref = random_images() * 0.8
    assert psnr(ref + 0.1, ref) == pytest.approx([20.0, 20.0], abs=1e-4)  # MSE 0.01
    assert psnr(ref + 0.1, ref, data_range=2.0) == pytest.approx([20.0 + 20 * math.log10(2)] * 2, abs=1e-4)
    # per image, not pooled: one image off by 0.1, the other by 0.01
    offset = torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)
    assert psnr(ref + offset, ref) == pytest.approx([20.0, 40.0], abs=1e-3)


# --- SSIM -------------------------------------------------------------------------------------


def reference_ssim(x, y, data_range=1.0):
    """Wang et al. with scipy's Gaussian filter (sigma 1.5, truncated to an 11-tap window), valid region."""
    ndimage = pytest.importorskip("scipy.ndimage")
    x, y = x.double().numpy(), y.double().numpy()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for b in range(x.shape[0]):
        channels = []
        for c in range(x.shape[-1]):
            xi, yi = x[b, ..., c], y[b, ..., c]
            blur = lambda img: ndimage.gaussian_filter(img, 1.5, truncate=3.5, mode="reflect")[5:-5, 5:-5]  # noqa: E731
            mx, my = blur(xi), blur(yi)
            vx, vy, cxy = blur(xi * xi) - mx * mx, blur(yi * yi) - my * my, blur(xi * yi) - mx * my
            num = (2 * mx * my + c1) * (2 * cxy + c2)
            den = (mx * mx + my * my + c1) * (vx + vy + c2)
            channels.append((num / den).mean())
        values.append(sum(channels) / len(channels))
    return values


def test_ssim_of_identical_images_is_one():
    img = random_images()
    assert ssim(img, img).tolist() == [1.0, 1.0]


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.3, 0.7
    x, y = torch.full((1, 16, 16, 3), a), torch.full((1, 16, 16, 3), b)
    a, b = x[0, 0, 0, 0].item(), y[0, 0, 0, 0].item()  # the float32 values actually compared
    c1 = 0.01**2
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_ssim_of_a_flat_background_is_exactly_one_in_float32():
    # float32 statistics would leave E[x^2] - E[x]^2 noise of the order of C2 here
    white = torch.ones(1, 16, 16, 3)
    dimmer = torch.full((1, 16, 16, 3), 0.999)
    c1 = 0.01**2
    expected = (2 * 0.999 + c1) / (1 + 0.999**2 + c1)
    assert ssim(dimmer, white).item() == pytest.approx(expected, abs=1e-7)


def test_ssim_matches_an_independent_scipy_implementation():
    ref = random_images((2, 32, 27, 3), seed=1)
    noisy = (ref + 0.2 * random_images((2, 32, 27, 3), seed=2) - 0.1).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(ref.permute(0, 3, 1, 2), 3, 1, 1).permute(0, 2, 3, 1)
    for pred in (noisy, blurred, 0.5 * ref):
        assert ssim(pred, ref).tolist() == pytest.approx(reference_ssim(pred, ref), abs=1e-5)


def test_ssim_gradient_matches_finite_differences():
    x = random_images((1, 12, 11, 1), seed=3, dtype=torch.float64).requires_grad_()
    y = random_images((1, 12, 11, 1), seed=4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y), (x,))


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 8, 32, 3), torch.zeros(1, 8, 32, 3))


# --- nvdiffrec's evaluation transform --------------------------------------------------------


def test_image_metrics_composite_over_the_background_then_compare_clamped_srgb():
    ref = torch.zeros(1, 16, 16, 4)
    ref[..., :3] = 1.0
    ref[..., 3] = 0.5  # half-covered white over a black background: 0.5 linear
    pred = torch.full((1, 16, 16, 3), 0.5)
    assert math.isinf(image_metrics(pred, ref, background=0.0)["psnr"].item())
    # HDR and negative predictions are clamped after the sRGB curve, as nvdiffrec does
    white_ref = torch.ones(1, 16, 16, 3)
    hdr = torch.full((1, 16, 16, 3), 4.0)
    assert math.isinf(image_metrics(hdr, white_ref)["psnr"].item())
    dark = image_metrics(torch.full((1, 16, 16, 3), -1.0), torch.full((1, 16, 16, 3), 0.2))
    expected_mse = linear_to_srgb(torch.tensor(0.2)).item() ** 2
    assert dark["mse"].item() == pytest.approx(expected_mse, rel=1e-6)
    assert dark["psnr"].item() == pytest.approx(-10 * math.log10(expected_mse), rel=1e-6)


def test_image_metrics_use_the_background_where_the_reference_is_empty():
    ref = torch.zeros(2, 16, 16, 4)  # nothing covered
    bg = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    metrics = image_metrics(bg.clone(), ref, background=bg)
    assert torch.isinf(metrics["psnr"]).all() and metrics["ssim"].tolist() == [1.0, 1.0]
    assert metrics["psnr"].shape == metrics["ssim"].shape == metrics["mse"].shape == (2,)


def test_image_metrics_need_a_background_for_rgba():
    with pytest.raises(ValueError, match="ref_rgb_linear has an alpha channel"):
        image_metrics(torch.zeros(1, 16, 16, 3), torch.zeros(1, 16, 16, 4))
    with pytest.raises(ValueError, match="differ in batch or resolution"):
        image_metrics(torch.zeros(1, 16, 16, 3), torch.zeros(1, 16, 12, 3))
    with pytest.raises(ValueError, match=r"pred_rgb_linear must be a \[B, H, W, C\]"):
        image_metrics(torch.zeros(16, 16, 3), torch.zeros(1, 16, 16, 3))


# --- LPIPS: optional, never downloaded ---------------------------------------------------------


def test_image_metrics_pass_display_referred_images_to_lpips():
    seen = {}

    def fake_lpips(pred, ref):
        seen["pred"], seen["ref"] = pred, ref
        return torch.full((pred.shape[0],), 0.25)

    pred = torch.full((1, 16, 16, 3), 2.0)
    ref = torch.zeros(1, 16, 16, 4)
    metrics = image_metrics(pred, ref, background=1.0, lpips_fn=fake_lpips)
    assert metrics["lpips"].tolist() == [0.25]
    # clamped HDR and the white background both become sRGB white
    assert torch.allclose(seen["pred"], torch.ones(1, 16, 16, 3)) and torch.allclose(
        seen["ref"], torch.ones(1, 16, 16, 3)
    )


def test_lpips_without_the_package_is_skipped_with_a_log_line(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "lpips", None)  # makes `import lpips` raise ImportError
    with caplog.at_level(logging.INFO, logger="dmtrec.metrics.image"):
        assert load_lpips() is None
    assert "LPIPS skipped" in caplog.text


def test_lpips_without_local_weights_is_skipped_not_downloaded(monkeypatch, caplog, tmp_path):
    fake = types.ModuleType("lpips")
    fake.__file__ = str(tmp_path / "lpips" / "__init__.py")
    fake.LPIPS = lambda **kwargs: pytest.fail("must not build a model without local weights")
    monkeypatch.setitem(sys.modules, "lpips", fake)
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", types.ModuleType("torchvision.models"))
    with caplog.at_level(logging.INFO, logger="dmtrec.metrics.image"):
        assert load_lpips("alex") is None
    assert "weights not found" in caplog.text
    with pytest.raises(ValueError, match="net must be one of"):
        load_lpips("resnet")
