"""A render of Spot with its diffuse texture under the shared light probe."""

import math

import torch

from dmtrec.io.image import linear_to_srgb, read_image, write_png
from dmtrec.io.obj import read_obj
from dmtrec.render.camera import Cameras
from dmtrec.render.camera_distributions import orbit_c2w
from dmtrec.render.light import EnvironmentLight
from dmtrec.render.material import TexturedMaterial
from dmtrec.render.render_mesh import render_mesh


def test_spot_under_the_probe(shared_data, rasterizer, tmp_path):
    mesh, textures = read_obj(shared_data / "meshes" / "spot" / "spot.obj")
    light = EnvironmentLight.from_hdr(shared_data / "envmaps" / "mud_road_puresky_1k.hdr", base_res=32)
    ks = torch.tensor([0.0, 0.6, 0.0]).expand(1, 1, 3)  # a rough dielectric
    material = TexturedMaterial.from_tensors(textures["kd"], ks)
    # Front (looking at the face) and back views, 3 units away, 40 degrees field of view.
    cameras = Cameras.from_fov(
        orbit_c2w(torch.tensor([2.5, 0.6]), torch.tensor([0.2, 0.2]), 3.0), math.radians(40), (96, 96)
    )
    background = torch.full((2, 96, 96, 3), 0.05)
    out = render_mesh(mesh, material, light, cameras, rasterizer, background=background)

    image = torch.cat(list(linear_to_srgb(out["shaded"][..., :3])), 1)
    path = tmp_path / "spot.png"
    write_png(path, image)
    assert read_image(path).shape == (96, 192, 3)

    coverage = out["alpha"].mean((1, 2, 3))
    rgb = out["shaded"][..., :3]
    inside = out["alpha"][..., 0] > 0.99
    mean_colour = torch.stack([rgb[b][inside[b]].mean(0) for b in range(2)])
    print(f"coverage {coverage.tolist()}, mean colour inside {mean_colour.tolist()}")
    # Spot (about 1 x 1.7 x 1.7 units) fills a quarter to a half of these views.
    assert ((coverage > 0.2) & (coverage < 0.5)).all()
    # A white-and-black cow under a grey overcast sky of mean radiance ~0.4: grey-ish, slightly warm
    # (the pink muzzle and horns), neither black nor saturated.
    assert ((mean_colour > 0.15) & (mean_colour < 0.6)).all()
    assert (mean_colour[:, 0] >= mean_colour[:, 2]).all()
    # The front view shows the pink muzzle: redder than the back.
    assert (mean_colour[0, 0] - mean_colour[0, 2]) > (mean_colour[1, 0] - mean_colour[1, 2])
    assert (out["shaded"][..., :3][out["alpha"][..., 0] == 0] == 0.05).all()
