"""Pass-2 geometry: UVs required, state-dict round trip (what checkpoints hold), locked positions."""

import pytest
import torch

from dmtrec.geometry import Mesh, MeshGeometry


def _quad(with_uv: bool = True) -> Mesh:
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    if not with_uv:
        return Mesh(v_pos=v, t_pos_idx=f)
    return Mesh(v_pos=v, t_pos_idx=f, v_tex=v[:, :2].clone(), t_tex_idx=f.clone())


def test_needs_uvs():
    with pytest.raises(ValueError, match="unwrap it first"):
        MeshGeometry.from_mesh(_quad(with_uv=False))


def test_state_dict_round_trip_through_an_empty_module():
    saved = MeshGeometry.from_mesh(_quad())
    with torch.no_grad():
        saved.v_pos += 0.25  # moved during the pass; initial_pos keeps the start
    state = {f"geometry.{k}": v for k, v in saved.state_dict().items()}
    restored = MeshGeometry.empty_like_state(state, "geometry.")
    restored.load_state_dict({k.removeprefix("geometry."): v for k, v in state.items()})
    for key, value in saved.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    assert torch.equal(restored.initial_pos, _quad().v_pos)


def test_locked_positions_take_no_gradient_and_the_mesh_carries_its_frame():
    assert not MeshGeometry.from_mesh(_quad(), lock_pos=True).v_pos.requires_grad
    geometry = MeshGeometry.from_mesh(_quad())
    mesh = geometry.mesh()
    assert mesh.v_nrm is not None and mesh.v_tng is not None
    torch.testing.assert_close(mesh.v_nrm[0], torch.tensor([0.0, 0.0, 1.0]))  # the quad faces +z
    mesh.v_pos.sum().backward()
    assert torch.equal(geometry.v_pos.grad, torch.ones(4, 3))
