import os
from pathlib import Path
from typing import Callable, Tuple

import pytest
import torch
from common import DATA, PROBE_HDR, QUIET_ENV, SHARED_DATA, SPOT_OBJ

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


@pytest.fixture(autouse=True)
def _quiet_offline_wandb(monkeypatch):
    """wandb quiet and offline, ``${DMTREC_DATA}`` the repository's data/, in every test."""
    for key, value in QUIET_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def shared_data() -> Path:
    """The repository's data/ folder (meshes/, envmaps/)."""
    return DATA


@pytest.fixture
def nvdiffrec_tets() -> Path:
    """nvdiffrec's tet grid folder (``32_tets.npz``, ``64_tets.npz``), or a skip saying why."""
    tets = SHARED_DATA / "tets"
    if not (tets / "32_tets.npz").is_file():
        pytest.skip(f"nvdiffrec's tet grids (NVIDIA's files, not shipped) not found at {tets}")
    return tets


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
            from dmtrec.datasets.reference_mesh import ReferenceRender

            out = tmp_path_factory.mktemp("spot") / f"spot{res}"
            made[key] = make_dataset(
                SPOT_OBJ,
                PROBE_HDR,
                views=views,
                res=res,
                out=out,
                seed=0,
                val_views=val_views,
                test_views=test_views,
                render=ReferenceRender(probe_res=probe_res, device="cpu", rasterizer="torch"),
            )
        return made[key]

    return make


# Test meshes: trimesh's primitives as dmtrec tensors, and the shipped OBJs.
MeshTensors = Tuple[torch.Tensor, torch.Tensor]


def _to_tensors(mesh) -> MeshTensors:
    return torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces, dtype=torch.long)


@pytest.fixture
def icosphere() -> Callable[..., MeshTensors]:
    """``icosphere(subdivisions, radius) -> (v_pos [V, 3], faces [F, 3])``, vertices on the sphere."""
    trimesh = pytest.importorskip("trimesh")
    return lambda subdivisions=4, radius=1.0: _to_tensors(trimesh.creation.icosphere(subdivisions, radius))


@pytest.fixture
def torus() -> MeshTensors:
    trimesh = pytest.importorskip("trimesh")
    return _to_tensors(trimesh.creation.torus(major_radius=1.0, minor_radius=0.3))


def read_obj_geometry(path: Path) -> MeshTensors:
    """Positions and triangles of an OBJ file (first index of each ``f`` corner)."""
    verts, faces = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            faces.append([int(c.split("/")[0]) - 1 for c in line.split()[1:4]])
    return torch.tensor(verts, dtype=torch.float32), torch.tensor(faces, dtype=torch.long)


@pytest.fixture
def shared_obj(shared_data) -> Callable[[str], MeshTensors]:
    """``shared_obj("spot/spot.obj")`` reads a mesh under ``shared_data/meshes``."""
    return lambda relative: read_obj_geometry(shared_data / "meshes" / relative)


@pytest.fixture(scope="session")
def spot_views(spot_dataset) -> Path:
    """The tiny Spot dataset of the end-to-end and multi-process fits (48 x 48, 48 views)."""
    return spot_dataset(views=48, res=48, val_views=2, test_views=4, probe_res=64)
