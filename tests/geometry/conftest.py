import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_grid_cache(tmp_path_factory):
    """Generated tet grids go to a per-session folder, not the user's cache."""
    old = os.environ.get("DMTREC_CACHE")
    os.environ["DMTREC_CACHE"] = str(tmp_path_factory.mktemp("dmtrec_cache"))
    yield
    if old is None:
        os.environ.pop("DMTREC_CACHE", None)
    else:
        os.environ["DMTREC_CACHE"] = old
