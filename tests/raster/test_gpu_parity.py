"""Parity of the torch backend with nvdiffrast on a GPU, tensor by tensor (needs CUDA + nvdiffrast).

Scenes: a bumpy sphere seen from several cameras (batch 4, a size that is no multiple of 8),
the same sphere partly off-screen and very close (vertices beyond cudaraster's guard band),
the camera inside the sphere (triangles crossing the near plane and w = 0), and a soup of
random overlapping triangles of both facings.

Tolerances, and why:
* rasterize: triangle ids may differ only on pixels where the two disagree about a clipped
  triangle's edge (float rounding): at most 0.1 % of the pixels. Where ids agree, (u, v) and
  z/w come from the same float32 formula, differing by fused multiply-adds on the GPU: 99.9 %
  within 1e-5, all within 1e-3 (thin triangles amplify rounding).
* everything downstream is fed nvdiffrast's own ``rast`` so that each op is compared alone.
* gradients are sums of float32 atomics in a different order, and where a float-rounding
  decision (an edge seen as silhouette or not) differs, a few elements differ entirely: at least
  99.9 % of the elements must agree to 1e-3 (relative, see ``_fraction_close``).
Each test prints its measured worst-case differences (run with ``-s``).
"""

import math

import numpy as np
import pytest
import torch
from raster_helpers import icosphere, perspective

from dmtrec.render.raster import get_rasterizer
from dmtrec.render.raster.torch_backend import TorchRasterizer
from dmtrec.render.raster.torch_common import float_to_tri_id

pytestmark = pytest.mark.gpu

SIZE = (190, 250)
MAX_ID_MISMATCH = 1e-3
SCENES = ["sphere", "offscreen", "near-plane", "soup"]


def _rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _sphere_views(rng, offsets, scale=1.0):
    verts, faces = icosphere(3)
    verts = verts * (1 + 0.05 * np.sin(5 * verts[:, :1]) * np.cos(7 * verts[:, 1:2])) * scale
    proj = perspective(math.radians(50), SIZE[1] / SIZE[0], near=0.1, far=20.0)
    pos = []
    for offset in offsets:
        cam = verts @ _rotation(rng).T + np.asarray(offset)
        pos.append(np.concatenate([cam, np.ones((len(cam), 1))], 1) @ proj.T)
    return np.stack(pos), faces


def scene(name):
    rng = np.random.default_rng(SCENES.index(name))
    if name == "sphere":
        pos, faces = _sphere_views(rng, [(0, 0, -3.0), (0.3, -0.2, -2.5), (-0.4, 0.1, -4.0), (0.0, 0.5, -3.5)])
    elif name == "offscreen":
        pos, faces = _sphere_views(rng, [(1.8, 0.3, -2.5), (-1.5, -1.2, -2.0), (0.2, 0.1, -1.3), (0.9, 0.0, -1.2)])
    elif name == "near-plane":
        pos, faces = _sphere_views(rng, [(0, 0, -0.5), (0.2, 0.1, -0.9), (0, 0, 0.0), (0.5, 0.3, -1.05)])
    else:  # soup
        n = 400
        centres = rng.uniform(-1, 1, size=(4, n, 1, 3)) * [1, 1, 0.9]
        corners = centres + rng.normal(scale=0.15, size=(4, n, 3, 3))
        w = rng.uniform(0.5, 2.0, size=(4, n, 3, 1))
        pos = np.concatenate([corners[..., :2] * w, corners[..., 2:] * w, w], -1).reshape(4, 3 * n, 4)
        faces = np.arange(3 * n).reshape(n, 3)
    return (
        torch.tensor(pos, dtype=torch.float32, device="cuda").contiguous(),
        torch.tensor(faces, dtype=torch.int32, device="cuda").contiguous(),
    )


@pytest.fixture(scope="module")
def backends():
    return TorchRasterizer("cuda"), get_rasterizer("nvdiffrast", "cuda")


