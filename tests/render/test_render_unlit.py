"""The renderer's ``unlit`` mode: colour = kd, or the interpolated vertex colour, with no light."""

import math

import pytest
import torch

from dmtrec.core.mesh import Mesh
from dmtrec.render.camera import Cameras, look_at
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.raster import get_rasterizer
from dmtrec.render.render_mesh import render_mesh

FOVY = math.radians(40.0)
RES = 32


def _quad_scene():
    """A square in the z = 0 plane seen head-on from (0, 0, 3)."""
    v_pos = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
    mesh = Mesh(v_pos, torch.tensor([[0, 1, 2], [0, 2, 3]]))
    c2w = look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3))
    return mesh, Cameras.from_fov(c2w, FOVY, (RES, RES))


def _interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3 x 3 neighbourhood is covered (no silhouette antialiasing there)."""
    m = mask[None, None].float()
    return torch.nn.functional.max_pool2d(1 - m, 3, 1, 1)[0, 0] == 0


def test_vertex_colours_are_interpolated_perspective_correctly():
    mesh, cameras = _quad_scene()

    # A colour linear in world position: interpolation over the plane gives the same linear
    # function of the point each pixel sees, found here by intersecting the pixel ray with z = 0.
    def colour(p):
        return torch.stack([0.5 + 0.4 * p[..., 0], 0.5 + 0.3 * p[..., 1], torch.full_like(p[..., 0], 0.25)], -1)

    out = render_mesh(mesh, None, None, cameras, get_rasterizer("torch"), bsdf="unlit", vertex_color=colour(mesh.v_pos))
    t = math.tan(FOVY / 2)
    centres = (torch.arange(RES, dtype=torch.float64) + 0.5) / RES * 2 - 1
    x = 3.0 * t * centres[None, :].expand(RES, RES)
    y = -3.0 * t * centres[:, None].expand(RES, RES)  # image row 0 is the top
    expected = colour(torch.stack([x, y, torch.zeros_like(x)], -1)).float()
    inside = _interior(out["mask"][0, ..., 0] > 0)
    assert inside.sum() > 100
    torch.testing.assert_close(out["shaded"][0][inside][:, :3], expected[inside], atol=1e-4, rtol=0)
    assert torch.all(out["shaded"][0, ~(out["mask"][0, ..., 0] > 0), :3] == 0)  # black background


def test_unlit_texture_shows_kd_without_a_light():
    mesh, cameras = _quad_scene()
    mesh = mesh.copy(v_tex=torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), t_tex_idx=mesh.t_pos_idx)
    kd = torch.tensor([0.2, 0.6, 0.9])
    material = TexturedMaterial.from_tensors(kd.expand(4, 4, 3), torch.tensor([[[0.0, 0.5, 1.0]]]))
    out = render_mesh(mesh, material, None, cameras, get_rasterizer("torch"), bsdf="unlit")
    inside = _interior(out["mask"][0, ..., 0] > 0)
    torch.testing.assert_close(out["shaded"][0][inside][:, :3], kd.expand(int(inside.sum()), 3))


def test_unlit_vertex_colours_get_gradients():
    mesh, cameras = _quad_scene()
    colours = torch.full((4, 3), 0.5, requires_grad=True)
    out = render_mesh(mesh, None, None, cameras, get_rasterizer("torch"), bsdf="unlit", vertex_color=colours)
    out["shaded"][..., :3].sum().backward()
    # Every vertex of the visible quad contributes to some pixels, equally to each channel.
    assert torch.all(colours.grad > 0)
    torch.testing.assert_close(colours.grad[:, 0], colours.grad[:, 1])


def test_vertex_colours_need_the_unlit_mode_and_one_row_per_vertex():
    mesh, cameras = _quad_scene()
    with pytest.raises(ValueError, match="vertex_color"):
        render_mesh(mesh, None, None, cameras, get_rasterizer("torch"), bsdf="kd", vertex_color=torch.ones(4, 3))
    with pytest.raises(ValueError, match="vertex_color"):
        render_mesh(mesh, None, None, cameras, get_rasterizer("torch"), bsdf="unlit", vertex_color=torch.ones(3, 3))
    with pytest.raises(ValueError, match="material"):
        render_mesh(mesh, None, None, cameras, get_rasterizer("torch"), bsdf="unlit")
