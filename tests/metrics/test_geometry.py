import math

import pytest
import torch

from dmtrec.geometry import Mesh
from dmtrec.metrics import chamfer, f_score, geometry_report, nearest_neighbors, normal_consistency, sample_surface

SQUARE_V = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
SQUARE_F = torch.tensor([[0, 1, 2], [0, 2, 3]])


def mesh_area(v, f):
    return float(0.5 * torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]).norm(dim=1).sum())


# --- sampling -------------------------------------------------------------------------------


def test_samples_lie_on_the_surface_with_unit_normals_and_are_seeded():
    points, normals = sample_surface(SQUARE_V, SQUARE_F, 5000, seed=3)
    assert points.shape == normals.shape == (5000, 3)
    assert points[:, 2].abs().max() == 0 and points[:, :2].abs().max() <= 1
    assert torch.allclose(normals, torch.tensor([0.0, 0.0, 1.0]).expand(5000, 3))
    again, _ = sample_surface(SQUARE_V, SQUARE_F, 5000, seed=3)
    other, _ = sample_surface(SQUARE_V, SQUARE_F, 5000, seed=4)
    assert torch.equal(points, again) and not torch.equal(points, other)


def test_sampling_is_uniform_by_area():
    # triangles of areas 1 and 3 (and a zero-area one that must never be picked)
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 1], [3, 0, 1], [0, 2, 1], [5, 5, 5]])
    f = torch.tensor([[0, 1, 2], [6, 6, 6], [3, 4, 5]])
    n = 40000
    points, _ = sample_surface(v, f, n, seed=0)
    upper = points[:, 2] == 1
    p = 0.75
    assert abs(upper.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)
    # uniform inside a triangle: the mean is its centroid, and no sample lies outside it
    lower = points[~upper]
    assert torch.allclose(lower.mean(dim=0), torch.tensor([1 / 3, 2 / 3, 0.0]), atol=0.01)
    assert (lower[:, 0] / 1.0 + lower[:, 1] / 2.0 <= 1 + 1e-6).all() and (lower[:, :2] >= 0).all()


@pytest.mark.parametrize(
    "v, f, n, match",
    [
        (SQUARE_V, SQUARE_F.float(), 10, "integer"),
        (SQUARE_V, SQUARE_F + 3, 10, r"indices must lie in \[0, 4\)"),
        (SQUARE_V[:, :2], SQUARE_F, 10, r"v_pos must be a \[V, 3\]"),
        (torch.zeros(4, 3), SQUARE_F, 10, "non-zero area"),
        (SQUARE_V * torch.tensor([1.0, float("nan"), 1.0]), SQUARE_F, 10, "NaN or infinite"),
        (SQUARE_V, SQUARE_F, 0, "n must be positive"),
    ],
)
def test_sampling_rejects_bad_input(v, f, n, match):
    with pytest.raises(ValueError, match=match):
        sample_surface(v, f, n)


# --- nearest neighbours and Chamfer ---------------------------------------------------------


def test_nearest_neighbors_match_brute_force_across_blocks():
    gen = torch.Generator().manual_seed(0)
    query, ref = (
        torch.rand(57, 3, generator=gen, dtype=torch.float64),
        torch.rand(31, 3, generator=gen, dtype=torch.float64),
    )
    brute = (query[:, None, :] - ref[None, :, :]).norm(dim=-1)
    dist, index = nearest_neighbors(query, ref, block_elems=40)  # 1 query row per block
    assert torch.equal(index, brute.argmin(dim=1))
    assert torch.allclose(dist, brute.min(dim=1).values, rtol=0, atol=1e-12)


def test_nearest_neighbors_keep_small_distances_exact_far_from_the_origin():
    ref = torch.tensor([[1000.0, 1000.0, 1000.0], [1000.0, 1000.5, 1000.0]])
    query = ref[:1] + torch.tensor([[0.0, 0.0, 2.0**-10]])  # representable at 1000 in float32
    dist, index = nearest_neighbors(query, ref)
    # |a|^2 + |b|^2 - 2ab (cdist's matrix-product mode) would lose all digits here in float32
    assert index.item() == 0 and dist.item() == 2.0**-10


def test_chamfer_of_a_mesh_against_itself_is_exactly_zero_on_its_vertices(shared_obj):
    v, _ = shared_obj("spot/spot.obj")
    l1, l2 = chamfer(v, v)
    assert l1.item() == 0.0 and l2.item() == 0.0
    assert f_score(v, v, [1e-9]).tolist() == [1.0]


def test_self_chamfer_of_independent_samples_is_the_sampling_floor(icosphere):
    # n uniform samples over area A: mean distance to the nearest is 0.5 sqrt(A / n), its square A / (pi n)
    v, f = icosphere(4)
    n, area = 8000, mesh_area(v, f)
    a, _ = sample_surface(v, f, n, seed=0)
    b, _ = sample_surface(v, f, n, seed=1)
    l1, l2 = chamfer(a, b)
    assert l1.item() == pytest.approx(0.5 * math.sqrt(area / n), rel=0.05)
    assert l2.item() == pytest.approx(area / (math.pi * n), rel=0.08)
    # fraction within t of the other set: 1 - exp(-pi t^2 n / A); at t = sqrt(A / (pi n)) that is 1 - 1/e
    t0 = math.sqrt(area / (math.pi * n))
    f_at = f_score(a, b, [t0, 3 * t0])
    assert f_at[0].item() == pytest.approx(1 - math.exp(-1), abs=0.02)
    assert f_at[1].item() > 0.99