def _relative_l2(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _fraction_close(ours, ref, rtol=1e-3):
    """Fraction of elements within ``rtol`` of the reference, relative to themselves or, for small
    ones, to the largest reference element (float32 atomics sum in another order; a rare edge
    decided differently by float rounding moves a few elements entirely)."""
    tol = rtol * ref.abs() + rtol * 0.1 * ref.abs().max()
    return ((ours - ref).abs() <= tol).float().mean().item()


def _report(record_property, name, **values):
    text = ", ".join(f"{k}={v:.3g}" for k, v in values.items())
    print(f"\n[parity {name}] {text}")
    for k, v in values.items():
        record_property(f"{name}.{k}", v)


@pytest.mark.parametrize("name", SCENES)
def test_rasterize_parity(backends, name, record_property):
    ours, ref = backends
    pos, tri = scene(name)
    weights = torch.randn(pos.shape[0], *SIZE, 6, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    results = []
    for r in (ours, ref):
        p = pos.clone().requires_grad_(True)
        rast, rast_db = r.rasterize(p, tri, SIZE)
        results.append((p, rast, rast_db))
    (p_t, rast_t, db_t), (p_n, rast_n, db_n) = results
    ids_t, ids_n = float_to_tri_id(rast_t[..., 3]), float_to_tri_id(rast_n[..., 3])
    same = ids_t == ids_n
    covered = same & (ids_n > 0)
    mismatch = 1 - same.float().mean().item()
    assert covered.sum() > 1000
    du = (rast_t[..., :2] - rast_n[..., :2])[covered].abs()
    dz = (rast_t[..., 2] - rast_n[..., 2])[covered].abs()
    ddb = ((db_t - db_n).abs() / (db_n.abs() + 1e-3))[covered]

    mask = covered.unsqueeze(-1).float()
    for p, rast, db in results:  # same loss on the pixels where both drew the same triangle
        ((torch.cat([rast[..., :2], db], -1) * weights * mask).sum()).backward()
    grad_close = _fraction_close(p_t.grad, p_n.grad)
    _report(
        record_property,
        f"rasterize/{name}",
        id_mismatch=mismatch,
        uv_max=du.max().item(),
        uv_q999=du.quantile(0.999).item(),
        zw_max=dz.max().item(),
        db_rel_q999=ddb.quantile(0.999).item(),
        grad_rel_l2=_relative_l2(p_t.grad, p_n.grad),
        grad_close=grad_close,
    )
    assert mismatch < MAX_ID_MISMATCH
    assert du.quantile(0.999) < 1e-5 and du.max() < 1e-3
    assert dz.quantile(0.999) < 1e-6 and dz.max() < 1e-4
    assert ddb.quantile(0.999) < 1e-4
    assert grad_close > 0.999


@pytest.mark.parametrize("name", SCENES)
def test_interpolate_parity(backends, name, record_property):
    ours, ref = backends
    pos, tri = scene(name)
    with torch.no_grad():
        rast, rast_db = ref.rasterize(pos, tri, SIZE)
    gen = torch.Generator("cuda").manual_seed(1)
    attr = torch.randn(pos.shape[1], 5, device="cuda", generator=gen)
    g_out = torch.randn(*rast.shape[:3], 5, device="cuda", generator=gen)
    g_da = torch.randn(*rast.shape[:3], 6, device="cuda", generator=gen)
    results = []
    for r in (ours, ref):
        a, ra, rb = (
            attr.clone().requires_grad_(True),
            rast.clone().requires_grad_(True),
            rast_db.clone().requires_grad_(True),
        )
        out, da = r.interpolate(a, ra, tri, rb, diff_attrs=[0, 3, -1])
        ((out * g_out).sum() + (da * g_da).sum()).backward()
        results.append((out, da, a.grad, ra.grad, rb.grad))
    errs = {k: _relative_l2(t, n) for k, t, n in zip(("out", "da", "g_attr", "g_rast", "g_rast_db"), *results)}
    out_max = (results[0][0] - results[1][0]).abs().max().item()
    _report(record_property, f"interpolate/{name}", out_max=out_max, **{f"{k}_rel_l2": v for k, v in errs.items()})
    assert out_max < 1e-5
    assert all(v < 1e-5 for v in errs.values())


@pytest.mark.parametrize("name", SCENES)
def test_antialias_parity(backends, name, record_property):
    ours, ref = backends
    pos, tri = scene(name)
    with torch.no_grad():
        rast, _ = ref.rasterize(pos, tri, SIZE)
    gen = torch.Generator("cuda").manual_seed(2)
    color = torch.rand(*rast.shape[:3], 3, device="cuda", generator=gen)
    g_out = torch.randn_like(color)
    results = []
    for r in (ours, ref):
        c, p = color.clone().requires_grad_(True), pos.clone().requires_grad_(True)
        out = r.antialias(c, rast, p, tri, topology_hash=r.construct_topology_hash(tri), pos_gradient_boost=2.0)
        (out * g_out).sum().backward()
        results.append((out, c.grad, p.grad))
    (out_t, gc_t, gp_t), (out_n, gc_n, gp_n) = results
    diff = (out_t - out_n).abs().amax(-1)
    changed = ((out_n - color).abs().amax(-1) > 0).sum().item()
    off = (diff > 1e-4).float().mean().item()
    gp_close, gc_close = _fraction_close(gp_t, gp_n), _fraction_close(gc_t, gc_n)
    _report(
        record_property,
        f"antialias/{name}",
        changed_pixels=changed,
        out_max=diff.max().item(),
        pixels_off=off,
        g_color_rel_l2=_relative_l2(gc_t, gc_n),
        g_pos_rel_l2=_relative_l2(gp_t, gp_n),
        g_color_close=gc_close,
        g_pos_close=gp_close,
    )
    assert changed > 50  # the scene has silhouettes to antialias
    assert off < MAX_ID_MISMATCH
    assert gc_close > 0.999 and gp_close > 0.999


@pytest.mark.parametrize("name", SCENES)
def test_full_chain_images_agree(backends, name, record_property):
    ours, ref = backends
    pos, tri = scene(name)
    gen = torch.Generator("cuda").manual_seed(3)
    attr = torch.rand(pos.shape[1], 3, device="cuda", generator=gen)
    images = []
    for r in (ours, ref):
        rast, rast_db = r.rasterize(pos, tri, SIZE)
        color, _ = r.interpolate(attr, rast, tri)
        images.append(r.antialias(color, rast, pos, tri))
    diff = (images[0] - images[1]).abs().amax(-1)
    off = (diff > 1e-3).float().mean().item()
    _report(record_property, f"chain/{name}", pixels_off=off, max=diff.max().item())
    assert off < 2 * MAX_ID_MISMATCH
