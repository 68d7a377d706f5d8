import pytest
import torch

from dmtrec.metrics import mesh_topology
from dmtrec.metrics.topology import connected_components


def test_connected_components_labels_path_cycle_and_isolated_nodes():
    # nodes 0-1-2 path, 3-4-5-3 cycle, 6 isolated; edges listed out of order on purpose
    a = torch.tensor([2, 5, 0, 4, 3])
    b = torch.tensor([1, 3, 1, 5, 4])
    assert connected_components(7, a, b).tolist() == [0, 0, 0, 1, 1, 1, 2]


def test_icosphere_is_a_watertight_genus_0_surface(icosphere):
    v, f = icosphere(3)
    topo = mesh_topology(v, f)
    assert topo["triangles"] == 1280 and topo["vertices"] == 642 and topo["edges"] == 1920
    assert topo["watertight"] and topo["edge_manifold"] and topo["consistently_oriented"]
    assert topo["components"] == 1 and topo["euler_characteristic"] == 2 and topo["genus"] == 0


def test_torus_has_genus_1(torus):
    topo = mesh_topology(*torus)
    assert topo["watertight"] and topo["euler_characteristic"] == 0 and topo["genus"] == 1


def test_sphere_with_one_hole_is_not_watertight_but_keeps_genus_0(icosphere):
    v, f = icosphere(2)
    topo = mesh_topology(v, f[1:])
    assert not topo["watertight"]
    assert topo["boundary_edges"] == 3 and topo["boundary_loops"] == 1
    assert topo["euler_characteristic"] == 1 and topo["genus"] == 0


def test_sphere_with_two_holes_is_an_annulus_of_genus_0(icosphere):
    v, f = icosphere(2)
    centroids = v[f].mean(dim=1)
    far = int((centroids @ centroids[0]).argmin())  # the face opposite face 0
    keep = torch.ones(len(f), dtype=torch.bool)
    keep[[0, far]] = False
    topo = mesh_topology(v, f[keep])
    assert topo["boundary_edges"] == 6 and topo["boundary_loops"] == 2
    assert topo["euler_characteristic"] == 0 and topo["genus"] == 0


def test_flipped_triangle_breaks_orientation_only(icosphere):
    v, f = icosphere(2)
    f = f.clone()
    f[7] = f[7].flip(0)
    topo = mesh_topology(v, f)
    assert topo["edge_manifold"] and topo["boundary_edges"] == 0
    assert not topo["consistently_oriented"] and not topo["watertight"]


def test_two_spheres_and_a_torus_sum_their_genera(icosphere, torus):
    v1, f1 = icosphere(1)
    v2, f2 = torus
    v = torch.cat([v1, v1 + 3.0, v2 - 3.0])
    f = torch.cat([f1, f1 + len(v1), f2 + 2 * len(v1)])
    topo = mesh_topology(v, f)
    assert topo["components"] == 3 and topo["component_genus"] == [0, 0, 1] and topo["genus"] == 1
    assert topo["watertight"]


def test_spheres_touching_at_a_vertex_are_two_genus_0_components(icosphere):
    v, f = icosphere(1)
    # second copy reflected through vertex 0 so both share exactly that vertex
    v2 = 2 * v[0] - v
    f2 = f.flip(1) + len(v)  # reflection reverses winding; flip it back
    f2[f2 == len(v)] = 0
    topo = mesh_topology(torch.cat([v, v2]), torch.cat([f, f2]))
    assert topo["components"] == 2 and topo["component_genus"] == [0, 0] and topo["watertight"]


def test_non_manifold_edge_leaves_genus_undefined(icosphere):
    v, f = icosphere(1)
    a, b = f[0, 0].item(), f[0, 1].item()
    fin = torch.tensor([[b, a, len(v)]])  # a third triangle on edge (a, b)
    topo = mesh_topology(torch.cat([v, torch.tensor([[5.0, 5.0, 5.0]])]), torch.cat([f, fin]))
    assert not topo["edge_manifold"] and not topo["watertight"]
    assert topo["genus"] is None and topo["component_genus"] == [None]


def test_welding_closes_a_triangle_soup(icosphere):
    v, f = icosphere(2)
    soup_v = v[f.reshape(-1)]
    soup_f = torch.arange(len(soup_v)).reshape(-1, 3)
    welded = mesh_topology(soup_v, soup_f)
    assert welded["watertight"] and welded["genus"] == 0 and welded["vertices"] == len(v)
    unwelded = mesh_topology(soup_v, soup_f, weld=False)
    assert unwelded["components"] == len(f) and not unwelded["watertight"]


def test_degenerate_triangles_are_counted_and_ignored(icosphere):
    v, f = icosphere(1)
    topo = mesh_topology(v, torch.cat([f, torch.tensor([[0, 0, 1]])]))
    assert topo["triangles"] == len(f) + 1 and topo["degenerate_triangles"] == 1
    assert topo["watertight"] and topo["genus"] == 0


def test_empty_mesh():
    topo = mesh_topology(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.long))
    assert topo["triangles"] == 0 and topo["components"] == 0
    assert not topo["watertight"] and topo["genus"] is None


def test_float_faces_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="faces must be an integer"):
        mesh_topology(torch.zeros(3, 3), torch.zeros(1, 3))


@pytest.mark.parametrize("relative, genus", [("spot/spot.obj", 0), ("bob/bob_tri.obj", 1)])
def test_reference_meshes_match_trimesh(shared_obj, relative, genus):
    trimesh = pytest.importorskip("trimesh")
    v, f = shared_obj(relative)
    topo = mesh_topology(v, f)
    independent = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    assert topo["genus"] == genus
    assert topo["euler_characteristic"] == independent.euler_number
    assert topo["watertight"] == independent.is_watertight == True  # noqa: E712
    assert topo["components"] == independent.body_count == 1