def test_concentric_spheres_have_chamfer_equal_to_their_gap(icosphere):
    d, n = 0.1, 8000
    v, f = icosphere(4)
    inner, _ = sample_surface(v, f, n, seed=0)
    outer, _ = sample_surface(v * (1 + d), f, n, seed=1)
    l1, l2 = chamfer(inner, outer)
    assert abs(l1.item() - d) < 0.05 * d  # the acceptance bound
    # sharper: a point at gap d from a sample set sees sqrt(d^2 + r^2), r the in-surface distance,
    # E[r^2] = A / (pi n): the mean is d + E[r^2] / (2 d) to first order
    r2 = (mesh_area(v, f) + mesh_area(v * (1 + d), f)) / (2 * math.pi * n)
    assert l1.item() == pytest.approx(d + r2 / (2 * d), rel=0.01)
    assert l2.item() == pytest.approx(d * d + r2, rel=0.01)
    assert f_score(inner, outer, [0.5 * d, 2 * d]).tolist() == [0.0, 1.0]
    assert f_score(outer, inner, [0.5 * d, 2 * d]).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("flip_winding", [False, True])
def test_normal_consistency_of_tilted_planes_is_the_cosine_of_the_tilt(flip_winding):
    theta = 0.6
    rot = torch.tensor([[1.0, 0, 0], [0, math.cos(theta), -math.sin(theta)], [0, math.sin(theta), math.cos(theta)]])
    tilted_f = SQUARE_F.flip(1) if flip_winding else SQUARE_F
    a, na = sample_surface(SQUARE_V, SQUARE_F, 500, seed=0)
    b, nb = sample_surface(SQUARE_V @ rot.T, tilted_f, 500, seed=1)
    assert normal_consistency(a, na, b, nb).item() == pytest.approx(math.cos(theta), abs=1e-6)


# --- the report ------------------------------------------------------------------------------


def test_report_of_a_mesh_against_itself(icosphere):
    v, f = icosphere(3)
    n = 4000
    report = geometry_report(Mesh(v, f), Mesh(v, f), n_samples=n, seed=0, thresholds=(0.02, 0.05))
    # ref_bbox divides by the longest side (2): the sampling floor is 0.5 sqrt(A / n) / 2
    assert report["scale"] == pytest.approx(0.5)
    assert report["chamfer_l1"] == pytest.approx(0.25 * math.sqrt(mesh_area(v, f) / n), rel=0.08)
    assert report["accuracy_l1"] + report["completeness_l1"] == pytest.approx(2 * report["chamfer_l1"])
    assert report["f_score@0.05"] > 0.99 and report["normal_consistency"] > 0.99
    assert report["pred_genus"] == report["ref_genus"] == 0 and report["pred_watertight"]
    assert report["pred_triangles"] == 1280 and report["n_samples"] == n


def test_report_normalisation_makes_metrics_scale_free(icosphere):
    v, f = icosphere(3)
    pred, ref = Mesh(v * 1.1 + 0.3, f), Mesh(v, f)
    base = geometry_report(pred, ref, n_samples=1500, normalize="ref_bbox")
    scaled = geometry_report(Mesh(pred.v_pos * 7, f), Mesh(ref.v_pos * 7, f), n_samples=1500, normalize="ref_bbox")
    for key in ("chamfer_l1", "chamfer_l2", "f_score@0.01", "normal_consistency"):
        assert scaled[key] == pytest.approx(base[key], rel=1e-4, abs=1e-6)
    raw = geometry_report(pred, ref, n_samples=1500, normalize="none")
    raw_scaled = geometry_report(Mesh(pred.v_pos * 7, f), Mesh(ref.v_pos * 7, f), n_samples=1500, normalize="none")
    assert raw_scaled["chamfer_l1"] == pytest.approx(7 * raw["chamfer_l1"], rel=1e-4)
    assert raw_scaled["chamfer_l2"] == pytest.approx(49 * raw["chamfer_l2"], rel=1e-4)
    assert raw["chamfer_l1"] == pytest.approx(base["chamfer_l1"] / base["scale"], rel=1e-4)


def test_report_scores_an_empty_prediction_as_infinitely_far(icosphere):
    v, f = icosphere(1)
    report = geometry_report(Mesh(v, f[:0]), Mesh(v, f), n_samples=100, thresholds=(0.01,))
    assert report["chamfer_l1"] == math.inf and report["f_score@0.01"] == 0.0
    assert report["pred_triangles"] == 0 and report["pred_watertight"] is False


def test_report_rejects_bad_arguments(icosphere):
    v, f = icosphere(1)
    with pytest.raises(ValueError, match="normalize must be one of"):
        geometry_report(Mesh(v, f), Mesh(v, f), normalize="unit")
    with pytest.raises(TypeError, match="pred_mesh must be a Mesh"):
        geometry_report(v, Mesh(v, f))
    with pytest.raises(ValueError, match="ref_mesh has no triangles"):
        geometry_report(Mesh(v, f), Mesh(v, f[:0]))


@pytest.mark.gpu
def test_report_on_cuda_matches_cpu(icosphere):
    v, f = icosphere(3)
    pred, ref = Mesh(v * 1.05, f), Mesh(v, f)
    cpu = geometry_report(pred, ref, n_samples=3000)
    gpu = geometry_report(pred.to("cuda"), ref.to("cuda"), n_samples=3000)
    for key in ("chamfer_l1", "chamfer_l2", "f_score@0.02", "normal_consistency"):
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-4, abs=1e-6)
    assert gpu["pred_genus"] == 0
