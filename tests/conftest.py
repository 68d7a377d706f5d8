import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (CI clones next to shared/); DMTREC_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("DMTREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Deterministic, 2-core friendly defaults for the CPU suite.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def _gpu_available() -> bool:
    if not torch.cuda.is_available():
        return False
    from dmtrec.render.raster import nvdiffrast_available

    return nvdiffrast_available()


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _gpu_available():
        skip = pytest.mark.skip(reason="needs CUDA and a compiled nvdiffrast")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def spot_dataset(tmp_path_factory):
    """Factory ``make(views, res, val_views, test_views, probe_res) -> Path``: a NeRF-synthetic
    folder of Spot rendered under the shared probe (seed 0, torch backend on the CPU), made once
    per distinct settings per session."""
    made = {}

    def make(views: int, res: int, val_views: int, test_views: int, probe_res: int) -> Path:
        key = (views, res, val_views, test_views, probe_res)
        if key not in made:
            from dmtrec.datasets.make_dataset import make_dataset

            if not (SHARED_DATA / "meshes" / "spot" / "spot.obj").is_file():
                pytest.skip(f"shared data not found at {SHARED_DATA}")
            out = tmp_path_factory.mktemp("spot") / f"spot{res}"
            made[key] = make_dataset(SHARED_DATA / "meshes" / "spot" / "spot.obj",
                                     SHARED_DATA / "envmaps" / "mud_road_puresky_1k.hdr", views=views, res=res,
                                     out=out, seed=0, val_views=val_views, test_views=test_views,
                                     probe_res=probe_res, device="cpu", rasterizer="torch")
        return made[key]

    return make
