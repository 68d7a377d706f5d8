"""BSDF terms: normalisation, reciprocity, the metallic workflow, shading normals, gradients."""

import math

import pytest
import torch

from dmtrec.render import bsdf


@pytest.mark.parametrize("roughness", [0.1, 0.3, 0.6, 1.0])
def test_ggx_ndf_projected_area_is_one(roughness):
    # int D(h) (n.h) dh over the hemisphere = 1; the peak is narrow at low roughness, so integrate
    # in t = tan(theta) / alpha with a dense grid.
    alpha_sq = bsdf.ggx_alpha_sq(torch.tensor(roughness, dtype=torch.float64))
    alpha = alpha_sq.sqrt()
    t = torch.linspace(0.0, 2000.0, 2_000_001, dtype=torch.float64)
    theta = torch.atan(t * alpha)
    dtheta_dt = alpha / (1.0 + (t * alpha) ** 2)
    integrand = (
        bsdf.ndf_ggx(alpha_sq, torch.cos(theta)) * torch.cos(theta) * torch.sin(theta) * 2.0 * math.pi * dtheta_dt
    )
    total = torch.trapezoid(integrand, t).item()
    assert total == pytest.approx(1.0, abs=2e-3)


def _random_unit(n, generator, upper=True):
    v = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=torch.float64), dim=-1)
    if upper:
        v[:, 2] = v[:, 2].abs() + 0.05
    return torch.nn.functional.normalize(v, dim=-1)


def test_specular_is_reciprocal():
    g = torch.Generator().manual_seed(1)
    wo, wi = _random_unit(1000, g), _random_unit(1000, g)
    n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(1000, 3)
    rough = torch.rand(1000, 1, generator=g, dtype=torch.float64) * 0.9 + 0.1
    f0 = torch.rand(1000, 3, generator=g, dtype=torch.float64)
    # ggx_specular includes the cosine of wi; the BRDF itself must be symmetric.
    forward = bsdf.ggx_specular(f0, n, wo, wi, rough) / wi[:, 2:3]
    backward = bsdf.ggx_specular(f0, n, wi, wo, rough) / wo[:, 2:3]
    torch.testing.assert_close(forward, backward, rtol=1e-9, atol=1e-12)


def test_specular_is_zero_below_the_horizon():
    n = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    wo = torch.tensor([[0.0, 0.6, 0.8]], dtype=torch.float64)
    wi = torch.tensor([[0.0, 0.6, -0.8]], dtype=torch.float64)
    assert bsdf.ggx_specular(torch.ones(1, 1, dtype=torch.float64), n, wo, wi, torch.full((1, 1), 0.5)).item() == 0.0
    assert bsdf.lambert(n, wi).item() == 0.0


def test_metallic_workflow():
    kd = torch.tensor([[0.8, 0.4, 0.2]])
    diffuse, f0 = bsdf.metallic_workflow(kd, torch.tensor([[0.0, 0.5, 0.0]]))
    torch.testing.assert_close(diffuse, kd)
    torch.testing.assert_close(f0, torch.full((1, 3), 0.04))
    diffuse, f0 = bsdf.metallic_workflow(kd, torch.tensor([[0.0, 0.5, 1.0]]))
    torch.testing.assert_close(diffuse, torch.zeros(1, 3))
    torch.testing.assert_close(f0, kd)


def test_pbr_bsdf_occlusion_scales_everything():
    n, wo, wi = (torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.6, 0.8]]), torch.tensor([[0.0, -0.6, 0.8]]))
    kd = torch.tensor([[0.5, 0.5, 0.5]])
    open_ = bsdf.pbr_bsdf(kd, torch.tensor([[0.0, 0.3, 0.2]]), n, wo, wi)
    half = bsdf.pbr_bsdf(kd, torch.tensor([[0.5, 0.3, 0.2]]), n, wo, wi)
    torch.testing.assert_close(half, open_ * 0.5)
    assert (open_ > 0).all()


def test_shading_normal_frame():
    n = torch.tensor([[0.0, 0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0, 0.0]])
    pos, eye = torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 5.0]])
    # Unperturbed: the interpolated normal.
    out = bsdf.prepare_shading_normal(pos, eye, n, n, torch.tensor([[0.0, 0.0, 1.0]]), t)
    torch.testing.assert_close(out, n)
    # x follows the tangent, y the OpenGL bitangent n x t.
    p = torch.tensor([[0.6, 0.0, 0.8]])
    torch.testing.assert_close(bsdf.perturb_normal(p, n, t), torch.tensor([[0.6, 0.0, 0.8]]))
    p = torch.tensor([[0.0, 0.6, 0.8]])
    torch.testing.assert_close(bsdf.perturb_normal(p, n, t), torch.tensor([[0.0, 0.6, 0.8]]))


def test_two_sided_flip_and_bend():
    pos = torch.zeros(1, 3)
    geometric = torch.tensor([[0.0, 0.0, 1.0]])
    behind = torch.tensor([[0.0, 0.0, -5.0]])
    out = bsdf.prepare_shading_normal(pos, behind, geometric, geometric)
    torch.testing.assert_close(out, -geometric)
    # A smooth normal tilted away from a grazing viewer is bent back to the geometric normal.
    smooth = torch.nn.functional.normalize(torch.tensor([[0.0, -0.9, 0.3]]), dim=-1)
    viewer = torch.tensor([[0.0, 5.0, 0.2]])
    out = bsdf.prepare_shading_normal(pos, viewer, smooth, geometric)
    torch.testing.assert_close(out, geometric)


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(3)
    n = 8
    kd = torch.rand(n, 3, generator=g, dtype=torch.float64).requires_grad_()
    ks = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.8 + 0.15).requires_grad_()
    normal = _random_unit(n, g).requires_grad_()
    wo, wi = _random_unit(n, g).requires_grad_(), _random_unit(n, g).requires_grad_()

    def shade(kd, ks, normal, wo, wi):
        unit = [torch.nn.functional.normalize(v, dim=-1) for v in (normal, wo, wi)]
        return bsdf.pbr_bsdf(kd, ks, *unit)

    assert torch.autograd.gradcheck(shade, (kd, ks, normal, wo, wi))

    pos = torch.randn(n, 3, generator=g, dtype=torch.float64).requires_grad_()
    eye = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.1 + torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64)
    smooth = (normal.detach() + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).requires_grad_()
    geometric = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(n, 3).clone().requires_grad_()
    perturb = torch.nn.functional.normalize(
        torch.rand(n, 3, generator=g, dtype=torch.float64) + 0.5, dim=-1
    ).requires_grad_()
    tangent = torch.tensor([1.0, 0.1, 0.0], dtype=torch.float64).expand(n, 3).clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda *a: bsdf.prepare_shading_normal(a[0], eye, *a[1:]), (pos, smooth, geometric, perturb, tangent)
    )
