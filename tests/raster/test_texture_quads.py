"""The texture op's quad-table path (wrapped 2D textures read many times per texel, where one
gather fetches a texel and its three wrapped neighbours) against the same expectations as the
four-tap path: the wrap-mode tests of test_texture.py, rerun with the quad table forced on."""

import pytest
from test_texture import (
    MIP_MODES,
    test_boundary_modes_at_the_texture_edge,
    test_custom_mip_is_sampled_and_gets_the_gradients,
    test_gradient_reaches_tex_through_the_internal_pyramid,
    test_gradients_match_finite_differences,
    test_level_gradient_follows_nvdiffrast_at_its_kinks,
    test_linear_hits_texel_centres_and_blends_between_them,
    test_mip_level_bias_alone_sets_level_and_is_clamped,
    test_prebuilt_mip_equals_internal_one,
    test_tex_batch_of_one_broadcasts,
    test_uv_da_selects_level_by_footprint_in_texels,
    test_uv_origin_is_texel_00_corner_without_flip,
)

import dmtrec.render.raster.torch_texture as torch_texture

__all__ = [  # collected here again, under the fixture below
    "test_boundary_modes_at_the_texture_edge",
    "test_custom_mip_is_sampled_and_gets_the_gradients",
    "test_gradient_reaches_tex_through_the_internal_pyramid",
    "test_level_gradient_follows_nvdiffrast_at_its_kinks",
    "test_linear_hits_texel_centres_and_blends_between_them",
    "test_mip_level_bias_alone_sets_level_and_is_clamped",
    "test_prebuilt_mip_equals_internal_one",
    "test_tex_batch_of_one_broadcasts",
    "test_uv_da_selects_level_by_footprint_in_texels",
    "test_uv_origin_is_texel_00_corner_without_flip",
]


@pytest.fixture(autouse=True)
def quad_table_always(monkeypatch):
    monkeypatch.setattr(torch_texture, "QUAD_MIN_READS", 0)
    calls = []
    original = torch_texture._sample_bilinear_wrap
    monkeypatch.setattr(torch_texture, "_sample_bilinear_wrap", lambda *a: calls.append(1) or original(*a))
    yield calls


@pytest.mark.parametrize("filter_mode", ("linear",) + MIP_MODES)
def test_wrap_gradients_match_finite_differences_through_quads(filter_mode, quad_table_always):
    test_gradients_match_finite_differences("wrap", filter_mode)
    assert quad_table_always  # the quad path ran
