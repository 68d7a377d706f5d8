"""The suite's procedural objects have the topology they state, are closed and outward, fit in
[-1, 1]^3, and are written as OBJ files dmtrec reads back with their materials."""

from __future__ import annotations

import pytest
import torch

from dmtrec.assets.procedural_shapes import SHAPES, write_shape
from dmtrec.io.mesh_files import read_mesh
from dmtrec.metrics.topology import mesh_topology


def _signed_volume(mesh) -> float:
    v, f = mesh.v_pos.double(), mesh.t_pos_idx
    return float((torch.linalg.cross(v[f[:, 0]], v[f[:, 1]]) * v[f[:, 2]]).sum() / 6)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_topology(name):
    shape = SHAPES[name]
    mesh = shape.build()
    report = mesh_topology(mesh.v_pos, mesh.t_pos_idx)
    assert report["watertight"]
    assert (report["components"], report["genus"]) == (shape.components, shape.genus)
    assert _signed_volume(mesh) > 0  # outward winding
    assert float(mesh.v_pos.abs().max()) < 1.0 + 1e-3  # inside [-1, 1]^3, clear of the grid's edge


def test_write_shape_round_trip(tmp_path):
    path = write_shape("torus", tmp_path, texture_res=16)
    mesh, textures = read_mesh(path)
    assert mesh_topology(mesh.v_pos, mesh.t_pos_idx)["genus"] == 1
    assert torch.allclose(textures["ks"].reshape(-1, 3)[0], torch.tensor([0.0, 0.12, 0.0]), atol=1e-2)
    with pytest.raises(ValueError, match="unknown shape"):
        write_shape("teapot", tmp_path)
