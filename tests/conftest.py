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
