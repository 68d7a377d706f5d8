"""Fixtures for the shading tests: the torch rasterizer and analytic meshes."""

import math

import pytest
import torch

from dmtrec.geometry import Mesh
from dmtrec.render.camera import Cameras, look_at


@pytest.fixture(scope="session")
def rasterizer():
    from dmtrec.render.raster import get_rasterizer

    return get_rasterizer("torch", "cpu")


def uv_sphere(radius: float = 1.0, rings: int = 24, segments: int = 48, dtype=torch.float32) -> Mesh:
    """A UV sphere with analytic normals and tangents (+azimuth) and a seam-duplicated UV layout."""
    theta = torch.linspace(0.0, math.pi, rings + 1, dtype=torch.float64)  # from +y down
    phi = torch.linspace(0.0, 2.0 * math.pi, segments + 1, dtype=torch.float64)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    normal = torch.stack([torch.sin(t) * torch.sin(p), torch.cos(t), torch.sin(t) * torch.cos(p)], -1)
    tangent = torch.stack([torch.cos(p), torch.zeros_like(p), -torch.sin(p)], -1)
    uv = torch.stack([p / (2.0 * math.pi), 1.0 - t / math.pi], -1)
    idx = torch.arange((rings + 1) * (segments + 1)).reshape(rings + 1, segments + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = torch.cat([torch.stack([a, b, c], -1).reshape(-1, 3), torch.stack([a, c, d], -1).reshape(-1, 3)])
    pos = (normal * radius).reshape(-1, 3)
    # Drop the zero-area triangles at the poles.
    p0, p1, p2 = pos[faces[:, 0]], pos[faces[:, 1]], pos[faces[:, 2]]
    faces = faces[torch.linalg.cross(p1 - p0, p2 - p0, dim=-1).norm(dim=-1) > 1e-12]
    return Mesh(
        v_pos=pos.to(dtype),
        t_pos_idx=faces,
        v_nrm=normal.reshape(-1, 3).to(dtype),
        t_nrm_idx=faces,
        v_tex=uv.reshape(-1, 2).to(dtype),
        t_tex_idx=faces,
        v_tng=tangent.reshape(-1, 3).to(dtype),
        t_tng_idx=faces,
    )


@pytest.fixture
def sphere() -> Mesh:
    return uv_sphere()


def front_camera(resolution=(64, 64), distance: float = 3.0, fovy_deg: float = 45.0, batch: int = 1) -> Cameras:
    eye = torch.tensor([[0.0, 0.0, distance]]).expand(batch, 3)
    return Cameras.from_fov(look_at(eye, torch.zeros(3)), math.radians(fovy_deg), resolution)


@pytest.fixture
def make_sphere():
    return uv_sphere


@pytest.fixture
def make_camera():
    return front_camera
