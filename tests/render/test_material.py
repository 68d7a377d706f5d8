"""Textures and materials: orientation, ranges, conversions, smoothness term, gradients."""

import pytest
import torch

from dmtrec.render.material import Texture2D, TexturedMaterial, VolumetricMaterial


def _uv(points):
    return torch.tensor(points, dtype=torch.float32).reshape(1, -1, 1, 2)


def test_texture_rows_are_image_rows_and_uvs_are_obj_style(rasterizer):
    image = torch.zeros(4, 4, 3)
    image[0, :, 0] = 1.0  # top row red
    image[-1, :, 2] = 1.0  # bottom row blue
    tex = Texture2D(image)
    top, bottom = tex.sample(_uv([[0.5, 0.875], [0.5, 0.125]]), None, rasterizer)[0, :, 0].unbind(0)  # texel centres
    torch.testing.assert_close(top, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(bottom, torch.tensor([0.0, 0.0, 1.0]))


def test_mip_mapped_lookup_averages_under_minification(rasterizer):
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float()[..., None].expand(8, 8, 3)
    tex = Texture2D(checker)
    assert tex.max_mip_level == 3
    uv = _uv([[2.5 / 8, 1.0 - 3.5 / 8]])  # the centre of texel row 3, column 2 (value 1)
    sharp = tex.sample(uv, torch.full((1, 1, 1, 4), 1e-3), rasterizer)
    blurred = tex.sample(uv, torch.tensor([[[[1.0, 0.0, 0.0, -1.0]]]]), rasterizer)  # one pixel spans the texture
    torch.testing.assert_close(sharp, torch.ones_like(sharp))
    torch.testing.assert_close(blurred, torch.full_like(blurred, 0.5))
    assert Texture2D(torch.zeros(6, 4, 3)).max_mip_level == 1  # 6x4 -> 3x2, then an odd extent stops it


def test_ranges_conversions_and_alpha(rasterizer):
    kd = torch.rand(8, 8, 4) * 1.4 - 0.2
    ks = torch.rand(8, 8, 3)
    normal = torch.tensor([0.0, 0.0, 1.0]).expand(8, 8, 3)
    material = TexturedMaterial.from_tensors(kd, ks, normal)
    tensors = material.to_tensors()
    assert set(tensors) == {"kd", "ks", "normal"}
    torch.testing.assert_close(tensors["kd"], kd.clamp(0, 1))
    assert tensors["ks"][..., 1].min() >= 0.08  # roughness floor
    with torch.no_grad():
        material.kd.data += 5.0
    material.clamp_()
    assert material.kd.data.max().item() == 1.0
    sample = material.sample(torch.zeros(1, 2, 1, 3), _uv([[0.1, 0.2], [0.7, 0.4]]), None, rasterizer, smoothness=True)
    assert sample.kd.shape == (1, 2, 1, 3) and sample.alpha.shape == (1, 2, 1, 1)
    assert sample.perturbation is not None and sample.kd_grad.shape == (1, 2, 1, 1)
    assert "normal" not in TexturedMaterial.from_tensors(kd, ks).to_tensors()
    with pytest.raises(ValueError, match="kd needs 3 or 4 channels"):
        TexturedMaterial(Texture2D(torch.zeros(2, 2, 2)), Texture2D(ks))
    with pytest.raises(ValueError, match="no texture coordinates"):
        material.sample(torch.zeros(1, 1, 1, 3))


def test_volumetric_material_ranges_and_smoothness():
    torch.manual_seed(0)
    material = VolumetricMaterial(
        [[-1, -1, -1], [1, 1, 1]],
        n_levels=4,
        log2_table_size=12,
        base_resolution=4,
        finest_resolution=32,
        kd_range=((0.1, 0.1, 0.1), (0.9, 0.9, 0.9)),
    )
    with torch.no_grad():
        material.encoding.table.normal_(0, 1.0)  # large features: outputs span the ranges
    pos = torch.rand(1, 500, 1, 3) * 2 - 1
    sample = material.sample(pos, smoothness=True)
    assert sample.kd.min() >= 0.1 and sample.kd.max() <= 0.9
    assert sample.ks[..., 1].min() >= 0.08
    assert sample.perturbation[..., 2].min() >= 0.0 and sample.perturbation[..., :2].abs().max() <= 1.0
    assert (sample.kd_grad >= 0).all() and sample.kd_grad.mean() > 0
    assert sample.alpha is None
    flat = VolumetricMaterial(
        [[0, 0, 0], [1, 1, 1]],
        n_levels=2,
        log2_table_size=8,
        base_resolution=2,
        finest_resolution=4,
        perturb_normals=False,
    )
    assert flat.sample(pos).perturbation is None and flat.evaluate(pos).shape == (1, 500, 1, 6)
    with pytest.raises(ValueError, match="aabb"):
        VolumetricMaterial([[0, 0, 0], [1, 0, 1]])


def test_volumetric_gradients_reach_the_hash_table():
    torch.manual_seed(1)
    material = VolumetricMaterial(
        [[-1, -1, -1], [1, 1, 1]], n_levels=3, log2_table_size=10, base_resolution=4, finest_resolution=16
    ).double()
    with torch.no_grad():
        material.encoding.table.normal_(0, 0.5)  # away from the ReLU kinks of tiny initial features
    pos = torch.rand(20, 3, dtype=torch.float64) * 2 - 1
    weights = torch.randn(20, 9, dtype=torch.float64)
    (material.evaluate(pos) * weights).sum().backward()
    table = material.encoding.table
    grad = table.grad.clone()
    rows = grad.abs().sum(-1).topk(3).indices.tolist()
    for row in rows:
        with torch.no_grad():
            table[row, 1] += 1e-6
            up = (material.evaluate(pos) * weights).sum().item()
            table[row, 1] -= 2e-6
            down = (material.evaluate(pos) * weights).sum().item()
            table[row, 1] += 1e-6
        assert (up - down) / 2e-6 == pytest.approx(grad[row, 1].item(), rel=1e-5, abs=1e-10)


def test_frozen_texture_reuses_its_mips_until_the_texels_change(rasterizer):
    torch.manual_seed(0)
    tex = Texture2D(torch.rand(16, 16, 3))
    uv = torch.rand(1, 8, 8, 2)
    uv_da = torch.full((1, 8, 8, 4), 0.3)

    def reference():  # the lookup building its own pyramid, as with gradients
        uv_tex = torch.stack([uv[..., 0], 1.0 - uv[..., 1]], -1).contiguous()  # image rows, as sample()
        return rasterizer.texture(
            tex.data.detach(),
            uv_tex,
            (uv_da * torch.tensor([1.0, 1.0, -1.0, -1.0])).contiguous(),
            filter_mode="linear-mipmap-linear",
            boundary_mode="wrap",
            max_mip_level=tex.max_mip_level,
        )

    with torch.no_grad():
        first = tex.sample(uv, uv_da, rasterizer)
        assert tex._mip_cache is not None
        torch.testing.assert_close(first, reference(), rtol=0, atol=0)
        torch.testing.assert_close(tex.sample(uv, uv_da, rasterizer), first, rtol=0, atol=0)
        tex.data.mul_(0.5)  # an in-place change (an optimizer step) must rebuild the pyramid
        torch.testing.assert_close(tex.sample(uv, uv_da, rasterizer), reference(), rtol=0, atol=0)
        torch.testing.assert_close(tex.sample(uv, uv_da, rasterizer), first * 0.5, rtol=1e-6, atol=1e-7)
    # With gradients the lookup builds the pyramid itself, so that they reach the texels.
    tex.sample(uv, uv_da, rasterizer).sum().backward()
    assert tex.data.grad is not None and tex.data.grad.abs().sum() > 0
