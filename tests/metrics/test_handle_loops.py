"""Handle loops: 2 g loops per closed component, closed edge paths, independent and
non-contractible, checked by winding and linking numbers computed from the loops' positions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dmtrec.assets.procedural import displaced_torus
from dmtrec.assets.procedural_shapes import double_torus_sdf, pebble, sdf_mesh
from dmtrec.core.mesh import Mesh
from dmtrec.metrics.handle_loops import handle_loops


def _edge_set(mesh: Mesh) -> set:
    f = mesh.t_pos_idx.tolist()
    return {tuple(sorted((a[i], a[(i + 1) % 3]))) for a in f for i in range(3)}


def _assert_edge_cycle(mesh: Mesh, loop: dict) -> list:
    ids = loop["vertices"]
    assert torch.allclose(mesh.v_pos[ids].double(), torch.tensor(loop["points"], dtype=torch.float64), atol=1e-6)
    edges = _edge_set(mesh)
    assert len(set(ids)) == len(ids) >= 3
    for a, b in zip(ids, ids[1:] + ids[:1]):
        assert tuple(sorted((a, b))) in edges
    return ids


def test_torus_grid_meridian_and_inner_equator():
    nu, nv, major, minor = 48, 24, 1.0, 0.4
    mesh = displaced_torus(nu, nv, major, minor, amplitude=0.0)
    (comp,) = handle_loops(mesh.v_pos, mesh.t_pos_idx)
    assert comp["genus"] == 1 and comp["skipped"] is None and len(comp["loops"]) == 2
    windings = []
    for loop in comp["loops"]:
        ids = _assert_edge_cycle(mesh, loop)
        iu, iv = np.array(ids) // nv, np.array(ids) % nv
        du = (np.roll(iu, -1) - iu + nu // 2) % nu - nu // 2
        dv = (np.roll(iv, -1) - iv + nv // 2) % nv - nv // 2
        windings.append((du.sum() // nu, dv.sum() // nv))
    # independent: the winding matrix is unimodular; both loops non-contractible
    assert abs(windings[0][0] * windings[1][1] - windings[0][1] * windings[1][0]) == 1
    # the shortest basis: the tube's polygon (24 sides of radius 0.4), then the inner equator
    # (48 sides of radius 0.6)
    lengths = sorted(loop["length"] for loop in comp["loops"])
    assert lengths[0] == pytest.approx(2 * nv * minor * math.sin(math.pi / nv), rel=1e-5)
    assert lengths[1] == pytest.approx(2 * nu * (major - minor) * math.sin(math.pi / nu), rel=1e-5)


def _winding_about_y_line(points: np.ndarray, x0: float) -> float:
    angle = np.arctan2(points[:, 2], points[:, 0] - x0)
    step = np.diff(np.concatenate([angle, angle[:1]]))
    return float(((step + math.pi) % (2 * math.pi) - math.pi).sum() / (2 * math.pi))


def _crossings_of_disk(points: np.ndarray, x0: float, radius: float, height: float = 1.234e-3) -> int:
    """Signed crossings of the closed polyline through the disk ``y = height``, ``|(x - x0, z)| < radius``
    (its linking number with the disk's boundary circle)."""
    a, b = points, np.roll(points, -1, axis=0)
    sa, sb = a[:, 1] - height, b[:, 1] - height
    cross = (sa < 0) != (sb < 0)
    t = sa[cross] / (sa[cross] - sb[cross])
    hit = a[cross] + t[:, None] * (b[cross] - a[cross])
    inside = np.hypot(hit[:, 0] - x0, hit[:, 2]) < radius
    return int(np.sign(sb[cross] - sa[cross])[inside].sum())


def test_double_torus_four_independent_loops():
    mesh = sdf_mesh(double_torus_sdf, resolution=64)
    (comp,) = handle_loops(mesh.v_pos, mesh.t_pos_idx)
    assert comp["genus"] == 2 and len(comp["loops"]) == 4
    rows = []
    for loop in comp["loops"]:
        _assert_edge_cycle(mesh, loop)
        p = np.array(loop["points"])
        # linking with the tubes' core circles (inside the solid) and the holes' axes (outside):
        # Alexander duality makes these four numbers coordinates of the loop's homology class
        rows.append(
            [
                _crossings_of_disk(p, -0.42, 0.4),
                _crossings_of_disk(p, 0.42, 0.4),
                round(_winding_about_y_line(p, -0.42)),
                round(_winding_about_y_line(p, 0.42)),
            ]
        )
    assert round(abs(np.linalg.det(np.array(rows, dtype=float)))) % 2 == 1, rows


def test_genus_zero_and_two_components():
    sphere = pebble(32, 16)
    (comp,) = handle_loops(sphere.v_pos, sphere.t_pos_idx)
    assert comp["genus"] == 0 and comp["loops"] == [] and comp["skipped"] is None
    big = displaced_torus(40, 20, amplitude=0.0)
    small = displaced_torus(24, 12, major=0.5, minor=0.2, amplitude=0.0)
    shift = torch.tensor([3.0, 0.0, 0.0])
    both = Mesh(
        torch.cat([big.v_pos, small.v_pos + shift]),
        torch.cat([big.t_pos_idx, small.t_pos_idx + big.v_pos.shape[0]]),
    )
    comps = handle_loops(both.v_pos, both.t_pos_idx)
    assert [c["triangles"] for c in comps] == [1600, 576]
    assert [len(c["loops"]) for c in comps] == [2, 2]
    assert all(loop["centroid"][0] > 2.0 for loop in comps[1]["loops"])


def test_open_surface_and_limits_skip():
    tri = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    (comp,) = handle_loops(tri, torch.tensor([[0, 1, 2]]))
    assert comp["genus"] is None and comp["skipped"] == "not a closed edge-manifold surface"
    torus = displaced_torus(24, 12, amplitude=0.0)
    (comp,) = handle_loops(torus.v_pos, torus.t_pos_idx, max_genus=0)
    assert comp["genus"] == 1 and comp["loops"] == [] and "max_genus" in comp["skipped"]
    with pytest.raises(ValueError, match="integer"):
        handle_loops(tri, torch.tensor([[0.0, 1.0, 2.0]]))
