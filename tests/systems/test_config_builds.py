"""The modules the model's config sections build, and their option checks."""

import pytest
import torch

from dmtrec.systems.config import DMTetConfig, MaterialConfig


def test_volumetric_material_covers_the_whole_grid_not_the_initial_surface():
    # A small initial sphere must not shrink the material's box: the surface grows beyond it.
    geometry = DMTetConfig(resolution=8, scale=2.0, init="sphere").build()
    surface_lo, surface_hi = geometry.aabb()
    material = MaterialConfig(volumetric={"n_levels": 2, "log2_table_size": 8}).volumetric_material(geometry)
    assert torch.allclose(material.aabb, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    assert bool((surface_hi - surface_lo < 1.9).all())


def test_sdf_clean_up_options_are_checked():
    with pytest.raises(ValueError, match="^model.dmtet.morphology: "):
        DMTetConfig(morphology="dilate")
    with pytest.raises(ValueError, match="^model.dmtet.morphology_every: "):
        DMTetConfig(morphology_every=-1)
