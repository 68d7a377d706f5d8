from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def spot_views(spot_dataset) -> Path:
    """The tiny Spot dataset of the end-to-end and multi-process fits (48 x 48, 48 views)."""
    return spot_dataset(views=48, res=48, val_views=2, test_views=4, probe_res=64)
